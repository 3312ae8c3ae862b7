-- The audit trail: sign-ins, sign-outs, session ends, every 401 and 403 served, and every
-- administrative change. Append-only from the app's point of view (only retention deletes).

CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    event       text NOT NULL,
    -- HTTP status served, for denials (401, 403, 429).
    status      smallint,
    -- Precise internal reason (never shown to the client for failed sign-ins).
    reason      text,
    -- Who acted or was refused (kept as text: the account may be deleted later).
    username    text,
    -- Whom an administrative action was about.
    target      text,
    path        text,
    method      text,
    ip          text,
    user_agent  text,
    request_id  text,
    detail      jsonb
);

CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_status_at_idx ON audit_events (status, at) WHERE status IS NOT NULL;
CREATE INDEX audit_events_event_at_idx ON audit_events (event, at);

-- Set the first time a request arrives with an expired session, so the expiry is
-- recorded once per session (every request after it is still a 401 of its own).
ALTER TABLE sessions ADD COLUMN expiry_noticed_at timestamptz;

-- The admin page shows each user's recent events (as actor or as target).
CREATE INDEX audit_events_username_at_idx ON audit_events (username, at) WHERE username IS NOT NULL;
CREATE INDEX audit_events_target_at_idx ON audit_events (target, at) WHERE target IS NOT NULL;
