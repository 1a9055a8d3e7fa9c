//! TFTP (RFC 1350): a read request, answered by the first block of data or
//! by an error packet; either shows a TFTP server at work. The transfer is
//! then ended with an error packet, so the server does not wait for it.

use std::net::SocketAddr;

use crate::proto::Details;
use crate::proto::session::{SHOWN, show};

/// A read request (octet mode) for `file`.
pub fn read_request(file: &str) -> Vec<u8> {
    let mut out = vec![0, 1];
    out.extend_from_slice(file.as_bytes());
    out.push(0);
    out.extend_from_slice(b"octet\0");
    out
}

/// Checks a file name before it is sent: printable, no NUL, not empty.
pub fn check_file(file: &str) -> Result<(), String> {
    if file.is_empty() || file.len() > 255 || file.chars().any(char::is_control) {
        Err(format!(
            "'{}' cannot be a TFTP file name: give a printable name of up to 255 bytes",
            crate::text::visible(file)
        ))
    } else {
        Ok(())
    }
}

/// Judges the answer to a read request; `must_exist`: data is required.
pub fn judge(reply: &[u8], must_exist: bool) -> Result<Details, String> {
    match reply {
        [0, 3, high, low, data @ ..] => Ok(vec![(
            "answer",
            format!(
                "data block {} ({} bytes)",
                u16::from_be_bytes([*high, *low]),
                data.len()
            ),
        )]),
        [0, 5, high, low, message @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            let text = show(message.split(|b| *b == 0).next().unwrap_or(b""), SHOWN);
            if must_exist {
                Err(format!("the server answered error {code}: {text}"))
            } else {
                Ok(vec![("answer", format!("error {code}: {text}"))])
            }
        }
        _ => Err(format!(
            "not a TFTP answer (data or error): '{}'",
            show(reply, SHOWN)
        )),
    }
}

/// Ends a transfer the server may have begun from `port`: an error packet
/// ("transfer ended"), sent once; a lost one only makes the server retry.
pub async fn abort(server: SocketAddr, port: &u16) {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    if let Ok(socket) = tokio::net::UdpSocket::bind(local).await {
        let mut packet = vec![0, 5, 0, 0];
        packet.extend_from_slice(b"portwatch: check done\0");
        let _ = socket
            .send_to(&packet, SocketAddr::new(server.ip(), *port))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers() {
        assert_eq!(read_request("a.txt"), b"\x00\x01a.txt\x00octet\x00");
        assert!(check_file("boot/pxelinux.0").is_ok());
        assert!(check_file("a\0b").is_err() && check_file("").is_err());
        let data = judge(b"\x00\x03\x00\x01hello", true).unwrap();
        assert_eq!(data, vec![("answer", "data block 1 (5 bytes)".to_owned())]);
        let missing = b"\x00\x05\x00\x01File not found\x00";
        assert_eq!(
            judge(missing, false).unwrap(),
            vec![("answer", "error 1: File not found".to_owned())]
        );
        assert_eq!(
            judge(missing, true).unwrap_err(),
            "the server answered error 1: File not found"
        );
        assert!(
            judge(b"\x00\x04\x00\x01", false)
                .unwrap_err()
                .starts_with("not a TFTP answer")
        );
        assert!(judge(b"", false).is_err());
    }
}
