//! HTTP plumbing shared by tracebench's services: the JSON error body, a JSON extractor whose
//! rejections are 4xx JSON errors, the middleware that gives every request a SERVER span, and
//! outgoing calls with a CLIENT span.

pub mod client;
pub mod error;
pub mod json;
pub mod trace;

pub use error::ApiError;
pub use json::Json;
pub use trace::{in_service, trace_requests};
