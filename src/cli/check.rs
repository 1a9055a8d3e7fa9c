//! `portwatch check`: check targets concurrently and print one line each.

use std::io::Write;

use futures_util::StreamExt;

use super::output;
use super::{CheckArgs, CheckFormat, PingArgs};
use crate::probe::verdict::Expectation;
use crate::probe::{CheckOptions, Checker, CloseMode};

/// `portwatch check --help`'s examples, with the protocols of the
/// built-in table.
pub(super) fn examples() -> String {
    format!(
        "Examples:
  portwatch check localhost:ssh
  portwatch check example.com:443 example.com:80 [2001:db8::1]:22
  portwatch check --format json tcp://db.example:5432
  portwatch check -t 3s -w 200ms -c 1s --format nagios mail.example:smtp
  portwatch check --expect-closed host.example:telnet
  portwatch check --mode auto localhost:22 localhost:443 localhost:6379
  portwatch check --protocol smtp --tls starttls mail.example:587
  portwatch check --protocol https --ca-file ca.pem --sni www.example internal:8443
  portwatch check --send 'PING\\r\\n' --expect '+PONG' cache.example:6379
  portwatch check --http-path /health --http-json status=ok api.example:8080
  portwatch check --http-contains 'Add to cart' --http-follow shop.example:443
  portwatch check --dns-query www.example.com --dns-expect 192.0.2.10 ns1.example:53
  portwatch check --dns-query example.com --dns-type MX --dns-transport tls 9.9.9.9:853
  portwatch check --udp ntp time.example:123
  portwatch check --udp snmp --snmp-community monitor switch.example:161
  portwatch check --udp-send 'PING\\n' --udp-expect PONG game.example:27015

Protocols (--protocol): {}.
Protocol reasons: reset, closed_by_peer, no_response, protocol_mismatch,
tls_error, cert_expiring (WARNING), cert_expired; HTTP content rules:
content_mismatch; DNS queries and UDP services: answered, unexpected_answer,
no_response (silence is never UP).

Exit codes (Nagios): 0 all UP, 1 a WARNING and nothing DOWN, 2 something DOWN,
3 UNKNOWN (the check itself failed) or bad input.",
        crate::probe::proto::names()
    )
}

/// How many targets are checked at once.
const PARALLEL_TARGETS: usize = 256;

pub(super) async fn run(args: CheckArgs) -> anyhow::Result<u8> {
    let options = CheckOptions {
        timeout: args.timeout,
        expect: Expectation {
            warning: args.warning,
            critical: args.critical,
            expect_closed: args.expect_closed,
        },
        family: args.address.family(),
        source: args.address.source,
        close: if args.abort {
            CloseMode::Abort
        } else {
            CloseMode::Graceful
        },
        proto: match args.proto.options() {
            Ok(options) => options.map(std::sync::Arc::new),
            Err(message) => {
                writeln!(anstream::stderr(), "portwatch: {message}")?;
                return Ok(3);
            }
        },
        dns: match args.dns.options(&args.proto) {
            Ok(options) => options.map(std::sync::Arc::new),
            Err(message) => {
                writeln!(anstream::stderr(), "portwatch: {message}")?;
                return Ok(3);
            }
        },
        udp: match args.udp.protocol() {
            Ok(protocol) => protocol.map(std::sync::Arc::new),
            Err(message) => {
                writeln!(anstream::stderr(), "portwatch: {message}")?;
                return Ok(3);
            }
        },
        ping: None,
    };
    if options.udp.is_some() && (options.proto.is_some() || options.dns.is_some()) {
        writeln!(
            anstream::stderr(),
            "portwatch: --udp sends a UDP request: drop the protocol and DNS options (--mode, --protocol, --http-*, --dns-* …)"
        )?;
        return Ok(3);
    }
    if options.dns.is_some() && options.proto.is_some() {
        writeln!(
            anstream::stderr(),
            "portwatch: --dns-query asks a name server: drop the protocol options (--mode, --protocol, --http-*, --send …)"
        )?;
        return Ok(3);
    }
    check_all(&args.targets, &options, args.format).await
}

/// `portwatch ping --help`'s examples.
pub(super) const PING_EXAMPLES: &str = "Examples:
  portwatch ping router.example 192.0.2.1 2001:db8::1
  portwatch ping -n 5 --loss-warning 40 -w 50ms -c 200ms --format nagios gw.example
  portwatch ping --format json -4 dual.example

Reasons: reply (UP; WARNING at --loss-warning or above -w), timeout (every
echo lost), host_unreachable, network_unreachable, admin_prohibited (an
ICMP error, with the router or host that sent it), dns_error.

ICMP needs an unprivileged ICMP socket (sysctl net.ipv4.ping_group_range
covering portwatch's group) or a raw one (root, or CAP_NET_RAW); without
either the result is UNKNOWN local_error, saying which sysctl to set.

Exit codes (Nagios): 0 all UP, 1 a WARNING and nothing DOWN, 2 something DOWN,
3 UNKNOWN or bad input.";

/// `portwatch ping HOST…`.
pub(super) async fn ping(args: PingArgs) -> anyhow::Result<u8> {
    let options = CheckOptions {
        timeout: args.timeout,
        expect: Expectation {
            warning: args.warning,
            critical: args.critical,
            expect_closed: false,
        },
        family: args.address.family(),
        source: args.address.source,
        close: CloseMode::Graceful,
        proto: None,
        dns: None,
        udp: None,
        ping: Some(crate::probe::ping::PingOptions {
            count: args.count,
            loss_warning: args.loss_warning,
            ..crate::probe::ping::PingOptions::default()
        }),
    };
    check_all(&args.hosts, &options, args.format).await
}

/// Checks every target (256 at once) and prints the results in `format`;
/// the Nagios exit code.
async fn check_all(
    targets: &[crate::probe::Target],
    options: &CheckOptions,
    format: CheckFormat,
) -> anyhow::Result<u8> {
    let checker = Checker::from_system();
    let checks = targets.iter().map(|target| {
        let checker = checker.clone();
        async move { checker.check(target, options).await }
    });
    let results: Vec<_> = futures_util::stream::iter(checks)
        .buffered(PARALLEL_TARGETS)
        .collect()
        .await;

    let width = output::target_width(&results);
    let mut stdout = std::io::BufWriter::new(anstream::stdout().lock());
    for result in &results {
        let line = match format {
            CheckFormat::Human => output::human(result, width),
            CheckFormat::Json => output::json(result),
            CheckFormat::Nagios => output::nagios(
                result,
                options.expect.warning,
                options.expect.critical,
                options.timeout,
            ),
        };
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    Ok(output::exit_code(results.iter().map(|r| r.status)))
}
