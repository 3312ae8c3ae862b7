-- Optional e-mail addresses (only used when the server has --smtp-url): an address per
-- user, verified by a mailed link, and the counters that throttle "Forgot your password?".

ALTER TABLE users
    ADD COLUMN email             text CHECK (char_length(email) BETWEEN 3 AND 254),
    ADD COLUMN email_verified_at timestamptz,
    ADD CONSTRAINT users_email_verified_needs_email
        CHECK (email_verified_at IS NULL OR email IS NOT NULL);

-- Unique case-insensitively among *verified* addresses only. A unique index over every
-- address would let anyone squat someone else's address (add it, never verify it) and
-- would tell the real owner, when they try to add it, that some account claims it.
-- Verification proves the mailbox, so at most one account can ever hold it verified; a
-- second account verifying the same address is refused then. This index is also what
-- "Forgot your password?" looks addresses up by.
CREATE UNIQUE INDEX users_verified_email_key ON users (lower(email))
    WHERE email_verified_at IS NOT NULL;

-- Verification links: the mailed token's SHA-256, for which user and which address (a
-- link for an address since replaced verifies nothing), single use.
CREATE TABLE email_verifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX email_verifications_user_idx ON email_verifications (user_id);
CREATE INDEX email_verifications_expires_idx ON email_verifications (expires_at);

-- "Forgot your password?" requests per typed name or address, per client address and per
-- account, in fixed windows. Counted whether or not an account matches (the answer never
-- says which); reserved in one row-locked upsert, so simultaneous requests get exactly
-- the budget.
CREATE TABLE recovery_throttles (
    scope             text NOT NULL CHECK (scope IN ('name', 'ip', 'user')),
    key               text NOT NULL,
    requests          integer NOT NULL,
    window_started_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX recovery_throttles_window_idx ON recovery_throttles (window_started_at);
