-- When the session's holder last proved who they are (sign-in, re-authentication): sensitive
-- changes need it to be recent (`--reauth-window`). Nullable so that an older instance,
-- which does not write it, keeps working during a rolling upgrade; readers fall back to
-- `created_at` (the sign-in), never to "now".
ALTER TABLE sessions ADD COLUMN authenticated_at timestamptz;
