#![no_main]
//! Fuzzes the reply parsers of every built-in protocol: the first byte
//! picks the protocol from the table, the rest is its reply. No input may
//! panic. A protocol added to the table is fuzzed here without an edit.

use libfuzzer_sys::fuzz_target;
use portwatch_probe::proto::PROTOCOLS;

fuzz_target!(|data: &[u8]| {
    if let Some((&pick, reply)) = data.split_first() {
        (PROTOCOLS[usize::from(pick) % PROTOCOLS.len()].parse)(reply);
    }
});
