-- Failed sign-in counters per account name and per client address, shared by every
-- instance. Account names are counted whether or not such an account exists, so the
-- throttle reveals nothing about which usernames are real.

CREATE TABLE login_throttles (
    scope             text NOT NULL CHECK (scope IN ('account', 'ip')),
    key               text NOT NULL,
    -- Failures in the current window.
    failures          integer NOT NULL,
    -- Failures since the last successful sign-in (accounts; NIST SP 800-63B caps it).
    consecutive       integer NOT NULL,
    window_started_at timestamptz NOT NULL,
    last_failure_at   timestamptz NOT NULL,
    blocked_until     timestamptz,
    PRIMARY KEY (scope, key)
);

CREATE INDEX login_throttles_last_failure_idx ON login_throttles (last_failure_at);
