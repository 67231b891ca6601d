//! HTTP plumbing shared by tracebench's services: the JSON error body, a JSON extractor whose
//! rejections are 4xx JSON errors, and the middleware that gives every request a SERVER span.

pub mod error;
pub mod json;
pub mod trace;

pub use error::ApiError;
pub use json::Json;
pub use trace::trace_requests;
