#![no_main]
//! Fuzzes a response parser of the protocol checks: no input may panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = {
        use portwatch_probe::proto::text::*;
        let _ = parse_pop3(data);
        let _ = parse_imap_greeting(data);
        let _ = parse_imap_tagged(data, "a1");
        let _ = parse_ssh(data);
        let _ = parse_telnet(data);
        let _ = parse_redis(data);
        let _ = parse_memcached(data);
        let _ = parse_xmpp_features(data);
    };
});
