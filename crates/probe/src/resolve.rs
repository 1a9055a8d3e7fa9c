//! Name resolution: an async, caching resolver that reads `/etc/hosts` and
//! `/etc/resolv.conf` (hickory-resolver). Answers are cached for their TTL,
//! so a monitor checking the same host every few seconds asks the network
//! once per TTL, and no check ever blocks a thread in `getaddrinfo`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;

use super::Family;
use super::target::Host;

/// A shared, caching resolver. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

/// The addresses of a host, and how long it took to find them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The addresses, in the resolver's order (IPv6 before IPv4).
    pub addresses: Vec<IpAddr>,
    /// The time spent resolving; zero for an IP address literal.
    pub elapsed: Duration,
}

/// Why a name did not resolve, as the message of a `dns_error` result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name does not exist.
    #[error("{0} does not resolve: no such name (NXDOMAIN)")]
    NoSuchName(String),
    /// The name exists but has no address of the wanted family.
    #[error("{0} has no {1} address")]
    NoAddress(String, &'static str),
    /// The resolver could not get an answer.
    #[error("{0} could not be resolved: {1}")]
    Failed(String, String),
}

impl Resolver {
    /// A resolver configured from `/etc/resolv.conf` and `/etc/hosts`. When
    /// resolv.conf is missing or unreadable, only `/etc/hosts` and address
    /// literals work, and other names fail with a clear `dns_error`.
    pub fn from_system() -> Resolver {
        let provider = TokioRuntimeProvider::default();
        let mut builder = TokioResolver::builder(provider.clone()).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read /etc/resolv.conf; only /etc/hosts names will resolve");
            TokioResolver::builder_with_config(ResolverConfig::from_parts(None, vec![], vec![]), provider)
        });
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv6AndIpv4;
        let inner = builder
            .build()
            .expect("a resolver with a valid configuration");
        Resolver { inner }
    }

    /// Resolves `host` to addresses of `family`. IP literals return at once.
    pub async fn resolve(&self, host: &Host, family: Family) -> Result<Resolved, ResolveError> {
        let name = match host {
            Host::Ip(ip) => {
                return if family.allows(*ip) {
                    Ok(Resolved {
                        addresses: vec![*ip],
                        elapsed: Duration::ZERO,
                    })
                } else {
                    Err(ResolveError::NoAddress(ip.to_string(), family.label()))
                };
            }
            Host::Name(name) => name,
        };
        let started = Instant::now();
        let lookup = self.inner.lookup_ip(name.as_str()).await;
        let elapsed = started.elapsed();
        let addresses: Vec<IpAddr> = match lookup {
            Ok(lookup) => lookup.iter().filter(|ip| family.allows(*ip)).collect(),
            Err(error) => return Err(classify(name, &error)),
        };
        if addresses.is_empty() {
            return Err(ResolveError::NoAddress(name.clone(), family.label()));
        }
        Ok(Resolved { addresses, elapsed })
    }
}

fn classify(name: &str, error: &NetError) -> ResolveError {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no))
            if no.response_code == ResponseCode::NXDomain =>
        {
            ResolveError::NoSuchName(name.to_owned())
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => {
            ResolveError::NoAddress(name.to_owned(), Family::Any.label())
        }
        NetError::Timeout => ResolveError::Failed(
            name.to_owned(),
            "the name servers did not answer in time".into(),
        ),
        other => ResolveError::Failed(name.to_owned(), other.to_string()),
    }
}
