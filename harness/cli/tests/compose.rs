//! The compose demo, checked without a Docker engine: `docker-compose.yml` and the configs it
//! mounts (OpenTelemetry Collector, Tempo, Loki, Prometheus, Grafana) read as typed YAML, every
//! `tracebench` command line in it parsed by the binary's own parser, every mounted file
//! present, every `host:port` a service or config points to a service of the file, no two
//! processes in the same Kafka consumer group, and the same image versions as testcontainers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Parser as _;
use serde::Deserialize;
use tb_runner::infra::images;
use tracebench::cli::{Cli, Command};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `path` as `T`, or a panic naming the file and the field that did not fit.
fn typed<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let text = read(path);
    let de = serde_norway::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- docker-compose.yml ----

#[derive(Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<serde_norway::Value>>,
}

#[derive(Deserialize)]
struct Service {
    image: Option<String>,
    build: Option<String>,
    /// A list of arguments, never one string: a shell would split a string differently.
    command: Option<Vec<String>>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    depends_on: BTreeMap<String, DependsOn>,
    #[serde(default)]
    profiles: Vec<String>,
    restart: Option<String>,
    healthcheck: Option<Healthcheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DependsOn {
    condition: String,
}

#[derive(Deserialize)]
struct Healthcheck {
    test: Vec<String>,
}

fn compose() -> Compose {
    typed("docker-compose.yml")
}

/// The services built from this repository: their image's entrypoint is `tracebench`.
fn tracebench_services(compose: &Compose) -> impl Iterator<Item = (&String, &Service)> {
    compose
        .services
        .iter()
        .filter(|(_, s)| s.build.as_deref() == Some("."))
}

fn parse(name: &str, service: &Service) -> Cli {
    let args = service
        .command
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: a tracebench service without a command"));
    Cli::try_parse_from(std::iter::once("tracebench").chain(args.iter().map(String::as_str)))
        .unwrap_or_else(|e| panic!("{name}: `tracebench {}`:\n{e}", args.join(" ")))
}

#[test]
fn every_tracebench_command_line_parses() {
    let compose = compose();
    let mut seen = BTreeSet::new();
    for (name, service) in tracebench_services(&compose) {
        let cli = parse(name, service);
        seen.insert(match cli.command {
            Command::Service(_) => "service",
            Command::Load(_) => "load",
            Command::Run(_) => "run",
            _ => "other",
        });
    }
    assert_eq!(
        seen,
        BTreeSet::from(["load", "run", "service"]),
        "the pipeline, a gentle feed and the one-shot run"
    );
}

#[test]
fn a_scenario_a_run_names_is_one_the_image_holds_and_it_is_valid() {
    // The Dockerfile copies `scenarios/` to `/scenarios`.
    assert!(read("Dockerfile").contains("COPY scenarios /scenarios"));
    let compose = compose();
    for (name, service) in tracebench_services(&compose) {
        if let Command::Run(args) = parse(name, service).command {
            let file = args.file.strip_prefix("/scenarios").unwrap_or_else(|_| {
                panic!("{name}: {} is not under /scenarios", args.file.display())
            });
            let path = root().join("scenarios").join(file);
            tb_scenario::Scenario::load(&path)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", path.display()));
        }
    }
}

/// The Kafka consumer groups a compose service joins on the shared broker.
fn consumer_groups(name: &str, service: &Service) -> Vec<&'static str> {
    let groups_of = |services: &[&str]| {
        let mut groups = Vec::new();
        for s in services {
            match *s {
                "character-consumer" => groups.push(tb_consumers::CHARACTER_GROUP),
                "my-consumer" => groups.push(tb_consumers::MY_GROUP),
                _ => {}
            }
        }
        groups
    };
    let shared_kafka = |flag: bool| flag || service.environment.contains_key("TB_KAFKA_BROKERS");
    let command = service.command.as_deref().unwrap_or_default();
    let flag = command.iter().any(|a| a.starts_with("--kafka-brokers"));
    match parse(name, service).command {
        Command::Service(args) if shared_kafka(flag) => {
            let services = args.services().unwrap_or_else(|e| panic!("{name}: {e}"));
            groups_of(&services)
        }
        // A run starts a pipeline of its own, both consumers included.
        Command::Run(_) if shared_kafka(false) => groups_of(&tb_pipeline::SERVICES),
        _ => Vec::new(),
    }
}

