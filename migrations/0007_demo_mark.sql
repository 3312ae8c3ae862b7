-- `serve --demo` resets the passwords of the accounts `member`, `editor` and `admin`. It
-- marks a database when it provisions it empty, and refuses any database that has users
-- but no mark, or users other than those three: real accounts are never reset.
CREATE TABLE demo_mark (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    marked_at timestamptz NOT NULL DEFAULT now()
);
