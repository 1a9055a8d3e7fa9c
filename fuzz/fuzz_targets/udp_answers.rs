#![no_main]
//! Fuzzes the answer parsers of the UDP sensors (NTP, SNMP v2c and v3,
//! TFTP, NetBIOS, DNS, custom bytes) and of the DNS sensor: no input may
//! panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portwatch_probe::udp::parse_untrusted(data);
    portwatch_probe::dns::parse_untrusted(data);
});
