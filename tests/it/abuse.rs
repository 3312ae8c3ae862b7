//! Abuse resistance: the holes found by trying to misuse each door on purpose — demo mode
//! on a real database, an access request naming its own role, a password crafted to be
//! slow to judge, a username that forges log fields, and DNS rebinding.

mod access;
mod demo;
mod host;
mod logs;
mod password_cost;
