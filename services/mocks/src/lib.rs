//! The mock Vision and LLM APIs the worker calls. Their protocols are real (JSON over HTTP, an
//! OpenAI-style chat completion with optional SSE streaming) so a real service can stand in for
//! either; their work is simulated: latency drawn from a seeded distribution, and injected
//! errors, rate limits and timeouts.

pub mod faults;
pub mod latency;
pub mod llm;
mod sim;
pub mod vision;

pub use faults::{Faults, Outcome};
pub use latency::{Latency, LatencyError, LatencySampler};
pub use sim::{ConfigError, Knobs};
