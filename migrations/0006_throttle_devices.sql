-- Known devices (auth::device) get counters of their own, so a flood of guesses for an
-- account name from elsewhere never shuts out a browser that signed in to it before.
ALTER TABLE login_throttles DROP CONSTRAINT login_throttles_scope_check;
ALTER TABLE login_throttles
    ADD CONSTRAINT login_throttles_scope_check CHECK (scope IN ('account', 'ip', 'device'));

-- Blocks no longer last "forever" (an attacker could lock any name, administrators
-- first): lift the old hard locks; the growing delay is capped at the throttle window.
UPDATE login_throttles SET blocked_until = NULL WHERE blocked_until > now() + interval '1 day';
