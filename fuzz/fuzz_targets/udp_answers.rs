#![no_main]
//! Fuzzes the answer parsers of the UDP sensors (NTP, SNMP v2c and v3,
//! TFTP, NetBIOS, DNS, custom bytes), of the DNS sensor and of PING (ICMP
//! replies and errors): no input may panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portwatch_probe::udp::parse_untrusted(data);
    portwatch_probe::dns::parse_untrusted(data);
    portwatch_probe::ping::parse_untrusted(data);
});
