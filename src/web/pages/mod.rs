//! The pages, one module per page group. Each handler reads the request, calls the domain
//! (`auth`, `accounts`, `audit`) and renders a template; the rules live in the domain.

pub mod access;
pub mod account;
pub mod admin;
pub mod api;
pub mod email;
pub mod forgot;
pub mod health;
pub mod help;
pub mod home;
pub mod login;
pub mod metrics;
pub mod passkey_sign_in;
pub mod passkeys;
pub mod password_link;
pub mod reauth;
pub mod reports;
pub mod second_step;
pub mod session_list;
pub mod setup;
pub mod time_zone;
pub mod two_factor;
