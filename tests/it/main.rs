//! Integration tests: the real app over real HTTP on a real PostgreSQL (one test binary,
//! one PostgreSQL per run, a fresh database per test).

mod abuse;
mod account;
mod accounts;
mod admin;
mod audit;
mod audit_load;
mod browser;
mod contract;
mod deploy;
mod devices;
mod faults;
mod first_command;
mod first_run;
mod forgot;
mod hardening;
mod health;
mod inputs;
mod links;
mod login;
mod mail;
mod passkeys;
mod process;
mod reauth;
mod remember;
mod routes;
mod sessions;
mod support;
mod throttle;
mod two_factor;
