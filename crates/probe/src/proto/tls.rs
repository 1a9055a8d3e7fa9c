//! TLS for protocol checks: the handshake (implicit, or after a protocol's
//! STARTTLS), verification against the system's CA store (or a given CA
//! file), and the certificate's subject, issuer, names and expiry.
//!
//! Verification is recorded rather than only enforced, so that an expired
//! certificate is reported as `cert_expired` with its details, and
//! `insecure` checks still show what the server presented.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::session::{Fail, Session};
use crate::Reason;

/// Checks a TLS server name (`--sni`, `sni =`) before it is sent: a DNS
/// name of letters, digits, `-`, `_` and dots, at most 253 characters. It
/// goes into the ClientHello and the HTTP `Host` header, so anything else
/// (a CR or LF above all) is refused.
pub fn check_sni(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !name.starts_with('.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a server name: give a DNS name such as www.example.com (letters, digits, '-', '.'; internationalised names as punycode)",
            crate::text::visible(name)
        ))
    }
}

/// How a check treats TLS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// Verify the chain and the name (the default); `false`: report only.
    pub verify: bool,
    /// The name sent in SNI and verified (default: the target's host name).
    pub sni: Option<String>,
    /// A PEM file of CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Warn this many days before the certificate expires.
    pub warn_days: u32,
}

/// The presented certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS names and IP addresses it is valid for.
    pub sans: Vec<String>,
    /// Valid from (RFC 3339).
    pub not_before: String,
    /// Valid until (RFC 3339).
    pub not_after: String,
    /// Seconds since the epoch of `not_after`.
    #[serde(skip)]
    pub not_after_s: i64,
    /// Serial number (hex).
    pub serial: String,
}

/// What the handshake came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsReport {
    /// TLSv1_2, TLSv1_3.
    pub version: String,
    /// The negotiated cipher suite.
    pub cipher: String,
    /// The handshake's duration.
    #[serde(skip)]
    pub handshake: Duration,
    /// The end-entity certificate.
    pub cert: Option<CertInfo>,
    /// Why verification failed, when `verify` was off (or it expired).
    pub verify_error: Option<String>,
}

/// Parses a DER certificate for the report.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let time = |t: i64| {
        jiff::Timestamp::from_second(t)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => sans.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string(),
                    ),
                    16 => sans.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before: time(validity.not_before.timestamp()),
        not_after: time(validity.not_after.timestamp()),
        not_after_s: validity.not_after.timestamp(),
        serial: cert.raw_serial_as_string(),
    })
}

/// The certificate verdict: expired, expiring within `warn_days`, or fine.
pub fn judge_cert(report: &TlsReport, now_s: i64, warn_days: u32) -> Option<Fail> {
    let cert = report.cert.as_ref()?;
    let left = cert.not_after_s - now_s;
    if left <= 0 {
        return Some(Fail {
            reason: Reason::CertExpired,
            message: format!(
                "the certificate of {} expired on {}",
                cert.subject, cert.not_after
            ),
        });
    }
    let days = left / 86_400;
    if days < i64::from(warn_days) {
        return Some(Fail {
            reason: Reason::CertExpiring,
            message: format!(
                "the certificate of {} expires in {days} days, on {}",
                cert.subject, cert.not_after
            ),
        });
    }
    None
}

fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(loaded.certs);
            Arc::new(roots)
        })
        .clone()
}

/// The trusted roots, read on a blocking thread: the system store takes
/// tens of milliseconds to load the first time, and an async worker must
/// not stall other checks for that long.
async fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, Fail> {
    let ca_file = ca_file.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || read_roots(ca_file.as_deref()))
        .await
        .map_err(|e| Fail {
            reason: Reason::LocalError,
            message: format!("cannot load the trusted certificates: {e}"),
        })?
}

