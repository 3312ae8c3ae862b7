-- The time zone a person reads times in (an IANA name, e.g. "Europe/Paris"), chosen on the
-- account page; NULL until they choose: pages then show UTC. Checked by the application
-- against its bundled time zone database; the length bound keeps a bad write small.
ALTER TABLE users ADD COLUMN time_zone text CHECK (char_length(time_zone) BETWEEN 1 AND 64);
