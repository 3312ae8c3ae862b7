//! Authentication (who are you) and authorization (what may you do): two separate
//! answers, 401 and 403, given by `session_user::gate`.

pub mod csrf;
pub mod next;
pub mod password;
pub mod policy;
pub mod role;
pub mod session_user;
pub mod store;
pub mod throttle;
pub mod users;

pub use role::Role;
pub use session_user::{Authentication, CurrentUser, MaybeUser, NotSignedIn, Notice, SessionUser};
