-- One-time links that let a person choose their own password: an invitation (a new
-- account, created without a password) or a reset. Administrators never choose passwords
-- for others (ASVS 5.0 6.4.1, 6.4.6). Only the token's SHA-256 is stored; rows stay after
-- use so that a used, replaced or expired link gets a page saying so (and are deleted
-- with the user).
CREATE TABLE password_links (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('invite', 'reset')),
    -- Who issued it (an administrator's name, "cli" or "system"), as in the audit trail.
    issued_by   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    -- Set when a newer link for the same user replaced this one.
    voided_at   timestamptz
);

-- Only the newest link of a user works: at most one unused, unreplaced link per user.
CREATE UNIQUE INDEX password_links_one_live_idx ON password_links (user_id)
    WHERE used_at IS NULL AND voided_at IS NULL;

-- An invited user has no password until they choose one: sign-in verifies against a
-- dummy hash and fails like a wrong password.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;
