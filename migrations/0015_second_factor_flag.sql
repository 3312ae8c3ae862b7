-- Whether the user has a second factor (an enabled authenticator app or a passkey), kept
-- by the database itself so that the session lookup, which runs on every signed-in
-- request, reads one column instead of probing two tables. PostgreSQL sets up a subplan
-- per probe on every execution, even where a CASE skips it: about a fifth of its CPU per
-- `/api/me` (benches/ANALYSIS.md). The two tables stay the source of truth: sign-in and
-- the second step read them, never this column.
--
-- Triggers rather than the app's enrolment paths keep it true: every path that adds or
-- removes a factor (enrolment, the account page, an administrator's reset, a user's
-- deletion, a statement typed by an operator) goes through them, in the same transaction.
ALTER TABLE users ADD COLUMN has_second_factor boolean NOT NULL DEFAULT false;

CREATE FUNCTION refresh_has_second_factor(uid bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    has boolean;
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
    has := EXISTS (SELECT 1 FROM totp_credentials
                   WHERE user_id = uid AND enabled_at IS NOT NULL)
           OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = uid);
    -- Written only when it changes: a second passkey writes no new users row.
    UPDATE users SET has_second_factor = has WHERE id = uid AND has_second_factor <> has;
END
$$;

CREATE FUNCTION second_factor_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM refresh_has_second_factor(OLD.user_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_id <> OLD.user_id) THEN
        PERFORM refresh_has_second_factor(NEW.user_id);
    END IF;
    RETURN NULL;
END
$$;

-- A TOTP sign-in updates `last_used_step` on every use: only a change of `enabled_at`
-- (or of the owner) can change the answer.
CREATE TRIGGER totp_credentials_second_factor
AFTER INSERT OR DELETE OR UPDATE OF enabled_at, user_id ON totp_credentials
FOR EACH ROW EXECUTE FUNCTION second_factor_changed();

-- A passkey sign-in updates `last_used_at` and the counter: not a change of the answer.
CREATE TRIGGER passkeys_second_factor
AFTER INSERT OR DELETE OR UPDATE OF user_id ON passkeys
FOR EACH ROW EXECUTE FUNCTION second_factor_changed();

UPDATE users u SET has_second_factor = true
WHERE EXISTS (SELECT 1 FROM totp_credentials t
              WHERE t.user_id = u.id AND t.enabled_at IS NOT NULL)
   OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = u.id);
