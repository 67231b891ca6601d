//! Provisioning: where RabbitMQ, Kafka and the trace backend come from for a run.
//!
//! `auto` takes the first that works: an explicit URL (scenario, then `TB_*` environment) →
//! a container (testcontainers) when a Docker engine answers → the embedded one (Kafka's mock
//! cluster, the harness's trace sink) → for RabbitMQ, which has no embedded form, a server on
//! the local default port → otherwise an error that says how to get one. The choice is
//! printed at start and recorded in `result.json`.

use std::any::Any;
use std::path::Path;
use std::time::Duration;

use testcontainers::core::{ContainerPort, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use tb_pipeline::KafkaChoice;

use tb_report::{Choice, InfraReport};
use tb_scenario::{Infra, InfraMode};

/// Values from the environment, read once by the binary (tests build this directly).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    /// `TB_AMQP_URL`.
    pub amqp_url: Option<String>,
    /// `TB_KAFKA_BROKERS`.
    pub kafka_brokers: Option<String>,
    /// `TB_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// `TB_TEMPO_URL`.
    pub tempo_url: Option<String>,
}

impl Env {
    /// Reads the `TB_*` variables.
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            amqp_url: get("TB_AMQP_URL"),
            kafka_brokers: get("TB_KAFKA_BROKERS"),
            otlp_endpoint: get("TB_OTLP_ENDPOINT"),
            tempo_url: get("TB_TEMPO_URL"),
        }
    }
}

/// Provisioned infrastructure; containers stop when this is dropped.
pub struct Provisioned {
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Kafka.
    pub kafka: KafkaChoice,
    /// OTLP endpoint of an external or container trace backend; `None` for the embedded sink.
    pub otlp_endpoint: Option<String>,
    /// Query URL (Tempo's HTTP API) of that backend, when known.
    pub tempo_url: Option<String>,
    /// What was chosen.
    pub report: InfraReport,
    _containers: Vec<Box<dyn Any + Send>>,
}

/// Why infrastructure could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// Nothing works for this piece; the message says how to get one.
    #[error("{0}")]
    Unavailable(String),
    /// A container failed to start.
    #[error("starting the {0} container: {1}")]
    Container(&'static str, testcontainers::TestcontainersError),
}

/// The local default RabbitMQ.
pub const LOCAL_AMQP: &str = tb_messaging::amqp::DEFAULT_URL;

/// Pinned images: name, tag, and the port the pipeline talks to. `docker-compose.yml` uses the
/// same ones (`tests/compose.rs` checks).
pub mod images {
    /// RabbitMQ with the management plugin (testcontainers-modules' default is 3.8, long out of
    /// support).
    pub const RABBITMQ: (&str, &str) = ("rabbitmq", "4.1.8-management");
    /// Apache Kafka, the GraalVM native image testcontainers-modules' KRaft module starts.
    pub const KAFKA: (&str, &str) = ("apache/kafka-native", "3.8.0");
    /// Grafana Tempo, single binary.
    pub const TEMPO: (&str, &str) = ("grafana/tempo", "2.8.2");
    /// Tempo's OTLP/gRPC port.
    pub const TEMPO_OTLP_GRPC: u16 = 4317;
    /// Tempo's HTTP API port (query, `/ready`).
    pub const TEMPO_HTTP: u16 = 3200;
}

/// The RabbitMQ container request: testcontainers-modules' module on the pinned image.
pub fn rabbitmq_image()
-> testcontainers::ContainerRequest<testcontainers_modules::rabbitmq::RabbitMq> {
    let (name, tag) = images::RABBITMQ;
    testcontainers_modules::rabbitmq::RabbitMq::default()
        .with_name(name)
        .with_tag(tag)
}

/// The Kafka container request: testcontainers-modules' KRaft module on the pinned image.
pub fn kafka_image()
-> testcontainers::ContainerRequest<testcontainers_modules::kafka::apache::Kafka> {
    let (name, tag) = images::KAFKA;
    testcontainers_modules::kafka::apache::Kafka::default()
        .with_name(name)
        .with_tag(tag)
}