#[test]
fn no_two_services_share_a_kafka_consumer_group() {
    let compose = compose();
    let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, service) in tracebench_services(&compose) {
        for group in consumer_groups(name, service) {
            members.entry(group).or_default().push(name);
        }
    }
    assert!(
        !members.is_empty(),
        "the pipeline joins its groups on the compose Kafka"
    );
    for (group, services) in &members {
        assert_eq!(
            services.len(),
            1,
            "group {group} is joined by {services:?}: Kafka would split its partitions"
        );
    }
}

#[test]
fn every_image_is_pinned_and_matches_testcontainers() {
    let compose = compose();
    let mut images_seen = BTreeMap::new();
    for (name, service) in &compose.services {
        match (&service.image, &service.build) {
            (Some(image), None) => {
                let (repo, tag) = image
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
                assert!(
                    tag.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit() || c == 'v')
                        && tag.contains('.')
                        && tag != "latest",
                    "{name}: {image} is not pinned to a version"
                );
                images_seen.insert(repo.to_owned(), tag.to_owned());
            }
            (None, Some(_)) => {}
            _ => panic!("{name}: needs exactly one of image and build"),
        }
    }
    for (repo, tag) in [images::RABBITMQ, images::KAFKA, images::TEMPO] {
        assert_eq!(
            images_seen.get(repo).map(String::as_str),
            Some(tag),
            "compose and testcontainers pin {repo} differently"
        );
    }
}

#[test]
fn every_mounted_file_exists_and_every_named_volume_is_declared() {
    let compose = compose();
    // Output directories (`./out`, git-ignored) are created by Docker on first use.
    let ignored: Vec<String> = read(".gitignore")
        .lines()
        .map(|l| format!("./{}", l.trim().trim_start_matches('/')))
        .collect();
    for (name, service) in &compose.services {
        for volume in &service.volumes {
            let source = volume.split(':').next().unwrap_or_default();
            if ignored.iter().any(|i| i == source) {
                continue;
            }
            if source.starts_with('.') {
                assert!(
                    root().join(source).exists(),
                    "{name}: mounts {source}, which is not in the repository"
                );
            } else {
                assert!(
                    compose.volumes.contains_key(source),
                    "{name}: volume {source} is not declared under volumes"
                );
            }
        }
    }
}

#[test]
fn dependencies_exist_and_long_running_services_restart() {
    let compose = compose();
    for (name, service) in &compose.services {
        for (dependency, on) in &service.depends_on {
            let target = compose
                .services
                .get(dependency)
                .unwrap_or_else(|| panic!("{name} depends on {dependency}, not a service"));
            assert!(
                target.profiles.is_empty() || target.profiles == service.profiles,
                "{name} depends on {dependency}, which runs only in profiles {:?}",
                target.profiles
            );
            let conditions = [
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            ];
            assert!(
                conditions.contains(&on.condition.as_str()),
                "{name}: {}",
                on.condition
            );
            if on.condition == "service_healthy" {
                assert!(
                    target
                        .healthcheck
                        .as_ref()
                        .is_some_and(|h| !h.test.is_empty()),
                    "{name} waits for {dependency} to be healthy, which has no healthcheck"
                );
            }
        }
        // One-shot runs (`tracebench run`, in a profile of their own) end by design.
        let one_shot = service
            .command
            .as_ref()
            .is_some_and(|c| c.first().is_some_and(|a| a == "run"));
        if !one_shot {
            assert!(
                matches!(
                    service.restart.as_deref(),
                    Some("unless-stopped" | "always")
                ),
                "{name}: a long-running service without a restart policy"
            );
        }
    }
}

// ---- host:port references ----

