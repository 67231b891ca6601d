//! Provider setup: sampler validation, the counting pipeline and `Sampling::Off`.

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use tb_telemetry::testing::MemorySpans;
use tb_telemetry::{
    Exporter, Sampling, TelemetryConfig, multi_service_provider, service, tracer_provider,
};

fn config(sampling: Sampling) -> TelemetryConfig {
    TelemetryConfig {
        sampling,
        exporter: Exporter::Discard,
        ..TelemetryConfig::default()
    }
}

#[test]
fn off_installs_no_sdk() {
    assert!(
        tracer_provider("scan-api", &config(Sampling::Off))
            .expect("builds")
            .is_none()
    );
}

#[test]
fn ratio_outside_unit_interval_is_rejected() {
    for r in [-0.1, 1.5, f64::NAN] {
        let err =
            tracer_provider("scan-api", &config(Sampling::Ratio(r))).expect_err("invalid ratio");
        assert!(err.to_string().contains("outside 0.0..=1.0"), "{err}");
    }
}

#[test]
fn ended_spans_are_counted_as_exported_after_flush() {
    let (provider, stats) = tracer_provider("scan-api", &config(Sampling::AlwaysOn))
        .expect("builds")
        .expect("an SDK");
    let tracer = provider.tracer("test");
    for _ in 0..10 {
        tracer.start("work").end();
    }
    provider.force_flush().expect("flush");
    let counts = stats.counts();
    assert_eq!(counts.ended, 10);
    assert_eq!(counts.exported, 10);
    assert_eq!(counts.dropped_or_pending(), 0);
    provider.shutdown().expect("shutdown");
}

#[test]
fn always_off_ends_no_sampled_spans() {
    let (provider, stats) = tracer_provider("scan-api", &config(Sampling::AlwaysOff))
        .expect("builds")
        .expect("an SDK");
    let tracer = provider.tracer("test");
    for _ in 0..10 {
        tracer.start("work").end();
    }
    provider.force_flush().expect("flush");
    assert_eq!(stats.counts().ended, 0);
    assert_eq!(stats.counts().exported, 0);
}

#[test]
fn a_full_queue_drops_are_visible_in_the_counts() {
    let mut cfg = config(Sampling::AlwaysOn);
    cfg.batch.max_queue_size = 4;
    cfg.batch.max_export_batch_size = 4;
    cfg.batch.scheduled_delay = std::time::Duration::from_secs(60);
    let (provider, stats) = tracer_provider("scan-api", &cfg)
        .expect("builds")
        .expect("an SDK");
    let tracer = provider.tracer("test");
    for _ in 0..10_000 {
        tracer.start("work").end();
    }
    provider.force_flush().expect("flush");
    let counts = stats.counts();
    assert_eq!(counts.ended, 10_000);
    assert!(counts.exported < 10_000, "{counts:?}");
    assert_eq!(counts.dropped_or_pending(), 10_000 - counts.exported);
}

#[tokio::test]
async fn spans_of_a_multi_service_process_are_exported_under_their_own_service() {
    let memory = MemorySpans::default();
    let cfg = TelemetryConfig {
        sampling: Sampling::AlwaysOn,
        exporter: Exporter::Memory(memory.clone()),
        ..TelemetryConfig::default()
    };
    let (provider, _) = multi_service_provider(&["scan-api", "worker"], &cfg)
        .expect("builds")
        .expect("an SDK");
    let tracer = provider.tracer("test");
    tracer.start("outside").end();
    service::scope("worker", async { tracer.start("inside").end() }).await;
    service::scope("unknown", async { tracer.start("stray").end() }).await;
    provider.force_flush().expect("flush");
    let mut seen: Vec<(String, String, bool)> = memory
        .spans()
        .into_iter()
        .map(|s| {
            let stamped = s
                .span
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "tracebench.service");
            (s.span.name.to_string(), s.service, stamped)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("inside".to_owned(), "worker".to_owned(), false),
            ("outside".to_owned(), "scan-api".to_owned(), false),
            ("stray".to_owned(), "scan-api".to_owned(), false),
        ]
    );
    provider.shutdown().expect("shutdown");
}

#[test]
fn a_single_service_provider_exports_under_its_own_name() {
    let memory = MemorySpans::default();
    let cfg = TelemetryConfig {
        sampling: Sampling::AlwaysOn,
        exporter: Exporter::Memory(memory.clone()),
        ..TelemetryConfig::default()
    };
    let (provider, _) = tracer_provider("scan-api", &cfg)
        .expect("builds")
        .expect("an SDK");
    provider.tracer("test").start("work").end();
    provider.force_flush().expect("flush");
    let services: Vec<String> = memory.spans().into_iter().map(|s| s.service).collect();
    assert_eq!(services, ["scan-api"]);
    provider.shutdown().expect("shutdown");
}
