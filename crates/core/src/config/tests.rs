use std::time::Duration;

use super::model::resolve;
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_toml("test.toml", text)
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_shipped_example_is_valid() {
    let config = parse(include_str!("../../../../examples/portwatch.toml")).unwrap();
    assert_eq!(config.counts(), (3, 2, 8));
    let sensors = resolve(&config);
    // Every kind of sensor it shows.
    let kind = |path: &str| sensors.iter().find(|s| s.path == path).unwrap();
    assert!(kind("router/ping").ping().is_some());
    assert!(kind("router/dns-www").dns().is_some());
    assert!(kind("router/ntp").udp().is_some());
    assert!(kind("files/nightly-backup").heartbeat.is_some());
    let intranet = kind("files/intranet").probe.as_ref().unwrap();
    assert_eq!(intranet.plan(8080).unwrap().protocol.as_str(), "http");
    let ssh = sensors.iter().find(|s| s.path == "router/ssh").unwrap();
    assert_eq!(
        ssh.settings.interval,
        Duration::from_secs(30),
        "from Office/Network"
    );
    assert_eq!(ssh.depends_on, None);
    let smb = sensors
        .iter()
        .find(|s| s.path == "files/microsoft-ds")
        .unwrap();
    assert_eq!(
        smb.settings.interval,
        Duration::from_secs(60),
        "from the defaults"
    );
    assert_eq!(smb.settings.warning, Some(Duration::from_millis(200)));
    assert_eq!(
        smb.depends_on.as_deref(),
        Some("router/ssh"),
        "from Office/Servers"
    );
    assert_eq!(smb.windows.len(), 1);
    assert_eq!(smb.tags, ["storage"]);
    let telnet = sensors
        .iter()
        .find(|s| s.path == "files/telnet-closed")
        .unwrap();
    assert!(telnet.expect_closed);
    assert_eq!(ssh.windows.len(), 1, "the router window");
    let backup = sensors
        .iter()
        .find(|s| s.path == "files/nightly-backup")
        .unwrap();
    assert_eq!(
        backup
            .heartbeat
            .as_ref()
            .map(|h| (h.every.as_secs(), h.grace.as_secs())),
        Some((86_400, 7200))
    );
}

