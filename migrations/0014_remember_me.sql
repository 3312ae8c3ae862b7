-- "Keep me signed in" (`--remember-days`): a remembered session's cookie outlives the
-- browser and it has no idle limit (its own absolute limit, the remember period, still
-- applies). Its token is replaced at most once a day: `token_issued_at` says when this
-- row's token was issued (a re-issue makes a new row, keeping `created_at`).
ALTER TABLE sessions ADD COLUMN remembered boolean NOT NULL DEFAULT false;
ALTER TABLE sessions ADD COLUMN token_issued_at timestamptz NOT NULL DEFAULT now();