/// Tempo's configuration for a throwaway single-binary instance: OTLP in, local storage.
pub const TEMPO_CONFIG: &str = "\
server:
  http_listen_port: 3200
distributor:
  receivers:
    otlp:
      protocols:
        grpc:
          endpoint: 0.0.0.0:4317
        http:
          endpoint: 0.0.0.0:4318
ingester:
  # Search finds a trace only once the ingester has cut it, this long after its last span
  # (10 s by default): the verifier's tag search for stray traces should not wait that long.
  trace_idle_period: 1s
storage:
  trace:
    backend: local
    wal:
      path: /var/tempo/wal
    local:
      path: /var/tempo/blocks
";

/// The Tempo container request: pinned image, config copied in, both ports exposed, ready
/// when Tempo logs that it started.
pub fn tempo_image() -> testcontainers::ContainerRequest<GenericImage> {
    let (name, tag) = images::TEMPO;
    GenericImage::new(name, tag)
        .with_exposed_port(images::TEMPO_OTLP_GRPC.tcp())
        .with_exposed_port(images::TEMPO_HTTP.tcp())
        .with_wait_for(WaitFor::message_on_stderr("Tempo started"))
        .with_copy_to("/etc/tempo.yaml", TEMPO_CONFIG.as_bytes().to_vec())
        .with_cmd(["-config.file=/etc/tempo.yaml"])
        .with_startup_timeout(Duration::from_secs(120))
}

/// Whether a Docker engine answers on `DOCKER_HOST` (a unix socket) or the default socket.
pub fn docker_available() -> bool {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    Path::new(&socket).exists() && std::os::unix::net::UnixStream::connect(&socket).is_ok()
}

