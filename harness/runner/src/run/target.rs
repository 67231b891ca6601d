//! The load generator's target in a run: `POST /scan` against scan-api, remembering each
//! accepted scan's task and trace id for the verifier.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tb_load::Target;
use tb_verify::Scan;

/// Why one `POST /scan` failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The request did not get an answer (within [`REQUEST_TIMEOUT`], say).
    #[error("POST /scan: {0}")]
    Transport(reqwest::Error),
    /// scan-api answered with something other than 202.
    #[error("POST /scan: {status}: {body}")]
    Refused {
        /// The status.
        status: reqwest::StatusCode,
        /// The answer's body, as text.
        body: String,
    },
    /// The 202's body could not be read as JSON.
    #[error("POST /scan: body: {0}")]
    Body(reqwest::Error),
    /// The 202's body had no task id.
    #[error("POST /scan: no task_id in the answer")]
    NoTaskId,
}

/// `POST /scan` against scan-api; remembers each accepted scan's task and trace id.
pub struct ScanTarget {
    client: reqwest::Client,
    url: String,
    scans: Mutex<Vec<Scan>>,
    /// The probe scan's task id: judged like the others, left out of latency attribution
    /// (it pays for the consumer groups joining).
    probe: Mutex<Option<String>>,
    /// Scans accepted so far, probe and warmup included.
    accepted: AtomicU64,
    /// Whether accepted scans are kept (for the verifier) and followed end to end; a feed
    /// that runs for days (`tracebench load`) keeps and follows none.
    remember: bool,
}

/// How long one `POST /scan` may take before it counts as failed. scan-api answers 503 once a
/// publish confirm takes 5 s, so only a hung scan-api reaches this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The sequence number of the probe scan.
pub(crate) const PROBE: u64 = u64::MAX;

impl ScanTarget {
    /// A target for the scan-api at `scan_api`, keeping up to `connections` idle connections
    /// (a pool size, not a limit on requests in flight).
    pub fn new(scan_api: SocketAddr, connections: usize) -> Self {
        Self::at(format!("http://{scan_api}/scan"), connections, true)
    }

    /// A target posting to `url`; with `remember` false it keeps no scan and hands back no id
    /// to follow.
    pub fn at(url: String, connections: usize, remember: bool) -> Self {
        Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap_or_default(),
            url,
            scans: Mutex::default(),
            probe: Mutex::default(),
            accepted: AtomicU64::new(0),
            remember,
        }
    }

    /// Scans accepted since the start, probe and warmup included.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Every accepted scan so far, and the probe's task id.
    pub fn take(&self) -> (Vec<Scan>, Option<String>) {
        let scans = std::mem::take(&mut *self.scans.lock().unwrap_or_else(PoisonError::into_inner));
        let probe = self
            .probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (scans, probe)
    }
}

impl ScanTarget {
    /// `POST /scan` number `seq`: the accepted scan's task id and, when scan-api said, its
    /// trace id. Remembers nothing (see [`Target::send`] for that).
    pub async fn post(&self, seq: u64) -> Result<(String, Option<String>), ScanError> {
        const KINDS: [&str; 5] = ["bottle", "can", "box", "jar", "peel"];
        let body = serde_json::json!({
            "image_url": format!("https://img.example/{}/{seq}.jpg", KINDS[(seq % 5) as usize]),
            "user_id": format!("user-{}", seq % 1000),
        });
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(ScanError::Transport)?;
        let status = response.status();
        if status.as_u16() != 202 {
            let body = response.text().await.unwrap_or_default();
            return Err(ScanError::Refused { status, body });
        }
        let body: serde_json::Value = response.json().await.map_err(ScanError::Body)?;
        let id = body["task_id"].as_str().ok_or(ScanError::NoTaskId)?;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok((id.to_owned(), body["trace_id"].as_str().map(str::to_owned)))
    }
}

impl Target for ScanTarget {
    type Error = ScanError;

    fn classify(error: &ScanError) -> tb_load::Failure {
        match error {
            ScanError::Refused { status, .. }
                if *status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                    || *status == reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                tb_load::Failure::Refused
            }
            ScanError::Transport(e) if e.is_timeout() => tb_load::Failure::TimedOut,
            _ => tb_load::Failure::Other,
        }
    }

    async fn send(&self, seq: u64) -> Result<Option<String>, ScanError> {
        let (id, trace_id) = self.post(seq).await?;
        if !self.remember {
            return Ok(None);
        }
        // The probe is a scan like any other: its spans must be judged, not counted as strays.
        if seq == PROBE {
            *self.probe.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.clone());
        }
        if let Some(trace_id) = trace_id {
            self.scans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Scan {
                    task_id: id.clone(),
                    trace_id,
                });
        }
        Ok(Some(id))
    }
}
