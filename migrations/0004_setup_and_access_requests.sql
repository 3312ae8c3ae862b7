-- First run: one-time tokens that let the operator create the first administrator in the
-- browser. Only their SHA-256 is stored; all are deleted once the first user exists.
CREATE TABLE setup_tokens (
    token_hash bytea PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- "Request access" from the 403 page: at most one pending request per user and role.
CREATE TABLE access_requests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role           text NOT NULL CHECK (role IN ('member', 'editor', 'admin')),
    path           text NOT NULL,
    message        text NOT NULL DEFAULT '' CHECK (char_length(message) <= 500),
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'granted', 'declined')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz,
    decided_by     text,
    decision_note  text
);

CREATE UNIQUE INDEX access_requests_one_pending_idx ON access_requests (user_id, role)
    WHERE status = 'pending';
CREATE INDEX access_requests_status_idx ON access_requests (status, created_at);
CREATE INDEX access_requests_user_idx ON access_requests (user_id, created_at);
