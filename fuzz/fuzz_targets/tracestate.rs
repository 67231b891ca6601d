//! `tracestate` parsing never panics, and every list it accepts holds at most 32 entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_telemetry::w3c::{parse_tracestate, trace_state_from_header};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entries) = parse_tracestate(text) {
        assert!(entries.len() <= 32, "{} entries", entries.len());
    }
    let _ = trace_state_from_header(text);
});