/// Every `host:port` in `text` whose host is a name (not an address or `localhost`).
fn named_endpoints(text: &str) -> Vec<(String, u16)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for (i, _) in text.match_indices(':') {
        let digits: String = text[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(port) = digits.parse::<u16>() else {
            continue;
        };
        let start = text[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
            .map_or(0, |j| j + 1);
        let host = &text[start..i];
        let named = host.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && host != "localhost"
            && !host.contains('.');
        // `x:1` in a duration or a key (`port:8888`) is not an endpoint: a host is followed
        // by its port and then a path, the end, or a separator.
        let after = bytes.get(i + 1 + digits.len()).copied();
        if named && matches!(after, None | Some(b'/' | b'"' | b',' | b' ' | b'\'')) {
            found.push((host.to_owned(), port));
        }
    }
    found
}

/// The ports a compose service listens on inside the network: the container side of its
/// published ports, and those its image is known to serve.
fn listens(compose: &Compose, name: &str) -> BTreeSet<u16> {
    let service = &compose.services[name];
    let mut ports: BTreeSet<u16> = service
        .ports
        .iter()
        .filter_map(|p| p.rsplit(':').next()?.split('/').next()?.parse().ok())
        .collect();
    // Listeners not published to the host, named in the configs that open them.
    let internal: &[(&str, &[u16])] = &[
        ("kafka", &[9092, 9093]),
        ("tempo", &[3200, 4317, 4318]),
        ("otel-collector", &[4317, 4318, 8888, 13133]),
        ("pipeline", &[8000, 8001, 8002]),
    ];
    for (n, p) in internal {
        if *n == name {
            ports.extend(*p);
        }
    }
    ports
}

#[test]
fn every_endpoint_named_anywhere_is_a_compose_service_on_a_port_it_serves() {
    let compose = compose();
    let mut sources = vec![("docker-compose.yml".to_owned(), read("docker-compose.yml"))];
    for dir in ["docker", "docker/grafana"] {
        for entry in std::fs::read_dir(root().join(dir)).expect(dir) {
            let path = entry.expect("entry").path();
            if path.is_file() {
                let text = std::fs::read_to_string(&path).expect("config");
                sources.push((path.display().to_string(), text));
            }
        }
    }
    let mut checked = 0;
    for (file, text) in &sources {
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for (host, port) in named_endpoints(line) {
                assert!(
                    compose.services.contains_key(&host),
                    "{file}: `{line}` names {host}, not a compose service"
                );
                assert!(
                    listens(&compose, &host).contains(&port),
                    "{file}: `{line}`: {host} does not serve port {port}"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} endpoints found: is the parser blind?"
    );
}

#[test]
fn the_endpoint_finder_reads_urls_addresses_and_skips_the_rest() {
    assert_eq!(
        named_endpoints("amqp://guest:guest@rabbitmq:5672/%2f"),
        [("rabbitmq".to_owned(), 5672)]
    );
    assert_eq!(
        named_endpoints("--kafka-brokers=kafka:9092"),
        [("kafka".to_owned(), 9092)]
    );
    assert_eq!(
        named_endpoints("url: http://tempo:3200"),
        [("tempo".to_owned(), 3200)]
    );
    assert!(named_endpoints("endpoint: 0.0.0.0:4317").is_empty());
    assert!(named_endpoints("localhost:29092 and 127.0.0.1:8000").is_empty());
    assert!(named_endpoints("interval: 5s, retries: 20").is_empty());
}

// ---- the configs, typed ----

/// The Collector's configuration, as far as wiring goes.
#[derive(Deserialize)]
struct Collector {
    receivers: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    processors: BTreeMap<String, serde_norway::Value>,
    exporters: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    extensions: BTreeMap<String, serde_norway::Value>,
    service: CollectorService,
}

#[derive(Deserialize)]
struct CollectorService {
    #[serde(default)]
    extensions: Vec<String>,
    pipelines: BTreeMap<String, CollectorPipeline>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorPipeline {
    receivers: Vec<String>,
    #[serde(default)]
    processors: Vec<String>,
    exporters: Vec<String>,
}

#[test]
fn the_collector_takes_otlp_and_files_and_every_pipeline_uses_defined_components() {
    let c: Collector = typed("docker/otel-collector.yaml");
    for (name, p) in &c.service.pipelines {
        for r in &p.receivers {
            assert!(c.receivers.contains_key(r), "pipeline {name}: receiver {r}");
        }
        for q in &p.processors {
            assert!(
                c.processors.contains_key(q),
                "pipeline {name}: processor {q}"
            );
        }
        for e in &p.exporters {
            assert!(c.exporters.contains_key(e), "pipeline {name}: exporter {e}");
        }
    }
    for e in &c.service.extensions {
        assert!(c.extensions.contains_key(e), "extension {e}");
    }
    let traces = &c.service.pipelines["traces"];
    assert!(traces.receivers.iter().any(|r| r.starts_with("otlp")));
    let logs = &c.service.pipelines["logs"];
    assert!(logs.receivers.iter().any(|r| r.starts_with("filelog")));
    let filelog = serde_norway::to_string(&c.receivers[&logs.receivers[0]]).expect("yaml");
    assert!(
        filelog.contains("/var/log/tracebench"),
        "the collector tails the pipeline's log volume: {filelog}"
    );
}

#[derive(Deserialize)]
struct Tempo {
    metrics_generator: MetricsGenerator,
    overrides: serde_norway::Value,
}

#[derive(Deserialize)]
struct MetricsGenerator {
    storage: GeneratorStorage,
}

#[derive(Deserialize)]
struct GeneratorStorage {
    remote_write: Vec<RemoteWrite>,
}

#[derive(Deserialize)]
struct RemoteWrite {
    url: String,
}

#[test]
fn tempo_generates_the_service_graph_and_span_metrics_into_prometheus() {
    let tempo: Tempo = typed("docker/tempo.yaml");
    let urls: Vec<_> = tempo
        .metrics_generator
        .storage
        .remote_write
        .iter()
        .map(|w| w.url.as_str())
        .collect();
    assert!(
        urls.iter()
            .any(|u| u.starts_with("http://prometheus:9090/")),
        "{urls:?}"
    );
    let overrides = serde_norway::to_string(&tempo.overrides).expect("yaml");
    for processor in ["service-graphs", "span-metrics"] {
        assert!(overrides.contains(processor), "{processor} on: {overrides}");
    }
}

#[derive(Deserialize)]
struct Datasources {
    datasources: Vec<Datasource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Datasource {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    uid: String,
    url: String,
    #[serde(default)]
    json_data: serde_norway::Value,
}

/// Every `datasourceUid` anywhere under `value`.
fn uids_referenced(value: &serde_norway::Value, out: &mut Vec<String>) {
    match value {
        serde_norway::Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some("datasourceUid")
                    && let Some(uid) = v.as_str()
                {
                    out.push(uid.to_owned());
                }
                uids_referenced(v, out);
            }
        }
        serde_norway::Value::Sequence(s) => s.iter().for_each(|v| uids_referenced(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_links_traces_logs_and_metrics_through_uids_it_defines() {
    let sources: Datasources = typed("docker/grafana/datasources.yaml");
    let uids: BTreeSet<_> = sources.datasources.iter().map(|d| d.uid.clone()).collect();
    let kinds: BTreeSet<_> = sources
        .datasources
        .iter()
        .map(|d| d.kind.as_str())
        .collect();
    for kind in ["tempo", "loki", "prometheus"] {
        assert!(kinds.contains(kind), "a {kind} data source: {kinds:?}");
    }
    let mut referenced = Vec::new();
    for d in &sources.datasources {
        assert!(d.url.starts_with("http://"), "{}: {}", d.name, d.url);
        uids_referenced(&d.json_data, &mut referenced);
    }
    assert!(
        referenced.len() >= 3,
        "traces→logs, service map, logs→traces: {referenced:?}"
    );
    for uid in referenced {
        assert!(
            uids.contains(&uid),
            "a link to data source {uid}, which is not defined"
        );
    }
    let loki = sources
        .datasources
        .iter()
        .find(|d| d.kind == "loki")
        .expect("loki");
    let derived = serde_norway::to_string(&loki.json_data).expect("yaml");
    assert!(
        derived.contains("trace_id"),
        "Loki turns trace_id into a Tempo link: {derived}"
    );
}

#[derive(Deserialize)]
struct Loki {
    server: LokiServer,
    #[serde(default)]
    limits_config: serde_norway::Value,
}

#[derive(Deserialize)]
struct LokiServer {
    http_listen_port: u16,
}

#[test]
fn loki_listens_where_the_collector_and_grafana_send_and_takes_otlp_metadata() {
    let loki: Loki = typed("docker/loki.yaml");
    assert_eq!(loki.server.http_listen_port, 3100);
    // OTLP logs carry trace_id as structured metadata; Loki refuses it unless allowed (the
    // default since 3.0, stated here so a downgrade cannot drop it silently).
    let limits = serde_norway::to_string(&loki.limits_config).expect("yaml");
    assert!(
        limits.contains("allow_structured_metadata: true"),
        "{limits}"
    );
}

#[derive(Deserialize)]
struct Dashboard {
    title: String,
    panels: Vec<Panel>,
}

#[derive(Deserialize)]
struct Panel {
    title: String,
    #[serde(default)]
    targets: Vec<serde_json::Value>,
}

#[test]
fn the_dashboard_shows_throughput_latency_propagation_and_drops() {
    let text = read("docker/grafana/dashboards/tracebench.json");
    let dashboard: Dashboard = serde_json::from_str(&text).expect("dashboard JSON");
    assert!(!dashboard.title.is_empty());
    let titles: Vec<String> = dashboard
        .panels
        .iter()
        .map(|p| p.title.to_lowercase())
        .collect();
    for word in ["scans", "latency", "propagation", "dropped"] {
        assert!(
            titles.iter().any(|t| t.contains(word)),
            "a panel on {word}: {titles:?}"
        );
    }
    for panel in &dashboard.panels {
        assert!(!panel.targets.is_empty(), "{}: no query", panel.title);
    }
}
