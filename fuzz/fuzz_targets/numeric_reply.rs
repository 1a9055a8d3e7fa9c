#![no_main]
//! Fuzzes a response parser of the protocol checks: no input may panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = portwatch_probe::proto::text::parse_reply(data);
});