async fn tcp_answers(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

fn explicit<'a>(scenario: &'a Option<String>, env: &'a Option<String>) -> Option<&'a String> {
    scenario.as_ref().or(env.as_ref())
}

const NO_RABBITMQ: &str = "no RabbitMQ: none configured (infra.amqp_url or TB_AMQP_URL), no Docker \
    engine for a container, and nothing on 127.0.0.1:5672. Start one with `docker run -d -p \
    5672:5672 rabbitmq:4` or install your distribution's package (`apt install rabbitmq-server`)";

/// Containers started for a run; they stop when dropped.
type Containers = Vec<Box<dyn Any + Send>>;

/// Provides what `infra` asks for.
///
/// # Errors
///
/// Fails when a required piece is unavailable (the message says how to get one) or a container
/// does not start.
pub async fn provision(
    infra: &Infra,
    env: &Env,
    exporter_otlp: bool,
) -> Result<Provisioned, InfraError> {
    let docker = docker_available();
    let mut containers = Containers::new();
    let (amqp_url, rabbitmq) = rabbitmq(infra, env, docker, &mut containers).await?;
    let (kafka, kafka_choice) = kafka(infra, env, docker, &mut containers).await?;
    let mut tempo_url = explicit(&infra.tempo_url, &env.tempo_url).cloned();
    // Only an OTLP exporter needs a trace backend outside this process.
    let (otlp_endpoint, traces) = if exporter_otlp {
        let (endpoint, choice, tempo) = trace_backend(infra, env, docker, &mut containers).await?;
        tempo_url = tempo.or(tempo_url);
        (Some(endpoint), choice)
    } else {
        (None, embedded_choice())
    };
    Ok(Provisioned {
        amqp_url,
        kafka,
        otlp_endpoint,
        tempo_url,
        report: InfraReport {
            rabbitmq,
            kafka: kafka_choice,
            traces,
        },
        _containers: containers,
    })
}

/// RabbitMQ: explicit URL → container → the local default port → an error saying how to get one.
async fn rabbitmq(
    infra: &Infra,
    env: &Env,
    docker: bool,
    containers: &mut Containers,
) -> Result<(String, Choice), InfraError> {
    let url = explicit(&infra.amqp_url, &env.amqp_url);
    match (infra.rabbitmq, url) {
        (InfraMode::External | InfraMode::Auto, Some(url)) => {
            Ok((url.clone(), explicit_choice(url)))
        }
        (InfraMode::External, None) => Err(InfraError::Unavailable(
            "infra.rabbitmq is external but no URL is set (infra.amqp_url or TB_AMQP_URL)"
                .to_owned(),
        )),
        (InfraMode::Docker, _) | (InfraMode::Auto, None) if docker => {
            let c = rabbitmq_image()
                .start()
                .await
                .map_err(|e| InfraError::Container("rabbitmq", e))?;
            let port = c
                .get_host_port_ipv4(5672)
                .await
                .map_err(|e| InfraError::Container("rabbitmq", e))?;
            containers.push(Box::new(c));
            let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
            Ok((url.clone(), docker_choice(url)))
        }
        (InfraMode::Docker, _) => Err(InfraError::Unavailable(
            "infra.rabbitmq is docker but no Docker engine answers".to_owned(),
        )),
        _ if tcp_answers("127.0.0.1:5672").await => Ok((
            LOCAL_AMQP.to_owned(),
            Choice {
                source: "local".to_owned(),
                address: Some(LOCAL_AMQP.to_owned()),
            },
        )),
        _ => Err(InfraError::Unavailable(NO_RABBITMQ.to_owned())),
    }
}

/// Kafka: explicit brokers → container → the embedded mock cluster.
async fn kafka(
    infra: &Infra,
    env: &Env,
    docker: bool,
    containers: &mut Containers,
) -> Result<(KafkaChoice, Choice), InfraError> {
    let brokers = explicit(&infra.kafka_brokers, &env.kafka_brokers);
    match (infra.kafka, brokers) {
        (InfraMode::External | InfraMode::Auto, Some(b)) => {
            Ok((KafkaChoice::External(b.clone()), explicit_choice(b)))
        }
        (InfraMode::External, None) => Err(InfraError::Unavailable(
            "infra.kafka is external but no brokers are set (infra.kafka_brokers or TB_KAFKA_BROKERS)".to_owned(),
        )),
        (InfraMode::Docker, _) | (InfraMode::Auto, None) if docker => {
            let c = kafka_image()
                .start()
                .await
                .map_err(|e| InfraError::Container("kafka", e))?;
            let port = c
                .get_host_port_ipv4(testcontainers_modules::kafka::apache::KAFKA_PORT)
                .await
                .map_err(|e| InfraError::Container("kafka", e))?;
            containers.push(Box::new(c));
            let b = format!("127.0.0.1:{port}");
            Ok((KafkaChoice::External(b.clone()), docker_choice(b)))
        }
        (InfraMode::Docker, _) => Err(InfraError::Unavailable(
            "infra.kafka is docker but no Docker engine answers".to_owned(),
        )),
        _ => Ok((KafkaChoice::Embedded, embedded_choice())),
    }
}

/// The OTLP trace backend: an explicit endpoint → a Tempo container (whose query URL comes
/// back too) → an error.
async fn trace_backend(
    infra: &Infra,
    env: &Env,
    docker: bool,
    containers: &mut Containers,
) -> Result<(String, Choice, Option<String>), InfraError> {
    let endpoint = explicit(&infra.otlp_endpoint, &env.otlp_endpoint);
    match (infra.traces, endpoint) {
        (InfraMode::External | InfraMode::Auto, Some(e)) => {
            Ok((e.clone(), explicit_choice(e), None))
        }
        (InfraMode::Docker | InfraMode::Auto, _) if docker => {
            let c = tempo_image()
                .start()
                .await
                .map_err(|e| InfraError::Container("tempo", e))?;
            let port = c
                .get_host_port_ipv4(ContainerPort::Tcp(images::TEMPO_OTLP_GRPC))
                .await
                .map_err(|e| InfraError::Container("tempo", e))?;
            let http = c
                .get_host_port_ipv4(ContainerPort::Tcp(images::TEMPO_HTTP))
                .await
                .map_err(|e| InfraError::Container("tempo", e))?;
            containers.push(Box::new(c));
            let e = format!("http://127.0.0.1:{port}");
            Ok((
                e.clone(),
                docker_choice(e),
                Some(format!("http://127.0.0.1:{http}")),
            ))
        }
        _ => Err(InfraError::Unavailable(
            "tracing.exporter is otlp but there is no trace backend: set infra.otlp_endpoint or \
             TB_OTLP_ENDPOINT, run a Docker engine for Tempo, or use tracing.exporter: embedded"
                .to_owned(),
        )),
    }
}

fn docker_choice(address: String) -> Choice {
    Choice {
        source: "docker".to_owned(),
        address: Some(address),
    }
}

fn embedded_choice() -> Choice {
    Choice {
        source: "embedded".to_owned(),
        address: None,
    }
}

fn explicit_choice(address: &str) -> Choice {
    Choice {
        source: "explicit".to_owned(),
        address: Some(address.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testcontainers::Image;

    #[test]
    fn the_tempo_request_pins_its_image_and_exposes_otlp_and_http() {
        let request = tempo_image();
        assert_eq!(request.image().name(), "grafana/tempo");
        assert_eq!(request.image().tag(), "2.8.2");
        let ports = request.image().expose_ports().to_vec();
        assert!(
            ports.contains(&ContainerPort::Tcp(4317)) && ports.contains(&ContainerPort::Tcp(3200))
        );
        assert!(TEMPO_CONFIG.contains("0.0.0.0:4317"));
    }

    #[test]
    fn the_module_containers_run_the_pinned_images() {
        // `descriptor()` is what the container is started from: `name:tag` after overrides.
        let pinned = |(name, tag): (&str, &str)| format!("{name}:{tag}");
        assert_eq!(rabbitmq_image().descriptor(), pinned(images::RABBITMQ));
        assert_eq!(kafka_image().descriptor(), pinned(images::KAFKA));
        // The module's own image is the one pinned, at whatever tag: its start-up command and
        // readiness check are written for it.
        let module = testcontainers_modules::kafka::apache::Kafka::default();
        assert_eq!(module.name(), images::KAFKA.0);
    }

    fn infra(rabbitmq: InfraMode, kafka: InfraMode) -> Infra {
        Infra {
            rabbitmq,
            amqp_url: None,
            kafka,
            kafka_brokers: None,
            traces: InfraMode::Auto,
            otlp_endpoint: None,
            tempo_url: None,
        }
    }

    #[tokio::test]
    async fn explicit_urls_win_and_are_reported() {
        let env = Env {
            amqp_url: Some("amqp://u:p@rabbit:5672/%2f".to_owned()),
            kafka_brokers: Some("kafka:9092".to_owned()),
            ..Env::default()
        };
        let p = provision(&infra(InfraMode::Auto, InfraMode::Auto), &env, false)
            .await
            .expect("provisioned");
        assert_eq!(p.amqp_url, "amqp://u:p@rabbit:5672/%2f");
        assert_eq!(p.kafka, KafkaChoice::External("kafka:9092".to_owned()));
        assert_eq!(p.report.rabbitmq.source, "explicit");
        assert_eq!(p.report.traces.source, "embedded");
    }

    #[tokio::test]
    async fn external_without_a_url_is_an_error_that_says_what_is_missing() {
        let err = provision(
            &infra(InfraMode::External, InfraMode::Auto),
            &Env::default(),
            false,
        )
        .await
        .err()
        .expect("error");
        assert!(err.to_string().contains("TB_AMQP_URL"), "{err}");
        let err = provision(
            &infra(InfraMode::Auto, InfraMode::Auto),
            &Env::default(),
            true,
        )
        .await;
        if !docker_available() {
            let err = err.err().expect("no trace backend");
            assert!(err.to_string().contains("TB_OTLP_ENDPOINT"), "{err}");
        }
    }
}
