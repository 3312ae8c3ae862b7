-- Passkeys (WebAuthn credentials, user verification required): a sign-in of their own,
-- a second factor after a password, and a re-authentication.

-- The WebAuthn user handle: random, stable for the user, never the username (authenticators
-- store it, and the specification asks for no personal data in it). Set at the first
-- registration; a discoverable sign-in names the account by it.
ALTER TABLE users ADD COLUMN passkey_user_handle bytea UNIQUE;

CREATE TABLE passkeys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- A credential belongs to one account only.
    credential_id bytea NOT NULL UNIQUE,
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    -- webauthn-rs's `Passkey` (public key, signature counter, backup flags), as JSON.
    credential    jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);

-- Passkey sign-in challenges already answered. The challenge travels in a signed cookie
-- (anonymous visitors cost no row); spending it here makes each one single-use. A row is
-- useless once the cookie has expired and is swept then.
CREATE TABLE passkey_challenges_spent (
    challenge_hash bytea PRIMARY KEY,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX passkey_challenges_spent_expires_at_idx ON passkey_challenges_spent (expires_at);