#[test]
fn unknown_keys_name_line_and_column() {
    let text = "[[server]]\nname = \"a\"\nhost = \"localhost\"\nintervall = \"10s\"\n";
    let message = error(text);
    assert!(
        message.starts_with("test.toml:4:1: unknown field 'intervall'"),
        "{message}"
    );
    let message = error("[defaults]\nretries = 1\ncolour = \"red\"\n");
    assert!(
        message.starts_with("test.toml:3:1: unknown field 'colour'"),
        "{message}"
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let message = error("[[server]]\nname = \"a\nhost = 1\n");
    assert!(message.starts_with("test.toml:2:"), "{message}");
}

#[test]
fn bad_values_point_at_the_value() {
    let base = "[[server]]\nname = \"web\"\nhost = \"localhost\"\n";
    let message = error(&format!("{base}interval = \"ten\"\n"));
    assert_eq!(
        message,
        "test.toml:4:12: invalid duration 'ten': use a number with a unit, e.g. 500ms, 10s, 2m"
    );
    let message = error(&format!("{base}interval = \"500ms\"\n"));
    assert!(message.contains("at least 1s"), "{message}");
    let message = error(&format!("{base}[[server.sensor]]\nport = 0\n"));
    assert_eq!(
        message,
        "test.toml:5:8: port 0 is out of range: use a port from 1 to 65535"
    );
    let message = error(&format!("{base}[[server.sensor]]\nport = \"shh\"\n"));
    assert!(
        message.starts_with("test.toml:5:8: unknown service 'shh' (did you mean ssh?)"),
        "{message}"
    );
    let message = error("[[server]]\nname = \"web\"\nhost = \"bad host\"\n");
    assert!(
        message.starts_with("test.toml:3:8: host 'bad host' is not a valid host name"),
        "{message}"
    );
    assert!(
        parse("[[server]]\nname = \"web\"\nhost = \"2001:db8::1\"\n").is_ok(),
        "a bare IPv6 host is fine"
    );
    let message = error(&format!("{base}retries = 99\n"));
    assert!(
        message.starts_with("test.toml:4:11: retries must be from 0 to 10"),
        "{message}"
    );
}

#[test]
fn duplicates_are_refused() {
    let server = "[[server]]\nname = \"web\"\nhost = \"localhost\"\n";
    let message = error(&format!("{server}{server}"));
    assert!(
        message.starts_with("test.toml:5:8: duplicate server 'web'"),
        "{message}"
    );
    let message = error(&format!(
        "{server}[[server.sensor]]\nport = 22\n[[server.sensor]]\nport = \"ssh\"\n"
    ));
    assert!(
        message.starts_with("test.toml:7:8: duplicate sensor 'web/ssh'"),
        "{message}"
    );
    let message = error("[[group]]\nname = \"A\"\n[[group]]\nname = \"A\"\n");
    assert!(
        message.starts_with("test.toml:4:8: duplicate group 'A'"),
        "{message}"
    );
    let message = error("[[group]]\nname = \"A/B\"\n");
    assert!(message.contains("parent group 'A'"), "{message}");
}

#[test]
fn dependencies_must_exist_and_not_loop() {
    let text = "\
[[server]]
name = \"a\"
host = \"localhost\"
  [[server.sensor]]
  port = 22
  depends_on = \"b/ssh\"
[[server]]
name = \"b\"
host = \"localhost\"
depends_on = \"a/ssh\"
  [[server.sensor]]
  port = 22
";
    let message = error(text);
    assert!(
        message.contains("dependency cycle through sensor"),
        "{message}"
    );
    assert!(
        message.starts_with("test.toml:5:10:") || message.starts_with("test.toml:12:10:"),
        "{message}"
    );
    let message = error("[[server]]\nname = \"a\"\nhost = \"h\"\ndepends_on = \"x/y\"\n");
    assert!(
        message.starts_with("test.toml:4:14: depends_on 'x/y' is not a declared sensor"),
        "{message}"
    );
}

#[test]
fn a_group_may_depend_on_a_sensor_inside_it() {
    let text = "\
[[group]]
name = \"Site\"
depends_on = \"gw/ssh\"
[[server]]
name = \"gw\"
host = \"localhost\"
group = \"Site\"
  [[server.sensor]]
  port = 22
[[server]]
name = \"app\"
host = \"localhost\"
group = \"Site\"
  [[server.sensor]]
  port = 80
";
    let sensors = resolve(&parse(text).unwrap());
    assert_eq!(
        sensors[0].depends_on, None,
        "the gateway does not depend on itself"
    );
    assert_eq!(sensors[1].depends_on.as_deref(), Some("gw/ssh"));
}

#[test]
fn maintenance_windows_are_validated() {
    let base = "[[server]]\nname = \"a\"\nhost = \"h\"\n";
    let message = error(&format!(
        "{base}[[maintenance]]\nname = \"m\"\nevery = \"sunday\"\nstart = \"02:00\"\nduration = \"1h\"\ntimezone = \"Mars/Olympus\"\nservers = [\"a\"]\n"
    ));
    assert!(
        message.starts_with("test.toml:9:12: unknown time zone 'Mars/Olympus'"),
        "{message}"
    );
    let message = error(&format!(
        "{base}[[maintenance]]\nname = \"m\"\nfrom = \"2026-12-02T00:00\"\nuntil = \"2026-12-01T00:00\"\n"
    ));
    assert!(
        message.contains("'until' must be after 'from'"),
        "{message}"
    );
    let message = error(&format!(
        "{base}[[maintenance]]\nname = \"m\"\nevery = \"sunday\"\nstart = \"02:00\"\nduration = \"1h\"\nservers = [\"nope\"]\n"
    ));
    assert!(
        message.starts_with("test.toml:9:12: unknown server 'nope'"),
        "{message}"
    );
    let message = error(&format!("{base}[[maintenance]]\nname = \"m\"\n"));
    assert!(message.contains("needs either"), "{message}");
}

#[test]
fn channels_and_rules_are_validated() {
    let base = "[[server]]\nname = \"a\"\nhost = \"h\"\n  [[server.sensor]]\n  port = 22\n";
    let ok = format!(
        "{base}[[channel]]\nname = \"hook\"\nwebhook = \"https://hooks.example.com/x\"\npreset = \"slack\"\n\
         [[channel]]\nname = \"mail\"\nsmtp = \"mail.example.com\"\nfrom = \"pw@example.com\"\nto = [\"ops@example.com\"]\npassword_env = \"SMTP_PASSWORD\"\nusername = \"pw\"\n\
         [[notify]]\nchannel = \"hook\"\non = [\"down\", \"up\"]\nservers = [\"a\"]\n"
    );
    let config = parse(&ok).unwrap();
    assert_eq!((config.channels.len(), config.rules.len()), (2, 1));
    let cases = [
        (
            format!("{base}[[channel]]\nname = \"x\"\nwebhook = \"ftp://x\"\n"),
            "is not an http:// or https:// URL",
        ),
        (
            format!(
                "{base}[[channel]]\nname = \"x\"\nwebhook = \"https://x\"\npreset = \"myspace\"\n"
            ),
            "unknown preset 'myspace'",
        ),
        (
            format!(
                "{base}[[channel]]\nname = \"x\"\nwebhook = \"https://x\"\npreset = \"pagerduty\"\n"
            ),
            "needs token_env (the variable holding the routing key) or token",
        ),
        (
            format!("{base}[[channel]]\nname = \"x\"\n"),
            "exactly one of",
        ),
        (
            format!("{base}[[channel]]\nname = \"x\"\nsmtp = \"m\"\nto = [\"a@b.c\"]\n"),
            "needs 'from'",
        ),
        // First-run #9: accepted, then failing at every delivery.
        (
            format!(
                "{base}[[channel]]\nname = \"x\"\nsmtp = \"mail.example.com:2525\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\n"
            ),
            "give the host alone and the port as port = 2525",
        ),
        (
            format!(
                "{base}[[channel]]\nname = \"x\"\nsmtp = \"m\"\nfrom = \"not an address\"\nto = [\"a@b.c\"]\n"
            ),
            "is not a mail address",
        ),
        (
            format!("{base}[[notify]]\nchannel = \"nope\"\non = [\"down\"]\n"),
            "unknown channel 'nope'",
        ),
        (
            format!(
                "{base}[[channel]]\nname = \"x\"\ncommand = [\"true\"]\n[[notify]]\nchannel = \"x\"\non = [\"sideways\"]\n"
            ),
            "unknown trigger 'sideways'",
        ),
        (
            format!(
                "{base}[[channel]]\nname = \"x\"\ncommand = [\"true\"]\n[[notify]]\nchannel = \"x\"\non = [\"down\"]\nsensors = [\"a/nope\"]\n"
            ),
            "unknown sensor 'a/nope'",
        ),
    ];
    for (text, needle) in cases {
        let message = error(&text);
        assert!(
            message.starts_with("test.toml:") && message.contains(needle),
            "{needle}: {message}"
        );
    }
}

#[test]
fn escalations_repeats_templates_and_limits_are_validated_where_written() {
    let base = "[[server]]\nname = \"a\"\nhost = \"h\"\n  [[server.sensor]]\n  port = 22\n[[channel]]\nname = \"x\"\ncommand = [\"true\"]\n";
    let ok = format!(
        "{base}template = \"{{summary}} <{{link}}>\"\nrate_limit = 0\ntimeout = \"3s\"\n[[notify]]\nchannel = \"x\"\non = [\"escalation\", \"repeat\"]\nafter = \"30m\"\nevery = \"2h\"\n"
    );
    let config = parse(&ok).unwrap();
    assert_eq!(
        (config.rules[0].after_s, config.rules[0].every_s),
        (Some(1800), Some(7200))
    );
    let options = &config.channels[0].options;
    assert_eq!((options.rate_limit, options.timeout_s), (0, 3));
    assert_eq!(options.template.as_deref(), Some("{summary} <{link}>"));
    let cases = [
        (
            format!("{base}[[notify]]\nchannel = \"x\"\non = [\"escalation\"]\n"),
            "test.toml:11:6: an escalation needs 'after'",
        ),
        (
            format!("{base}[[notify]]\nchannel = \"x\"\non = [\"down\"]\nevery = \"1h\"\n"),
            "test.toml:12:9: 'every' is for repeats",
        ),
        (
            format!("{base}[[notify]]\nchannel = \"x\"\non = [\"repeat\"]\nevery = \"10s\"\n"),
            "test.toml:12:9: repeat at most once a minute",
        ),
        (
            format!("{base}template = \"{{sensr}} down\"\n"),
            "test.toml:9:12: unknown placeholder {sensr}",
        ),
        (
            format!("{base}rate_limit = -1\n"),
            "test.toml:9:14: rate_limit is a count",
        ),
        (
            format!("{base}timeout = \"10m\"\n"),
            "test.toml:9:11: timeout must be from 1s to 5m",
        ),
    ];
    for (text, wanted) in cases {
        let message = error(&text);
        assert!(message.starts_with(wanted), "{wanted}: {message}");
    }
}

#[test]
fn protocol_settings_inherit_and_are_validated_where_written() {
    let base = "[defaults]\nmode = \"auto\"\ncert_warn_days = 30\n[[server]]\nname = \"a\"\nhost = \"h\"\n  [[server.sensor]]\n  port = 443\n";
    let config = parse(&format!(
        "{base}  [[server.sensor]]\n  name = \"custom\"\n  port = 7000\n  steps = [{{ send = 'HELLO\\r\\n' }}, {{ expect_regex = '^OK (\\d+)' }}, {{ send = 'ID ${{1}}\\r\\n' }}]\n  quit = 'BYE\\r\\n'\n"
    ))
    .unwrap();
    let resolved = crate::config::model::resolve(&config);
    let https = resolved[0].probe.as_ref().expect("auto from the defaults");
    assert_eq!(https.tls_settings.warn_days, 30);
    assert_eq!(https.plan(443).map(|p| p.protocol.as_str()), Some("http"));
    let custom = resolved[1].probe.as_ref().unwrap();
    assert_eq!(custom.steps.len(), 3);
    assert_eq!(custom.quit.as_deref(), Some(&b"BYE\r\n"[..]));
    let cases = [
        (
            format!("{base}  mode = \"smart\"\n"),
            "test.toml:9:10: unknown mode 'smart': use connect or auto",
        ),
        (
            format!("{base}  protocol = \"gopherx\"\n"),
            "test.toml:9:14: unknown protocol 'gopherx'",
        ),
        (
            format!("{base}  protocol = \"redis\"\n  tls = \"starttls\"\n"),
            "test.toml:10:9: redis has no STARTTLS",
        ),
        (
            format!("{base}  steps = [{{ expect_regex = '(' }}]\n"),
            "test.toml:9:11: '(' is not a regular expression",
        ),
        (
            format!("{base}  steps = [{{ send = 'a', expect = 'b' }}]\n"),
            "test.toml:9:11: each step has exactly one of",
        ),
        (
            format!("{base}  http_status = [200, 42]\n"),
            "test.toml:9:17: 42 is not an HTTP status",
        ),
        (
            format!("{base}  http_path = \"health\"\n"),
            "test.toml:9:15: 'health' is not a request path",
        ),
    ];
    for (text, wanted) in cases {
        let message = error(&text);
        assert!(message.starts_with(wanted), "{wanted}: {message}");
    }
}

#[test]
fn locations_and_down_when_are_inherited_and_bad_ones_named_with_their_place() {
    use crate::monitor::verdict::DownWhen;
    let config = parse(
        "[defaults]\nlocations = [\"eu\", \"us\"]\n\
         [[server]]\nname = \"web\"\nhost = \"localhost\"\ndown_when = \"all\"\n\
         sensor = [{ name = \"a\", port = 80 }, { name = \"b\", port = 81, locations = [\"ap\"], down_when = 1 }]\n",
    )
    .unwrap();
    let sensors = resolve(&config);
    let listed = |i: usize| sensors[i].locations.as_deref().map(<[String]>::to_vec);
    assert_eq!(listed(0), Some(vec!["eu".to_string(), "us".to_string()]));
    assert_eq!(sensors[0].down_when, Some(DownWhen::All));
    assert_eq!(listed(1), Some(vec!["ap".to_string()]));
    assert_eq!(sensors[1].down_when, Some(DownWhen::Count(1)));
    // Unset: every location with a live node.
    let plain = parse(
        "[[server]]\nname = \"w\"\nhost = \"localhost\"\nsensor = [{ name = \"a\", port = 80 }]\n",
    )
    .unwrap();
    assert_eq!(resolve(&plain)[0].locations, None);

    let base = "[[server]]\nname = \"web\"\nhost = \"localhost\"\n";
    let message = error(&format!("{base}down_when = 0\n"));
    assert!(
        message.starts_with("test.toml:4:13: down_when = '0' is not a count of locations"),
        "{message}"
    );
    let message = error(&format!("{base}down_when = \"most\"\n"));
    assert!(message.starts_with("test.toml:4:13:"), "{message}");
    let message = error(&format!("{base}locations = [\"eu\", \"eu\"]\n"));
    assert_eq!(message, "test.toml:4:13: location 'eu' is listed twice");
    let message = error(&format!("{base}locations = \"eu\"\n"));
    assert!(message.starts_with("test.toml:4:13:"), "{message}");
}

#[test]
fn heartbeat_sensors_have_a_period_and_grace_and_no_port() {
    let config = parse(
        "[[server]]\nname = \"backup\"\nhost = \"localhost\"\n[[server.sensor]]\nname = \"nightly\"\nkind = \"heartbeat\"\nevery = \"1d\"\ngrace = \"2h\"\n[[server.sensor]]\nkind = \"heartbeat\"\n",
    )
    .unwrap();
    let sensors = crate::config::model::resolve(&config);
    let (nightly, default) = (&sensors[0], &sensors[1]);
    assert_eq!((nightly.path.as_str(), nightly.port), ("backup/nightly", 0));
    assert_eq!(
        nightly.heartbeat.as_deref(),
        Some(&crate::monitor::heartbeat::Heartbeat {
            every: Duration::from_secs(86_400),
            grace: Duration::from_secs(7200),
        })
    );
    assert_eq!(
        nightly.settings.retries, 0,
        "a missed push is not re-checked"
    );
    // Defaults: a day, and a tenth of it.
    assert_eq!(default.path, "backup/heartbeat");
    assert_eq!(
        default.heartbeat.as_ref().map(|h| h.grace),
        Some(Duration::from_secs(8640))
    );
    let head = "[[server]]\nname = \"b\"\nhost = \"h\"\n[[server.sensor]]\n";
    for (sensor, wanted) in [
        (
            "kind = \"heartbeat\"\nport = 22\n",
            "test.toml:6:8: a heartbeat sensor has no port",
        ),
        ("kind = \"icmp\"\n", "test.toml:5:8: unknown kind 'icmp'"),
        ("name = \"x\"\n", "test.toml:5:8: this sensor has no port"),
        (
            "port = 22\nevery = \"1h\"\n",
            "test.toml:6:9: 'every' and 'grace' are for heartbeat sensors",
        ),
        (
            "kind = \"heartbeat\"\nevery = \"10s\"\n",
            "test.toml:6:9: every must be from 1m to 400d",
        ),
        (
            "kind = \"heartbeat\"\nevery = \"1h\"\ngrace = \"2h\"\n",
            "test.toml:7:9: grace must not be longer than every",
        ),
    ] {
        let message = error(&format!("{head}{sensor}"));
        assert!(message.starts_with(wanted), "{sensor}: {message}");
    }
}

#[test]
fn http_content_settings_speak_http_on_any_port_and_bad_ones_are_named_where_written() {
    use portwatch_probe::proto::http::{Auth, ContentRule, Secret};
    let base = "[[server]]\nname = \"a\"\nhost = \"h\"\n  [[server.sensor]]\n  port = 8080\n";
    let config = parse(&format!(
        "{base}  http_path = \"/health\"\n  http_contains = \"ok\"\n  http_absent = \"error\"\n  http_regex = 'v\\d+'\n  http_json = {{ path = \"status.db\", equals = \"up\" }}\n  http_headers = {{ X-Key = \"k\" }}\n  http_auth = {{ scheme = \"basic\", user = \"mon\", env = \"SITE_PW\" }}\n  http_follow = true\n"
    ))
    .unwrap();
    let resolved = crate::config::model::resolve(&config);
    let probe = resolved[0]
        .probe
        .as_ref()
        .expect("HTTP settings make a check");
    // Port 8080 has no well-known protocol: the settings make it HTTP.
    let plan = probe.plan(8080).unwrap();
    assert_eq!(plan.protocol.as_str(), "http");
    assert_eq!(probe.http.method, "GET", "content rules need a body");
    assert_eq!(probe.http.content.len(), 4);
    assert!(matches!(&probe.http.content[0], ContentRule::Contains(t) if t == "ok"));
    assert_eq!(probe.http.headers, vec![("X-Key".into(), "k".into())]);
    assert_eq!(
        probe.http.auth,
        Some(Auth::Basic("mon".into(), Secret::Env("SITE_PW".into())))
    );
    assert!(probe.http.follow);
    // On 443 the same settings speak HTTPS.
    assert_eq!(
        probe.plan(443).map(|p| p.tls),
        Some(portwatch_probe::proto::TlsMode::Implicit)
    );
    let body = parse(&format!("{base}  http_body = '{{\"q\":1}}'\n")).unwrap();
    let resolved = crate::config::model::resolve(&body);
    assert_eq!(resolved[0].probe.as_ref().unwrap().http.method, "POST");

    let cases = [
        (
            format!("{base}  http_method = \"HEAD\"\n  http_contains = \"ok\"\n"),
            "test.toml:6:17: a HEAD request has no body to check",
        ),
        (
            format!("{base}  http_method = \"BREW\"\n"),
            "test.toml:6:17: unknown HTTP method 'BREW'",
        ),
        (
            format!("{base}  http_headers = {{ \"X Key\" = \"v\" }}\n"),
            "test.toml:6:18: 'X Key' is not a header name",
        ),
        (
            format!("{base}  http_headers = {{ Connection = \"keep-alive\" }}\n"),
            "test.toml:6:18: portwatch sets 'Connection' itself",
        ),
        (
            format!("{base}  http_auth = {{ scheme = \"basic\", env = \"PW\" }}\n"),
            "test.toml:6:15: basic http_auth needs user",
        ),
        (
            format!("{base}  http_auth = {{ scheme = \"bearer\" }}\n"),
            "test.toml:6:15: http_auth needs exactly one of env",
        ),
        (
            format!("{base}  http_auth = {{ scheme = \"digest\", env = \"PW\" }}\n"),
            "test.toml:6:15: unknown http_auth scheme 'digest'",
        ),
        (
            format!("{base}  http_regex = '('\n"),
            "test.toml:6:16: '(' is not a regular expression",
        ),
        (
            format!("{base}  http_json = {{ path = \"a..b\" }}\n"),
            "test.toml:6:15: 'a..b' is not a JSON path",
        ),
        (
            format!("{base}  http_contains = \"\"\n"),
            "test.toml:6:19: http_contains is empty",
        ),
        (
            format!("{base}  phase_warning = {{ handshake = \"1s\" }}\n"),
            "test.toml:6:19: unknown phase 'handshake'",
        ),
        (
            format!("{base}  phase_critical = {{ total = \"soon\" }}\n"),
            "test.toml:6:20: phase_critical.total:",
        ),
        (
            format!("{base}  protocol = \"ssh\"\n  http_contains = \"ok\"\n"),
            "test.toml:6:14: http_* settings are for HTTP, not ssh",
        ),
        (
            format!(
                "{base}  http_auth = {{ scheme = \"bearer\", env = \"T\", password = \"x\" }}\n"
            ),
            "test.toml:6:",
        ),
    ];
    for (text, wanted) in cases {
        let message = error(&text);
        assert!(message.starts_with(wanted), "{wanted}: {message}");
    }
}

#[test]
fn dns_sensors_ask_their_server_and_bad_keys_are_named_where_written() {
    let base = "[[server]]\nname = \"ns1\"\nhost = \"192.0.2.53\"\n[[server.sensor]]\n";
    let config = parse(&format!(
        "{base}kind = \"dns\"\nquery = \"www.example.com\"\nexpect = [\"192.0.2.10\", \"192.0.2.11\"]\n[[server.sensor]]\nname = \"mx\"\nkind = \"dns\"\nquery = \"example.com\"\nrecord = \"MX\"\ntransport = \"tls\"\ninsecure = true\n"
    ))
    .unwrap();
    let resolved = crate::config::model::resolve(&config);
    let a = &resolved[0];
    assert_eq!((a.path.as_str(), a.port), ("ns1/dns", 53));
    let options = a.dns().expect("a DNS sensor");
    assert_eq!(options.name, "www.example.com.");
    assert_eq!(options.expect.len(), 2);
    assert!(a.probe.is_none());
    let mx = &resolved[1];
    assert_eq!(mx.port, 853, "DNS over TLS listens on 853");
    let options = mx.dns().unwrap();
    assert_eq!(options.record.to_string(), "MX");
    assert!(!options.tls.verify, "insecure applies to DNS over TLS");

    let cases = [
        (
            "kind = \"dns\"\n",
            "test.toml:5:8: a DNS sensor needs query",
        ),
        (
            "kind = \"dns\"\nquery = \"a b\"\n",
            "test.toml:6:9: 'a b' is not a DNS name",
        ),
        (
            "kind = \"dns\"\nquery = \"x.example\"\nrecord = \"AXFR\"\n",
            "test.toml:7:10: unknown record type 'AXFR'",
        ),
        (
            "kind = \"dns\"\nquery = \"x.example\"\nexpect = [\"mail\"]\n",
            "test.toml:7:10: 'mail' is not an address",
        ),
        (
            "kind = \"dns\"\nquery = \"x.example\"\nexpect = [1]\n",
            "test.toml:7:10: expect is a list of strings",
        ),
        (
            "kind = \"dns\"\nquery = \"x.example\"\ntransport = \"quic\"\n",
            "test.toml:7:13: unknown transport 'quic'",
        ),
        (
            "kind = \"dns\"\nquery = \"x.example\"\nresolver = \"google\"\n",
            "test.toml:7:12: unknown resolver 'google'",
        ),
        (
            "port = 53\nquery = \"x.example\"\n",
            "test.toml:6:9: query, record, expect, expect_all, rcode, transport, recursion and resolver are for DNS sensors",
        ),
        ("kind = \"icmp\"\n", "test.toml:5:8: unknown kind 'icmp'"),
    ];
    for (sensor, wanted) in cases {
        let message = error(&format!("{base}{sensor}"));
        assert!(message.starts_with(wanted), "{wanted}: {message}");
    }
}

#[test]
fn udp_sensors_send_their_protocol_and_bad_keys_are_named_where_written() {
    use portwatch_probe::udp::UdpProtocol;
    let base = "[[server]]\nname = \"infra\"\nhost = \"192.0.2.1\"\n[[server.sensor]]\n";
    let config = parse(&format!(
        "{base}kind = \"udp\"\nprotocol = \"ntp\"\n[[server.sensor]]\nkind = \"udp\"\nprotocol = \"snmp\"\ncommunity = \"monitor\"\n[[server.sensor]]\nname = \"game\"\nkind = \"udp\"\nport = 27015\nsend = 'PING\\n'\nexpect = \"PONG\"\n"
    ))
    .unwrap();
    let resolved = crate::config::model::resolve(&config);
    let ports: Vec<(&str, u16)> = resolved.iter().map(|s| (s.path.as_str(), s.port)).collect();
    assert_eq!(
        ports,
        vec![
            ("infra/ntp", 123),
            ("infra/snmp", 161),
            ("infra/game", 27015)
        ]
    );
    assert_eq!(resolved[0].udp().map(|u| &**u), Some(&UdpProtocol::Ntp));
    assert_eq!(
        resolved[1].udp().map(|u| &**u),
        Some(&UdpProtocol::Snmp(Some("monitor".into())))
    );
    assert!(resolved.iter().all(|s| s.probe.is_none()));

    let cases = [
        (
            "kind = \"udp\"\n",
            "test.toml:5:8: a UDP sensor needs protocol",
        ),
        (
            "kind = \"udp\"\nprotocol = \"quic\"\n",
            "test.toml:6:12: unknown UDP protocol 'quic'",
        ),
        (
            "kind = \"udp\"\nprotocol = \"ntp\"\ncommunity = \"x\"\n",
            "test.toml:7:13: 'community' is not a setting of ntp",
        ),
        (
            "kind = \"udp\"\nport = 9\nsend = '\\q'\n",
            "test.toml:7:8: unknown escape",
        ),
        (
            "kind = \"udp\"\nport = 9\nsend = \"x\"\nexpect = [\"y\"]\n",
            "test.toml:8:10: a UDP sensor's expect is a string",
        ),
        (
            "kind = \"udp\"\nsend = \"x\"\n",
            "test.toml:5:8: a UDP sensor that sends its own bytes has no well-known port",
        ),
        (
            "port = 161\ncommunity = \"x\"\n",
            "test.toml:6:13: community, snmp_version, file and send are for UDP sensors",
        ),
    ];
    for (sensor, wanted) in cases {
        let message = error(&format!("{base}{sensor}"));
        assert!(message.starts_with(wanted), "{wanted}: {message}");
    }
}

#[test]
fn ping_sensors_have_no_port_and_their_servers_depend_on_them() {
    let config = parse(
        "[[server]]\nname = \"router\"\nhost = \"192.0.2.1\"\n[[server.sensor]]\nkind = \"ping\"\ncount = 5\nloss_warning = 40\n[[server]]\nname = \"web\"\nhost = \"192.0.2.10\"\ndepends_on = \"router/ping\"\n[[server.sensor]]\nport = 443\n",
    )
    .unwrap();
    let resolved = crate::config::model::resolve(&config);
    let ping = &resolved[0];
    assert_eq!((ping.path.as_str(), ping.port), ("router/ping", 0));
    let options = ping.ping().expect("a PING sensor");
    assert_eq!((options.count, options.loss_warning), (5, 40));
    assert!(ping.probe.is_none());
    assert_eq!(resolved[1].depends_on.as_deref(), Some("router/ping"));
    let base = "[[server]]\nname = \"r\"\nhost = \"192.0.2.1\"\n[[server.sensor]]\n";
    for (sensor, wanted) in [
        (
            "kind = \"ping\"\nport = 7\n",
            "test.toml:6:8: a PING sensor has no port",
        ),
        (
            "kind = \"ping\"\ncount = 0\n",
            "test.toml:6:9: count = 0: send 1 to 20",
        ),
        (
            "kind = \"ping\"\nloss_warning = 120\n",
            "test.toml:6:16: loss_warning = 120: give a percentage",
        ),
        (
            "port = 22\ncount = 3\n",
            "test.toml:6:9: count and loss_warning are for PING sensors",
        ),
    ] {
        let message = error(&format!("{base}{sensor}"));
        assert!(message.starts_with(wanted), "{wanted}: {message}");
    }
}

/// A sensor as written holds its fifty-odd keys that most sensors leave
/// out boxed: `apply` of a million sensors holds a million of these at
/// once, and they took 2,040 bytes each unboxed (2 GB).
#[test]
fn a_sensor_as_written_stays_small() {
    let size = std::mem::size_of::<crate::config::raw::Sensor>();
    assert!(size <= 512, "raw::Sensor is {size} bytes");
}
