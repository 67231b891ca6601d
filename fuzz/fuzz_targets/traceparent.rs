//! `traceparent` parsing never panics, and what it accepts formats back to a value it accepts
//! again, unchanged (for version 00, byte for byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_telemetry::w3c::TraceParent;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = TraceParent::parse(text) else {
        return;
    };
    let formatted = parsed.format();
    let again = TraceParent::parse(formatted.as_str()).expect("a formatted traceparent parses");
    assert_eq!(again.trace_id, parsed.trace_id);
    assert_eq!(again.parent_id, parsed.parent_id);
    assert_eq!(again.flags, parsed.flags);
    if parsed.version == 0 {
        assert_eq!(formatted.as_str(), text.trim_matches([' ', '\t']));
    }
});
