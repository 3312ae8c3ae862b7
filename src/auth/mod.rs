//! Authentication (who are you) and authorization (what may you do): sessions, passwords,
//! sign-in and its throttle, roles. Two separate answers, 401 and 403, which the web guard
//! (`web::http::guard`) turns into responses.

pub mod csrf;
pub mod device;
pub mod next;
pub mod passkey;
pub mod password;
pub mod policy;
pub mod reauth;
pub mod role;
pub mod second_factor;
pub mod session;
pub mod sign_in;
pub mod store;
pub mod throttle;

pub use role::Role;
pub use session::{Authentication, NotSignedIn, Notice, SessionUser};
