//! The mock Vision API: `POST /v1/analyze` with `{"image_url": ...}` answers
//! `{"category", "confidence", "labels"}` after a simulated inference latency.
//!
//! The category is a pure function of the image URL, so the same image always classifies the
//! same way across runs and seeds; latency, confidence and faults come from the seeded RNG.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use tb_web::{ApiError, Json, in_service, trace_requests};
use tokio::net::TcpListener;

use crate::sim::{ConfigError, Knobs, Sim};
use crate::{Faults, Latency, LatencySampler};

/// The service name this mock's spans carry.
pub const SERVICE: &str = "vision-api";

/// What the mock classifies images into (the seed's waste categories).
pub const CATEGORIES: [&str; 6] = [
    "plastic",
    "paper",
    "glass",
    "metal",
    "food_waste",
    "general",
];

/// Configuration of the Vision mock.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VisionConfig {
    /// Inference latency (the seed's ≈ 1900 ms call).
    pub latency: Latency,
    /// Injected faults.
    pub faults: Faults,
    /// Multiplies every latency; 0.01 turns the seed's seconds into tens of milliseconds.
    pub time_scale: f64,
    /// RNG seed.
    pub seed: u64,
    /// Error rate and latency factor turned while it serves (shared; a process handed this
    /// configuration starts with its own, untouched).
    #[serde(skip)]
    pub knobs: Arc<Knobs>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            latency: Latency::LogNormalP99 {
                median_ms: 1900.0,
                p99_ms: 3500.0,
            },
            faults: Faults::default(),
            time_scale: 1.0,
            seed: 1,
            knobs: Arc::default(),
        }
    }
}

/// Request body of `POST /v1/analyze`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The image to classify.
    pub image_url: String,
}

/// Response body of `POST /v1/analyze`.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct AnalyzeResponse {
    /// One of [`CATEGORIES`].
    pub category: String,
    /// 0.5–1.0.
    pub confidence: f64,
    /// Labels seen in the image.
    pub labels: Vec<String>,
}

/// Shared state of the Vision mock.
#[derive(Clone, Debug)]
pub struct VisionState {
    sim: Arc<Sim>,
    latency: LatencySampler,
}

impl VisionState {
    /// Checks `config` and builds the state.
    ///
    /// # Errors
    ///
    /// Fails on an invalid latency distribution, fault rates or time scale.
    pub fn new(config: &VisionConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            sim: Arc::new(Sim::new(
                config.seed,
                config.faults,
                config.time_scale,
                config.knobs.clone(),
            )?),
            latency: config
                .latency
                .sampler()
                .map_err(|e| ConfigError::Latency("latency", e))?,
        })
    }
}

/// FNV-1a, for a category that depends on the URL alone.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Classifies an image URL (no I/O; exposed for tests that check the worker's attributes).
pub fn category_of(image_url: &str) -> &'static str {
    CATEGORIES[(fnv1a(image_url) % CATEGORIES.len() as u64) as usize]
}

async fn analyze(
    State(state): State<VisionState>,
    Json(req): Json<AnalyzeRequest>,
) -> Result<Response, ApiError> {
    if req.image_url.trim().is_empty() {
        return Err(ApiError::bad_request("image_url must not be empty"));
    }
    if let Some(fault) = state.sim.fault().await {
        return Ok(fault);
    }
    tb_sim::wait(state.sim.latency(&state.latency)).await;
    let category = category_of(&req.image_url);
    let confidence = state.sim.with_rng(|rng| rng.random_range(0.5..1.0));
    Ok(Json(AnalyzeResponse {
        category: category.to_owned(),
        confidence,
        labels: vec![category.to_owned(), "object".to_owned()],
    })
    .into_response())
}

/// The Vision mock's routes: `POST /v1/analyze`, `GET /healthz`.
pub fn app(state: VisionState) -> Router {
    let router = Router::new()
        .route("/v1/analyze", post(analyze))
        .route_layer(middleware::from_fn(trace_requests))
        .route("/healthz", get(|| async { "ok" }));
    in_service(router, SERVICE).with_state(state)
}

/// Serves the Vision mock on `listener` until `shutdown` completes, then releases hanging
/// requests and drains the rest.
///
/// # Errors
///
/// Fails when the server's accept loop fails.
pub async fn run(
    state: VisionState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sim = state.sim.clone();
    crate::sim::serve(app(state), sim, listener, shutdown).await
}
