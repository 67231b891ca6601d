//! The embedded trace sink: OTLP in (gRPC, and HTTP with protobuf or JSON), a bounded in-memory
//! store indexed by trace id, and a Tempo-shaped query API out, so the verifier reads the sink
//! and a real Tempo with one [`TraceClient`].
//!
//! [`start`] runs it in this process on any addresses (port 0 in tests); [`serve`] is
//! `tracebench sink`, for services in other processes or languages. The sink does not trace
//! itself: its requests would become spans exported into itself.
//!
//! | file          | what                                                              |
//! |---------------|-------------------------------------------------------------------|
//! | [`store`]     | the bounded store, eviction, search                               |
//! | [`otlp`]      | the gRPC and HTTP receivers                                       |
//! | [`tempo`]     | `GET /api/traces/{id}`, `GET /api/search`, `GET /ready`           |
//! | `wire`        | stored spans read straight from their protobuf encoding           |

pub mod limits;
pub mod otlp;
pub mod store;
pub mod tempo;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tb_web::ApiError;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::TraceClient;
pub use otlp::OtlpGrpc;
pub use store::{
    DEFAULT_MAX_BYTES, IngestOutcome, Limits, SearchQuery, StoreStats, TraceStore, TraceSummary,
    parse_size,
};

/// Where the sink listens and how much it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// OTLP/gRPC (4317 by convention).
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP and the query API (4318 by convention).
    pub http_addr: SocketAddr,
    /// What the store may hold; beyond it the oldest traces are evicted whole.
    pub limits: Limits,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            limits: Limits::default(),
        }
    }
}

impl SinkConfig {
    /// Both listeners on free loopback ports, the default limits: a sink embedded in a process
    /// that finds it through [`RunningSink::grpc_endpoint`] (a run, the demo).
    pub fn ephemeral() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc_addr: any,
            http_addr: any,
            ..Self::default()
        }
    }
}

/// Why the sink could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A limit is zero.
    #[error("the sink's max_bytes and max_spans must be at least 1")]
    NoCapacity,
    /// A listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server's accept loop failed.
    #[error("OTLP/HTTP and query server: {0}")]
    Http(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("OTLP/gRPC server: {0}")]
    Grpc(#[source] tonic::transport::Error),
    /// A server task panicked or was cancelled.
    #[error("sink task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The sink's HTTP routes: `POST /v1/traces` (OTLP/HTTP), `GET /api/traces/{trace_id}`,
/// `GET /api/search`, `GET /api/sink/stats`, `GET /ready` and `GET /api/echo`.
pub fn app(store: Arc<TraceStore>) -> Router {
    Router::new()
        .route("/v1/traces", post(otlp::export_http))
        .route("/api/traces/{trace_id}", get(tempo::trace_by_id))
        .route("/api/search", get(tempo::search))
        .route("/api/sink/stats", get(tempo::stats))
        .route("/ready", get(|| async { "ready" }))
        .route("/api/echo", get(|| async { "echo" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(otlp::MAX_REQUEST_BYTES))
        .with_state(store)
}

/// Serves the sink on two bound listeners until `shutdown` completes, then drains both.
///
/// # Errors
///
/// Fails when either server fails; the other is stopped with it.
pub async fn run(
    store: Arc<TraceStore>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SinkError> {
    let (stop, stopped) = watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
    });
    let until = |mut rx: watch::Receiver<bool>| async move {
        // An error means the sender is gone, which only happens after it sent `true`.
        let _ = rx.wait_for(|s| *s).await;
    };
    let grpc_server = tonic::transport::Server::builder()
        .add_service(OtlpGrpc::new(Arc::clone(&store)).into_server())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc),
            until(stopped.clone()),
        );
    let http_server = axum::serve(http, app(store)).with_graceful_shutdown(until(stopped));
    let result = tokio::try_join!(
        async { grpc_server.await.map_err(SinkError::Grpc) },
        async { http_server.await.map_err(SinkError::Http) },
    );
    signal.abort();
    result.map(|_| ())
}

/// A sink running in this process; see [`start`].
#[derive(Debug)]
pub struct RunningSink {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    store: Arc<TraceStore>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), SinkError>>,
}

impl RunningSink {
    /// The bound OTLP/gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound OTLP/HTTP and query API address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The OTLP/gRPC endpoint for an exporter, `http://host:port`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The base URL of OTLP/HTTP and of the query API (for [`TraceClient::new`]).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The store, for reading spans without HTTP.
    pub fn store(&self) -> &Arc<TraceStore> {
        &self.store
    }

    /// A client of this sink's query API.
    pub fn client(&self) -> TraceClient {
        TraceClient::new(self.http_endpoint())
    }

    /// Stops accepting, drains requests in flight and waits for both servers.
    ///
    /// # Errors
    ///
    /// Fails when a server had failed, or its task panicked.
    pub async fn shutdown(self) -> Result<(), SinkError> {
        self.stop.send_replace(true);
        self.task.await?
    }
}

/// Binds `config`'s addresses (port 0 picks a free port) and runs the sink on a spawned task.
///
/// # Errors
///
/// Fails when a limit is zero or an address cannot be bound.
pub async fn start(config: SinkConfig) -> Result<RunningSink, SinkError> {
    if config.limits.max_spans == 0 || config.limits.max_bytes == 0 {
        return Err(SinkError::NoCapacity);
    }
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| SinkError::Bind { addr, source })
    };
    let grpc = bind(config.grpc_addr).await?;
    let http = bind(config.http_addr).await?;
    let local = |l: &TcpListener, addr| {
        l.local_addr()
            .map_err(|source| SinkError::Bind { addr, source })
    };
    let grpc_addr = local(&grpc, config.grpc_addr)?;
    let http_addr = local(&http, config.http_addr)?;
    let store = Arc::new(TraceStore::new(config.limits));
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(run(Arc::clone(&store), grpc, http, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Ok(RunningSink {
        grpc_addr,
        http_addr,
        store,
        stop,
        task,
    })
}

/// `tracebench sink`: runs the sink on `config`'s addresses until `shutdown` completes.
///
/// # Errors
///
/// Fails as [`start`] does, or when a server fails.
pub async fn serve(
    config: SinkConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SinkError> {
    let mut sink = start(config.clone()).await?;
    tracing::info!(
        grpc = %sink.grpc_addr(),
        http = %sink.http_addr(),
        max_bytes = config.limits.max_bytes,
        "trace sink listening: OTLP/gRPC, OTLP/HTTP /v1/traces, Tempo API /api/traces/{{id}}"
    );
    tokio::select! {
        () = shutdown => {}
        // A server that stops before being asked to has failed (or panicked).
        result = &mut sink.task => return result?,
    }
    let stats = sink.store().stats();
    tracing::info!(
        spans_received = stats.spans_received,
        spans_evicted = stats.spans_evicted,
        bytes_stored = stats.bytes_stored,
        spans_rejected = stats.spans_rejected,
        "trace sink stopping"
    );
    sink.shutdown().await
}
