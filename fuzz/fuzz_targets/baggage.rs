//! `baggage` parsing never panics, and what it accepts, written back out, parses again to the
//! same members (as a set: the SDK's baggage is a map, so the order is its own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_telemetry::baggage;

/// The members of a written header, sorted.
fn members(header: &str) -> Vec<(String, String, String)> {
    let mut m: Vec<_> = baggage::parse(header)
        .expect("a written baggage parses")
        .into_iter()
        .map(|m| (m.key, m.value, m.properties))
        .collect();
    m.sort();
    m
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = baggage::parse(text);
    if let Ok(parsed) = baggage::baggage_from_header(text) {
        let header = baggage::to_header(&parsed);
        let again = baggage::baggage_from_header(&header).expect("a written baggage parses");
        assert_eq!(members(&baggage::to_header(&again)), members(&header));
    }
});
