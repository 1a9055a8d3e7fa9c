#![no_main]
//! Fuzzes a response parser of the protocol checks: no input may panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = {
        use portwatch_probe::proto::expect::*;
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = unescape(text);
            let _ = regex(text);
        }
        let half = data.len() / 2;
        let _ = find(&data[..half], &data[half..]);
        let mut captures = std::collections::HashMap::new();
        captures.insert("1".to_owned(), data[..half].to_vec());
        let _ = substitute(data, &captures);
    };
});
