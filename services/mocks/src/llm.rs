//! The mock LLM API, OpenAI-style: `POST /v1/chat/completions`. Latency is time-to-first-token
//! plus a per-token time for each generated token; with `"stream": true` the answer arrives as
//! server-sent events, one token per event, then `data: [DONE]`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tb_web::{ApiError, Json, in_service, trace_requests};
use tokio::net::TcpListener;

use crate::sim::{ConfigError, Knobs, Sim};
use crate::{Faults, Latency, LatencySampler};

/// The service name this mock's spans carry.
pub const SERVICE: &str = "llm-api";

/// Configuration of the LLM mock.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LlmConfig {
    /// Time to first token.
    pub ttft: Latency,
    /// Time per generated token.
    pub per_token: Latency,
    /// Tokens generated when the request gives no `max_tokens`.
    pub tokens: u32,
    /// Injected faults.
    pub faults: Faults,
    /// Multiplies every latency.
    pub time_scale: f64,
    /// RNG seed.
    pub seed: u64,
    /// Error rate and latency factor turned while it serves (shared; a process handed this
    /// configuration starts with its own, untouched).
    #[serde(skip)]
    pub knobs: Arc<Knobs>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        // The seed's call_llm_api takes ≈ 2400 ms: 400 ms to the first token, then 100 tokens at
        // 20 ms each.
        Self {
            ttft: Latency::LogNormalP99 {
                median_ms: 400.0,
                p99_ms: 900.0,
            },
            per_token: Latency::Constant { ms: 20.0 },
            tokens: 100,
            faults: Faults::default(),
            time_scale: 1.0,
            seed: 2,
            knobs: Arc::default(),
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Text.
    pub content: String,
}

/// Request body of `POST /v1/chat/completions` (the fields the mock reads; others are ignored,
/// as OpenAI-compatible servers do).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChatRequest {
    /// Model name, echoed back.
    pub model: String,
    /// The conversation; must not be empty.
    pub messages: Vec<Message>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// Shared state of the LLM mock.
#[derive(Clone, Debug)]
pub struct LlmState {
    sim: Arc<Sim>,
    ttft: LatencySampler,
    per_token: LatencySampler,
    tokens: u32,
}

impl LlmState {
    /// Checks `config` and builds the state.
    ///
    /// # Errors
    ///
    /// Fails on an invalid latency distribution, fault rates or time scale.
    pub fn new(config: &LlmConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            sim: Arc::new(Sim::new(
                config.seed,
                config.faults,
                config.time_scale,
                config.knobs.clone(),
            )?),
            ttft: config
                .ttft
                .sampler()
                .map_err(|e| ConfigError::Latency("ttft", e))?,
            per_token: config
                .per_token
                .sampler()
                .map_err(|e| ConfigError::Latency("per_token", e))?,
            tokens: config.tokens,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn token(i: u32) -> String {
    format!("tok{i} ")
}

fn sse_stream(
    first: Duration,
    gaps: Vec<Duration>,
    model: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let chunk = move |content: &str, finish: Option<&str>| {
        json!({
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        })
        .to_string()
    };
    let n = gaps.len() as u32;
    // Event i waits `first` (i = 0) or the gap after token i - 1, so the stream takes as long as
    // the non-streamed answer; then comes the stop chunk, then `[DONE]` with no wait.
    stream::unfold(0u32, move |i| {
        let next = (i <= n + 1).then(|| {
            let wait = match i {
                0 => first,
                i => gaps.get(i as usize - 1).copied().unwrap_or_default(),
            };
            let data = match i {
                i if i < n => chunk(&token(i), None),
                i if i == n => chunk("", Some("stop")),
                _ => "[DONE]".to_owned(),
            };
            (wait, data)
        });
        async move {
            let (wait, data) = next?;
            tb_sim::wait(wait).await;
            Some((Ok(Event::default().data(data)), i + 1))
        }
    })
}

async fn completions(
    State(state): State<LlmState>,
    Json(req): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty"));
    }
    if let Some(fault) = state.sim.fault().await {
        return Ok(fault);
    }
    let tokens = req.max_tokens.unwrap_or(state.tokens);
    let first = state.sim.latency(&state.ttft);
    let gaps: Vec<Duration> = (0..tokens)
        .map(|_| state.sim.latency(&state.per_token))
        .collect();
    if req.stream {
        return Ok(Sse::new(sse_stream(first, gaps, req.model)).into_response());
    }
    tb_sim::wait(first + gaps.iter().sum::<Duration>()).await;
    let content: String = (0..tokens).map(token).collect();
    let prompt_tokens: usize = req
        .messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum();
    Ok(Json(json!({
        "id": format!("chatcmpl-{}", unix_now()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": req.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content.trim_end()},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens as usize,
        },
    }))
    .into_response())
}

/// The LLM mock's routes: `POST /v1/chat/completions`, `GET /healthz`.
pub fn app(state: LlmState) -> Router {
    let router = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route_layer(middleware::from_fn(trace_requests))
        .route("/healthz", get(|| async { "ok" }));
    in_service(router, SERVICE).with_state(state)
}

/// Serves the LLM mock on `listener` until `shutdown` completes, then releases hanging requests
/// and drains the rest.
///
/// # Errors
///
/// Fails when the server's accept loop fails.
pub async fn run(
    state: LlmState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sim = state.sim.clone();
    crate::sim::serve(app(state), sim, listener, shutdown).await
}
