//! Authentication (who are you) and authorization (what may you do).

pub mod csrf;
pub mod guard;
pub mod next;
pub mod password;
pub mod policy;
pub mod role;
pub mod session_user;
pub mod store;
pub mod throttle;
pub mod users;

pub use guard::require_role;
pub use role::Role;
pub use session_user::{Authentication, CurrentUser, MaybeUser, NotSignedIn, Notice, SessionUser};
