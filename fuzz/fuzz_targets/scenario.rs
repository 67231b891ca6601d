//! A scenario file of any content is a plan or an error naming a field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_scenario::Scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Scenario::parse(std::path::Path::new("fuzz.yaml"), text) {
        assert!(!e.to_string().is_empty());
    }
});
