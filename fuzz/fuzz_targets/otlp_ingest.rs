//! Any bytes decoded as an OTLP export request and ingested never panic the sink's store, which
//! stays within its bound and reads back every trace it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use tb_traces::sink::{Limits, TraceStore};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ExportTraceServiceRequest::decode(data) else {
        return;
    };
    let store = TraceStore::new(Limits {
        max_bytes: 64 * 1024,
        ..Limits::default()
    });
    let trace_ids: Vec<String> = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.trace_id.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let _ = store.ingest(request);
    assert!(store.stats().bytes_stored <= 64 * 1024);
    for id in trace_ids {
        let _ = store.get(&id);
    }
});
