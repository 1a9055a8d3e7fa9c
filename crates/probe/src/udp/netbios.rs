//! NetBIOS name service (RFC 1002): a node status query for `*`, answered
//! with the names the host has registered (its computer and workgroup
//! names).

use crate::proto::Details;
use crate::proto::session::{SHOWN, show};

/// A node status query (NBSTAT) for the wildcard name.
pub fn node_status(id: u16) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    // No flags; one question.
    out.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    // "*" padded with NULs to 16 bytes, first-level encoded: 32 bytes.
    out.push(32);
    let mut name = [0u8; 16];
    name[0] = b'*';
    for byte in name {
        out.push(b'A' + (byte >> 4));
        out.push(b'A' + (byte & 0x0f));
    }
    out.push(0);
    // NBSTAT, class IN.
    out.extend_from_slice(&[0x00, 0x21, 0x00, 0x01]);
    out
}

/// Judges the answer to [`node_status`] with `id`: the names it lists.
pub fn judge(reply: &[u8], id: u16) -> Result<Details, String> {
    let bad = |why: &str| {
        format!(
            "not a NetBIOS node status ({why}): '{}'",
            show(reply, SHOWN)
        )
    };
    if reply.len() < 12 || reply[..2] != id.to_be_bytes() {
        return Err(bad("too short, or another id"));
    }
    if reply[2] & 0x80 == 0 {
        return Err(bad("a question, not an answer"));
    }
    let rcode = reply[3] & 0x0f;
    if rcode != 0 {
        return Err(format!("the name service answered error {rcode}"));
    }
    // Skip the answer's name: labels up to a zero, or a pointer.
    let mut at = 12;
    loop {
        let length = *reply.get(at).ok_or_else(|| bad("cut short"))?;
        if length == 0 {
            at += 1;
            break;
        }
        if length & 0xc0 == 0xc0 {
            at += 2;
            break;
        }
        at += 1 + usize::from(length);
    }
    // Type, class, TTL, data length.
    let header = reply.get(at..at + 10).ok_or_else(|| bad("cut short"))?;
    if header[..2] != [0x00, 0x21] {
        return Err(bad("not a node status answer"));
    }
    at += 10;
    let count = usize::from(*reply.get(at).ok_or_else(|| bad("cut short"))?);
    at += 1;
    let mut names = Vec::new();
    for _ in 0..count {
        let entry = reply
            .get(at..at + 18)
            .ok_or_else(|| bad("a name cut short"))?;
        let name = String::from_utf8_lossy(&entry[..15]).trim_end().to_owned();
        let group = entry[16] & 0x80 != 0;
        if !names.iter().any(|(n, _)| *n == name) {
            names.push((name, group));
        }
        at += 18;
    }
    let computer = names
        .iter()
        .find(|(_, group)| !group)
        .map(|(n, _)| n.clone());
    let workgroup = names
        .iter()
        .find(|(_, group)| *group)
        .map(|(n, _)| n.clone());
    let mut details = vec![("names", names.len().to_string())];
    if let Some(computer) = computer {
        details.push(("computer", show(computer.as_bytes(), SHOWN)));
    }
    if let Some(workgroup) = workgroup {
        details.push(("workgroup", show(workgroup.as_bytes(), SHOWN)));
    }
    Ok(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u16, names: &[(&str, u8, bool)]) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&[0x84, 0x00, 0, 0, 0, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&node_status(id)[12..46]);
        out.extend_from_slice(&[0x00, 0x21, 0x00, 0x01, 0, 0, 0, 0]);
        let data_length = 1 + names.len() * 18 + 46;
        out.extend_from_slice(&(data_length as u16).to_be_bytes());
        out.push(names.len() as u8);
        for (name, suffix, group) in names {
            let mut entry = format!("{name:<15}").into_bytes();
            entry.push(*suffix);
            entry.push(if *group { 0x84 } else { 0x04 });
            entry.push(0);
            out.extend_from_slice(&entry);
        }
        out.extend_from_slice(&[0; 46]);
        out
    }

    #[test]
    fn node_status_queries_and_answers() {
        let query = node_status(0x1234);
        assert_eq!(query.len(), 50);
        assert_eq!(&query[12..15], b"\x20CK");
        let reply = answer(
            0x1234,
            &[
                ("FILESRV", 0, false),
                ("FILESRV", 0x20, false),
                ("WORKGROUP", 0, true),
            ],
        );
        let details = judge(&reply, 0x1234).unwrap();
        assert!(
            details.contains(&("computer", "FILESRV".into())),
            "{details:?}"
        );
        assert!(
            details.contains(&("workgroup", "WORKGROUP".into())),
            "{details:?}"
        );
        assert!(details.contains(&("names", "2".into())), "{details:?}");
        assert!(judge(&reply, 0x1235).is_err());
        assert!(judge(&query, 0x1234).unwrap_err().contains("a question"));
        assert!(judge(&reply[..60], 0x1234).is_err());
    }
}
