-- TOTP second factor (RFC 6238) and single-use recovery codes.
CREATE TABLE totp_credentials (
    user_id        bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret         bytea NOT NULL CHECK (octet_length(secret) >= 20),
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- NULL while enrolment waits for its first valid code.
    enabled_at     timestamptz,
    -- The last 30-second step accepted: a code is never accepted twice.
    last_used_step bigint NOT NULL DEFAULT 0
);

-- Only their SHA-256 is stored (they carry 80 random bits, so a fast hash is enough).
CREATE TABLE recovery_codes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX recovery_codes_user_id_idx ON recovery_codes (user_id);

-- How the session's holder signed in: 'password', 'password+totp', 'password+recovery'.
ALTER TABLE sessions ADD COLUMN auth_method text;
