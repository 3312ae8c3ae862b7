-- Core schema: users, server-side sessions and the server's own secrets.

CREATE TABLE users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- As typed at creation (trimmed); `username_key` is the NFKC + lowercase form that
    -- makes names case-insensitively unique independent of the database collation.
    username            text NOT NULL CHECK (char_length(username) BETWEEN 1 AND 64),
    username_key        text NOT NULL UNIQUE,
    password_hash       text NOT NULL,
    role                text NOT NULL CHECK (role IN ('member', 'editor', 'admin')),
    disabled_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at     timestamptz,
    last_sign_in_ip     text
);

-- One row per signed-in browser. The cookie carries a random 128-bit id; only its SHA-256
-- is stored, so a copy of this table cannot be replayed as cookies.
CREATE TABLE sessions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash          bytea NOT NULL UNIQUE,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- tower-sessions' key/value data that has no column of its own.
    data                jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL,
    last_seen_at        timestamptz NOT NULL,
    idle_expires_at     timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    -- A revoked session stays as a tombstone until cleanup so its holder is told
    -- "you were signed out" rather than "please sign in".
    revoked_at          timestamptz,
    revoked_reason      text,
    ip                  text,
    user_agent          text,
    -- The user's previous sign-in, copied at sign-in so the account page needs no extra query.
    prev_sign_in_at     timestamptz,
    prev_sign_in_ip     text,
    -- When this session stopped (or will stop) being usable, whatever the cause.
    ended_at            timestamptz GENERATED ALWAYS AS
                            (least(idle_expires_at, absolute_expires_at, revoked_at)) STORED
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_ended_at_idx ON sessions (ended_at);

-- Keys generated on first start and shared by every instance on this database
-- (CSRF token MACs), so several instances behind a load balancer agree without config.
CREATE TABLE server_keys (
    name       text PRIMARY KEY,
    key        bytea NOT NULL CHECK (octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
