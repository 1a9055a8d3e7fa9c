#![no_main]
//! Fuzzes a response parser of the protocol checks: no input may panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = { let _ = portwatch_probe::proto::simple::parse_time(data); let _ = portwatch_probe::proto::simple::parse_echo(data, b"0123456789abcdef"); };
});
