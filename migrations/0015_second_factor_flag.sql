-- Which second factors the user has (an enabled authenticator app, how many passkeys), and
-- so whether they have one, kept by the database itself so that the session lookup, which
-- runs on every signed-in request, reads columns instead of probing two tables.
-- PostgreSQL sets up a subplan per probe on every execution, even where a CASE skips it:
-- about a quarter of its CPU per `/api/me` (benches/ANALYSIS.md). The account page shows the
-- same facts. The two tables stay the source of truth: sign-in and the second step read
-- them, never these columns.
--
-- Triggers rather than the app's enrolment paths keep them true: every path that adds or
-- removes a factor (enrolment, the account page, an administrator's reset, a user's
-- deletion, a statement typed by an operator) goes through them, in the same transaction.
ALTER TABLE users
    ADD COLUMN totp_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN passkey_count integer NOT NULL DEFAULT 0,
    ADD COLUMN has_second_factor boolean NOT NULL
        GENERATED ALWAYS AS (totp_enabled OR passkey_count > 0) STORED;

CREATE FUNCTION refresh_second_factors(uid bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    app_on boolean;
    keys integer;
BEGIN
    -- The user's row is locked before the factors are counted: a concurrent change to the
    -- other table (which takes the same lock in its trigger) has then committed, and the
    -- next statement's snapshot sees it (each statement of a function takes a fresh one
    -- under READ COMMITTED). Without the lock, two simultaneous removals, one per table,
    -- could each still see the other's factor and leave a stale `true`, which would let
    -- an account without a second factor past `--require-mfa`. NO KEY UPDATE, not
    -- UPDATE: the foreign-key checks of factor inserts hold KEY SHARE on the same row,
    -- and UPDATE would deadlock two simultaneous inserts.
    PERFORM 1 FROM users WHERE id = uid FOR NO KEY UPDATE;
    app_on := EXISTS (SELECT 1 FROM totp_credentials
                      WHERE user_id = uid AND enabled_at IS NOT NULL);
    keys := (SELECT count(*) FROM passkeys WHERE user_id = uid);
    -- Written only when something changed.
    UPDATE users SET totp_enabled = app_on, passkey_count = keys
    WHERE id = uid AND (totp_enabled, passkey_count) IS DISTINCT FROM (app_on, keys);
END
$$;

CREATE FUNCTION second_factor_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM refresh_second_factors(OLD.user_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_id <> OLD.user_id) THEN
        PERFORM refresh_second_factors(NEW.user_id);
    END IF;
    RETURN NULL;
END
$$;

-- A TOTP sign-in updates `last_used_step` on every use: only a change of `enabled_at`
-- (or of the owner) can change the answer.
CREATE TRIGGER totp_credentials_second_factor
AFTER INSERT OR DELETE OR UPDATE OF enabled_at, user_id ON totp_credentials
FOR EACH ROW EXECUTE FUNCTION second_factor_changed();

-- A passkey sign-in updates `last_used_at` and the counter: no change of the count.
CREATE TRIGGER passkeys_second_factor
AFTER INSERT OR DELETE OR UPDATE OF user_id ON passkeys
FOR EACH ROW EXECUTE FUNCTION second_factor_changed();

UPDATE users u
SET totp_enabled = EXISTS (SELECT 1 FROM totp_credentials t
                           WHERE t.user_id = u.id AND t.enabled_at IS NOT NULL),
    passkey_count = (SELECT count(*) FROM passkeys p WHERE p.user_id = u.id);
