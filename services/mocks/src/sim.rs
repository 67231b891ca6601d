//! What the two mocks share: a seeded RNG, fault injection, time scaling, and a "closing" signal
//! that releases hanging requests so graceful shutdown never waits out a simulated timeout.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use tb_web::ApiError;
use tokio::net::TcpListener;
use tokio::sync::watch;

use tb_telemetry::fault::Share;

use crate::faults::FaultsError;
use crate::{Faults, LatencyError, LatencySampler, Outcome};

/// Why a mock cannot start with its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A latency distribution is invalid; the string names which one.
    #[error("{0}: {1}")]
    Latency(&'static str, LatencyError),
    /// The fault rates are invalid.
    #[error("faults: {0}")]
    Faults(#[from] FaultsError),
    /// `time_scale` is not a finite number ≥ 0.
    #[error("time_scale must be a finite number >= 0, got {0}")]
    TimeScale(f64),
}

/// Knobs turned while a mock serves (`tracebench demo`'s switches): a share of requests
/// answered 500 on top of the configured faults, and a factor on every latency. A config holds
/// them by `Arc`, so whoever built the config can turn them after the mock started.
#[derive(Debug)]
pub struct Knobs {
    /// Extra share of 500s.
    error_rate: Share,
    /// Latency factor, as `f64` bits.
    latency_factor: AtomicU64,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            error_rate: Share::default(),
            latency_factor: AtomicU64::new(1f64.to_bits()),
        }
    }
}

impl PartialEq for Knobs {
    fn eq(&self, other: &Self) -> bool {
        self.error_rate() == other.error_rate() && self.latency_factor() == other.latency_factor()
    }
}

impl Knobs {
    /// The extra share of requests answered 500.
    pub fn error_rate(&self) -> f64 {
        self.error_rate.get()
    }

    /// Answers `rate` (clamped to 0–1; NaN is 0) of the requests 500 from now on.
    pub fn set_error_rate(&self, rate: f64) {
        self.error_rate.set(rate);
    }

    /// The factor on every latency.
    pub fn latency_factor(&self) -> f64 {
        f64::from_bits(self.latency_factor.load(Ordering::Relaxed))
    }

    /// Multiplies every latency by `factor` (clamped to 0–1000; NaN is 1) from now on.
    pub fn set_latency_factor(&self, factor: f64) {
        let factor = if factor.is_nan() {
            1.0
        } else {
            factor.clamp(0.0, 1000.0)
        };
        self.latency_factor
            .store(factor.to_bits(), Ordering::Relaxed);
    }
}

/// Shared simulation state of one mock service.
#[derive(Debug)]
pub(crate) struct Sim {
    rng: Mutex<StdRng>,
    faults: Faults,
    time_scale: f64,
    closing: watch::Sender<bool>,
    /// What is left of [`Faults::fail_first`].
    fail_first: AtomicU32,
    knobs: Arc<Knobs>,
}

impl Sim {
    pub(crate) fn new(
        seed: u64,
        faults: Faults,
        time_scale: f64,
        knobs: Arc<Knobs>,
    ) -> Result<Self, ConfigError> {
        faults.validate()?;
        if !(time_scale.is_finite() && time_scale >= 0.0) {
            return Err(ConfigError::TimeScale(time_scale));
        }
        Ok(Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            faults,
            time_scale,
            closing: watch::Sender::new(false),
            fail_first: AtomicU32::new(faults.fail_first),
            knobs,
        })
    }

    /// Runs `f` with the RNG. The lock is held only for the draw, never across an await.
    pub(crate) fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut rng)
    }

    /// Draws a latency from `sampler`, scaled.
    pub(crate) fn latency(&self, sampler: &LatencySampler) -> Duration {
        let scale = self.time_scale * self.knobs.latency_factor();
        self.with_rng(|rng| sampler.sample(rng, scale))
    }

    /// Draws this request's fault. `None` means answer normally; `Some` is the fault's response,
    /// after the hang if it is a timeout.
    pub(crate) async fn fault(&self) -> Option<Response> {
        let outage = self
            .fail_first
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let extra = self.knobs.error_rate();
        let outcome = if outage {
            Outcome::Error
        } else {
            self.with_rng(|rng| {
                if extra > 0.0 && rng.random::<f64>() < extra {
                    Outcome::Error
                } else {
                    self.faults.draw(rng)
                }
            })
        };
        match outcome {
            Outcome::Ok => None,
            Outcome::Error => Some(
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "injected_error",
                    "injected fault",
                )
                .into_response(),
            ),
            Outcome::RateLimited => {
                let mut res = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "injected rate limit",
                )
                .into_response();
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(self.faults.retry_after_s),
                );
                Some(res)
            }
            Outcome::Hang => {
                let mut closing = self.closing.subscribe();
                tokio::select! {
                    () = tokio::time::sleep(self.faults.hang) => {}
                    _ = closing.wait_for(|c| *c) => {}
                }
                Some(
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "injected timeout",
                    )
                    .into_response(),
                )
            }
        }
    }

    /// Releases every hanging request; called when shutdown starts.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// Serves a mock's router until `shutdown` completes, then releases its hanging requests (so the
/// drain does not wait out a simulated timeout) and drains the rest.
pub(crate) async fn serve(
    router: Router,
    sim: Arc<Sim>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            sim.close();
        })
        .await
}
