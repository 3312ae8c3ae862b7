//! HTTP plumbing every page shares: the frame around each request, the guard (401/403),
//! the denial answers, text input and signed forms, content negotiation, error pages and
//! rendering.
//! Pages live in `web::pages`; the rules they apply live in the domain modules.

pub mod client;
pub mod denial;
pub mod errors;
pub mod form;
pub mod frame;
pub mod fresh;
pub mod guard;
pub mod host;
pub mod input;
pub mod layer;
pub mod negotiate;
pub mod origin;
pub mod render;
pub mod request;

pub use guard::{CurrentUser, MaybeUser};
pub use input::{MultiLine, TextForm, TextQuery};
pub use render::{Chrome, Rendered, Site, render, render_status};
pub use request::REQUEST_ID;

/// Largest request body accepted (forms are tiny); larger gets a 413 page.
pub const BODY_LIMIT: usize = 16 * 1024;
