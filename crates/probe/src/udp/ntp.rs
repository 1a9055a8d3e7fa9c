//! NTP (RFC 5905): a client request, and the server's answer judged by its
//! mode, stratum and leap indicator; the clock's offset from this host is
//! reported.

use crate::proto::Details;
use crate::proto::session::{SHOWN, show};

/// Seconds from 1900 (NTP's era) to 1970 (the Unix epoch).
const ERA: i64 = 2_208_988_800;

/// A timestamp in NTP's 64-bit format.
fn to_ntp(time: jiff::Timestamp) -> u64 {
    let seconds = (time.as_second() + ERA) as u64;
    let fraction = (u64::from(time.subsec_nanosecond() as u32) << 32) / 1_000_000_000;
    (seconds << 32) + fraction
}

/// An NTP timestamp as seconds since the Unix epoch.
fn from_ntp(value: u64) -> f64 {
    (value >> 32) as f64 - ERA as f64 + (value & 0xffff_ffff) as f64 / 4_294_967_296.0
}

fn seconds(time: jiff::Timestamp) -> f64 {
    time.as_second() as f64 + f64::from(time.subsec_nanosecond()) / 1e9
}

/// A client request (version 4, mode 3) sent at `now`.
pub fn request(now: jiff::Timestamp) -> Vec<u8> {
    let mut out = vec![0u8; 48];
    out[0] = 0x23; // LI 0, version 4, mode 3 (client)
    out[40..48].copy_from_slice(&to_ntp(now).to_be_bytes());
    out
}

/// Judges a server's answer to a request sent at `sent` and answered at
/// `received`: stratum, reference, leap indicator and offset, or why it is
/// not a usable answer.
pub fn judge(
    reply: &[u8],
    sent: jiff::Timestamp,
    received: jiff::Timestamp,
) -> Result<Details, String> {
    if reply.len() < 48 {
        return Err(format!(
            "an NTP answer is 48 bytes or more, got {}: '{}'",
            reply.len(),
            show(reply, SHOWN)
        ));
    }
    let leap = reply[0] >> 6;
    let version = (reply[0] >> 3) & 7;
    let mode = reply[0] & 7;
    if mode != 4 {
        return Err(format!(
            "not an NTP server's answer (mode {mode}, expected 4)"
        ));
    }
    let stratum = reply[1];
    let reference = &reply[12..16];
    if stratum == 0 {
        // A kiss-o'-death: the code is in the reference field.
        return Err(format!(
            "the server refused to serve time (kiss code '{}')",
            show(reference, 4)
        ));
    }
    if leap == 3 {
        return Err(format!(
            "the server's clock is not synchronized (leap indicator 3, stratum {stratum})"
        ));
    }
    let word = |at: usize| u64::from_be_bytes(reply[at..at + 8].try_into().expect("8 bytes"));
    let (t2, t3) = (from_ntp(word(32)), from_ntp(word(40)));
    let (t1, t4) = (seconds(sent), seconds(received));
    let offset = ((t2 - t1) + (t3 - t4)) / 2.0;
    let reference = if stratum == 1 {
        show(reference.split(|b| *b == 0).next().unwrap_or(b""), 4)
    } else {
        std::net::Ipv4Addr::new(reference[0], reference[1], reference[2], reference[3]).to_string()
    };
    Ok(vec![
        ("stratum", stratum.to_string()),
        ("reference", reference),
        ("offset_ms", format!("{:.3}", offset * 1e3)),
        ("version", version.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(first: u8, stratum: u8, reference: [u8; 4], server: jiff::Timestamp) -> Vec<u8> {
        let mut out = vec![0u8; 48];
        out[0] = first;
        out[1] = stratum;
        out[12..16].copy_from_slice(&reference);
        out[32..40].copy_from_slice(&to_ntp(server).to_be_bytes());
        out[40..48].copy_from_slice(&to_ntp(server).to_be_bytes());
        out
    }

    #[test]
    fn requests_are_client_mode_with_the_time() {
        let now = jiff::Timestamp::from_second(1_790_000_000).unwrap();
        let bytes = request(now);
        assert_eq!((bytes.len(), bytes[0]), (48, 0x23));
        let sent = u64::from_be_bytes(bytes[40..48].try_into().unwrap());
        assert_eq!(from_ntp(sent), 1_790_000_000.0);
        // The fraction is kept: half a second is 2^31.
        let half = now + jiff::SignedDuration::from_millis(500);
        assert_eq!(to_ntp(half) & 0xffff_ffff, 1 << 31);
        assert_eq!(from_ntp(to_ntp(half)), 1_790_000_000.5);
    }

    #[test]
    fn answers_give_stratum_and_offset() {
        let t1 = jiff::Timestamp::from_second(1_790_000_000).unwrap();
        let t4 = t1 + jiff::SignedDuration::from_millis(20);
        // The server's clock is 2.5 s ahead, half-way through the exchange.
        let server = t1 + jiff::SignedDuration::from_millis(2_510);
        let details = judge(&answer(0x24, 2, [192, 0, 2, 1], server), t1, t4).unwrap();
        assert!(details.contains(&("stratum", "2".into())), "{details:?}");
        assert!(
            details.contains(&("reference", "192.0.2.1".into())),
            "{details:?}"
        );
        assert!(
            details.contains(&("offset_ms", "2500.000".into())),
            "{details:?}"
        );
        assert!(details.contains(&("version", "4".into())), "{details:?}");
        let gps = judge(&answer(0x24, 1, *b"GPS\0", t1), t1, t1).unwrap();
        assert!(gps.contains(&("reference", "GPS".into())), "{gps:?}");
    }

    #[test]
    fn kisses_unsynchronized_clocks_and_other_packets_are_refused() {
        let t = jiff::Timestamp::from_second(1_790_000_000).unwrap();
        assert!(
            judge(&answer(0x24, 0, *b"RATE", t), t, t)
                .unwrap_err()
                .contains("kiss code 'RATE'")
        );
        assert!(
            judge(&answer(0xe4, 3, [0; 4], t), t, t)
                .unwrap_err()
                .contains("not synchronized")
        );
        assert!(
            judge(&answer(0x23, 2, [0; 4], t), t, t)
                .unwrap_err()
                .contains("mode 3")
        );
        assert!(judge(b"short", t, t).unwrap_err().contains("48 bytes"));
    }
}
