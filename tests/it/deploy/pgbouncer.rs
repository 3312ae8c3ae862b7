//! PgBouncer in transaction pooling mode.
