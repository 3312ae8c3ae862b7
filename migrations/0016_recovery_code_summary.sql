-- How many recovery codes the user has left and when one was last used, kept on the user's
-- row by the database, like the second-factor columns of migration 0015, for the same
-- reason: the account page's one statement read them with an aggregate over
-- `recovery_codes`, an extra plan node PostgreSQL set up and ran on every page view
-- (about 8 us of its CPU per page here, benches/ANALYSIS.md). The table stays the source
-- of truth: signing in with a code reads and spends it there, never these columns.
ALTER TABLE users
    ADD COLUMN recovery_codes_left integer NOT NULL DEFAULT 0,
    ADD COLUMN recovery_code_used_at timestamptz;

CREATE FUNCTION refresh_recovery_codes(uid bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    left_now integer;
    last_used timestamptz;
BEGIN
    -- Locked first, then counted, as in refresh_second_factors (migration 0015): two
    -- simultaneous changes for one user then run one after the other, and the second
    -- counts with the first's change committed.
    PERFORM 1 FROM users WHERE id = uid FOR NO KEY UPDATE;
    SELECT count(*) FILTER (WHERE c.used_at IS NULL), max(c.used_at)
    INTO left_now, last_used
    FROM recovery_codes c WHERE c.user_id = uid;
    -- Written only when something changed.
    UPDATE users
    SET recovery_codes_left = left_now, recovery_code_used_at = last_used
    WHERE id = uid
      AND (recovery_codes_left, recovery_code_used_at) IS DISTINCT FROM (left_now, last_used);
END
$$;

-- Once per statement and user, not per row: new codes come ten at a time (one INSERT after
-- one DELETE), and a row trigger would write the user's row twenty times for them. Users
-- in id order, so two statements that touch the same users lock them in the same order.
CREATE FUNCTION recovery_codes_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    uid bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR uid IN SELECT DISTINCT user_id FROM new_codes ORDER BY 1 LOOP
            PERFORM refresh_recovery_codes(uid);
        END LOOP;
    ELSIF TG_OP = 'DELETE' THEN
        FOR uid IN SELECT DISTINCT user_id FROM old_codes ORDER BY 1 LOOP
            PERFORM refresh_recovery_codes(uid);
        END LOOP;
    ELSE
        FOR uid IN SELECT user_id FROM old_codes UNION SELECT user_id FROM new_codes
                   ORDER BY 1 LOOP
            PERFORM refresh_recovery_codes(uid);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;

-- A trigger with transition tables takes one event and no column list.
CREATE TRIGGER recovery_codes_inserted
AFTER INSERT ON recovery_codes
REFERENCING NEW TABLE AS new_codes
FOR EACH STATEMENT EXECUTE FUNCTION recovery_codes_changed();

CREATE TRIGGER recovery_codes_deleted
AFTER DELETE ON recovery_codes
REFERENCING OLD TABLE AS old_codes
FOR EACH STATEMENT EXECUTE FUNCTION recovery_codes_changed();

CREATE TRIGGER recovery_codes_updated
AFTER UPDATE ON recovery_codes
REFERENCING OLD TABLE AS old_codes NEW TABLE AS new_codes
FOR EACH STATEMENT EXECUTE FUNCTION recovery_codes_changed();

UPDATE users u
SET recovery_codes_left = c.codes_left, recovery_code_used_at = c.used_at
FROM (SELECT user_id, count(*) FILTER (WHERE used_at IS NULL) AS codes_left,
             max(used_at) AS used_at
      FROM recovery_codes GROUP BY user_id) c
WHERE c.user_id = u.id;