fn read_roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, Fail> {
    let Some(path) = ca_file else {
        return Ok(system_roots());
    };
    let local = |message: String| Fail {
        reason: Reason::LocalError,
        message,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| local(format!("cannot read the CA file {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| local(format!("the CA file {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| local(format!("the CA file {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(local(format!(
            "the CA file {} holds no certificate",
            path.display()
        )));
    }
    Ok(Arc::new(roots))
}

/// Verifies with webpki and records the outcome and the presented
/// certificate. Expired certificates, and every failure when not
/// verifying, let the handshake finish so that they can be reported.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    verify: bool,
    failure: Mutex<Option<String>>,
    leaf: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut leaf) = self.leaf.lock() {
            *leaf = Some(end_entity.as_ref().to_vec());
        }
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(error) => {
                let expired = matches!(
                    error,
                    rustls::Error::InvalidCertificate(
                        CertificateError::Expired | CertificateError::ExpiredContext { .. }
                    )
                );
                if let Ok(mut failure) = self.failure.lock() {
                    *failure = Some(error.to_string());
                }
                if expired || !self.verify {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(error)
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS client configuration for a connection that is not a check (the
/// store's connections to PostgreSQL): certificates verified against the
/// system's roots or `ca_file` when `verify`, else accepted as they come
/// (libpq's `sslmode=require`). Blocks while the roots load.
pub fn client_config(verify: bool, ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let roots = read_roots(ca_file).map_err(|fail| fail.message)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| format!("cannot set up TLS verification: {e}"))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let builder = if verify {
        // Strict: an expired certificate fails too.
        builder.with_webpki_verifier(inner)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recording {
                inner,
                verify: false,
                failure: Mutex::new(None),
                leaf: Mutex::new(None),
            }))
    };
    Ok(builder.with_no_client_auth())
}

/// Runs the TLS handshake on the session's connection and continues the
/// session over TLS. `host` is the target's name (for SNI and the name
/// check) unless `settings.sni` says otherwise.
pub async fn handshake(
    session: &mut Session,
    host: &str,
    settings: &TlsSettings,
    alpn: &[&[u8]],
) -> Result<TlsReport, Fail> {
    let roots = roots(settings.ca_file.as_deref()).await?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| Fail {
            reason: Reason::LocalError,
            message: format!("cannot set up TLS verification: {e}"),
        })?;
    let recording = Arc::new(Recording {
        inner,
        verify: settings.verify,
        failure: Mutex::new(None),
        leaf: Mutex::new(None),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Fail {
            reason: Reason::LocalError,
            message: format!("cannot set up TLS: {e}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(recording.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name_text = settings
        .sni
        .as_deref()
        .unwrap_or(host)
        .trim_matches(['[', ']']);
    let name = ServerName::try_from(name_text.to_owned()).map_err(|_| Fail {
        reason: Reason::LocalError,
        message: format!("'{name_text}' cannot be a TLS server name: give --sni NAME"),
    })?;
    let Some(tcp) = session.take_plain() else {
        return Err(Fail {
            reason: Reason::LocalError,
            message: "TLS is already on".into(),
        });
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let started = Instant::now();
    let stream = match tokio::time::timeout_at(session.deadline, connector.connect(name, tcp)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            let text = error.to_string();
            let reason = match error.kind() {
                std::io::ErrorKind::ConnectionReset => Reason::Reset,
                std::io::ErrorKind::UnexpectedEof => Reason::ClosedByPeer,
                _ => Reason::TlsError,
            };
            return Err(Fail {
                reason,
                message: match reason {
                    Reason::TlsError => format!("TLS handshake failed: {text}"),
                    Reason::Reset => "the server reset the connection during the TLS handshake".into(),
                    _ => "the server closed the connection during the TLS handshake (not TLS on this port?)".into(),
                },
            });
        }
        Err(_) => {
            return Err(Fail {
                reason: Reason::NoResponse,
                message: format!(
                    "the TLS handshake did not finish within {}",
                    crate::duration::format(session.timeout)
                ),
            });
        }
    };
    let handshake = started.elapsed();
    let (_, connection) = stream.get_ref();
    let report = TlsReport {
        version: connection
            .protocol_version()
            .map(|v| format!("{v:?}").replace('_', "."))
            .unwrap_or_default(),
        cipher: connection
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default(),
        handshake,
        cert: recording
            .leaf
            .lock()
            .ok()
            .and_then(|leaf| leaf.as_deref().and_then(cert_info)),
        verify_error: recording.failure.lock().ok().and_then(|f| f.clone()),
    };
    session.put_tls(stream);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_cannot_smuggle_headers() {
        assert!(check_sni("www.example.com").is_ok());
        assert!(check_sni("xn--bcher-kva.example").is_ok());
        for bad in [
            "a\r\nX-Injected: yes",
            "a b",
            "",
            ".a",
            "a..b",
            "host:443",
            "a/b",
        ] {
            assert!(check_sni(bad).is_err(), "{bad:?}");
        }
        assert!(check_sni(&"a".repeat(254)).is_err());
    }

    fn report(not_after_s: i64) -> TlsReport {
        TlsReport {
            version: "TLSv1.3".into(),
            cipher: String::new(),
            handshake: Duration::ZERO,
            cert: Some(CertInfo {
                subject: "CN=example".into(),
                issuer: "CN=ca".into(),
                sans: vec![],
                not_before: String::new(),
                not_after: "2027-01-01T00:00:00Z".into(),
                not_after_s,
                serial: String::new(),
            }),
            verify_error: None,
        }
    }

    #[test]
    fn expiry_is_judged_by_days_left() {
        let day = 86_400;
        assert_eq!(judge_cert(&report(100 * day), 0, 14), None, "100 days left");
        assert_eq!(
            judge_cert(&report(10 * day), 0, 14).map(|f| f.reason),
            Some(Reason::CertExpiring)
        );
        assert_eq!(
            judge_cert(&report(-1), 0, 14).map(|f| f.reason),
            Some(Reason::CertExpired)
        );
        assert_eq!(judge_cert(&report(10 * day), 0, 0), None, "warnings off");
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert_eq!(cert_info(b"not a certificate"), None);
        assert_eq!(cert_info(&[]), None);
    }
}
