//! Server-side SVG charts: no JavaScript, no CDN, and only numbers in the
//! markup (nothing a user typed), so they are safe to embed as they are.

use std::fmt::Write;

/// A "nice" top for a value axis: 1, 2 or 5 times a power of ten, at least
/// `max`.
fn nice_top(max: f64) -> f64 {
    let max = max.max(0.001);
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|top| *top >= max * 0.999_999)
        .unwrap_or(10.0 * power)
}

/// A millisecond figure for an axis label, without trailing zeros.
fn ms_label(ms: f64) -> String {
    let text = format!("{ms:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "0" {
        "0".into()
    } else {
        format!("{text} ms")
    }
}

/// A time on the axis (UTC): with seconds within ten minutes, the hour
/// within two days, the date beyond.
fn time_label(at_ms: i64, span_ms: i64) -> String {
    let format = if span_ms <= 10 * 60_000 {
        "%H:%M:%S"
    } else if span_ms <= 2 * 86_400_000 {
        "%H:%M"
    } else {
        "%m-%d"
    };
    jiff::Timestamp::from_millisecond(at_ms)
        .map(|t| t.strftime(format).to_string())
        .unwrap_or_default()
}

/// A response-time chart: one point per result (or per hourly rollup), in
/// milliseconds, over `from_ms..to_ms`, with a value axis (gridlines at
/// round figures), a time axis (UTC), the outages shaded, each point's
/// time and figure on hover (up to 500 points), and failed checks as red
/// marks on the time axis.
pub fn response_time(
    points: &[(i64, Option<f64>)],
    from_ms: i64,
    to_ms: i64,
    outages: &[(i64, Option<i64>)],
) -> String {
    // A sensor younger than the range is drawn from its first result on.
    let from_ms = points
        .iter()
        .map(|p| p.0)
        .min()
        .map_or(from_ms, |first| first.max(from_ms));
    const W: f64 = 800.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 64.0;
    const BOTTOM: f64 = 24.0;
    const TOP: f64 = 10.0;
    let span = (to_ms - from_ms).max(1);
    let top = nice_top(points.iter().filter_map(|p| p.1).fold(0.0f64, f64::max));
    let x = |at: i64| LEFT + (at - from_ms) as f64 / span as f64 * (W - LEFT - 8.0);
    let y = |ms: f64| H - BOTTOM - ms / top * (H - BOTTOM - TOP);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="connect time">"#
    );
    for (start, end) in outages {
        let (start, end) = ((*start).max(from_ms), end.unwrap_or(to_ms).min(to_ms));
        if end > start {
            let _ = write!(
                svg,
                r##"<rect class="outage" x="{:.1}" y="{TOP}" width="{:.1}" height="{}" fill="#c62828" fill-opacity="0.12"/>"##,
                x(start),
                (x(end) - x(start)).max(1.0),
                H - BOTTOM - TOP
            );
        }
    }
    for step in 0..=4 {
        let value = top * f64::from(step) / 4.0;
        let at = y(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{}" y2="{at:.1}" stroke="#8c959f" stroke-opacity="{}"/><text x="{}" y="{:.1}" font-size="11" fill="#57606a" text-anchor="end">{}</text>"##,
            W - 8.0,
            if step == 0 { 1.0 } else { 0.3 },
            LEFT - 6.0,
            at + 4.0,
            ms_label(value)
        );
    }
    for step in 0..=5 {
        let at = from_ms + span * step / 5;
        let anchor = match step {
            0 => "start",
            5 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#8c959f"/><text x="{0:.1}" y="{3}" font-size="11" fill="#57606a" text-anchor="{anchor}">{4}</text>"##,
            x(at),
            H - BOTTOM,
            H - BOTTOM + 4.0,
            H - 6.0,
            time_label(at, span)
        );
    }
    let line: Vec<String> = points
        .iter()
        .filter_map(|(at, ms)| ms.map(|ms| format!("{:.1},{:.1}", x(*at), y(ms))))
        .collect();
    if !line.is_empty() {
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{}"/>"##,
            line.join(" ")
        );
    }
    if points.len() <= 500 {
        for (at, ms) in points {
            if let Some(ms) = ms {
                let when = jiff::Timestamp::from_millisecond(*at)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                let _ = write!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#0969da" fill-opacity="0"><title>{when} UTC: {ms:.3} ms</title></circle>"##,
                    x(*at),
                    y(*ms)
                );
            }
        }
    }
    for (at, _) in points.iter().filter(|p| p.1.is_none()) {
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{}" width="2" height="6" fill="#c62828"/>"##,
            x(*at),
            H - BOTTOM - 6.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One bar per day of uptime by time (green up, red down, grey without
/// data), the first day starting at `first_day_ms`; each bar's tooltip
/// says its date and figure.
pub fn uptime_bars(days: &[crate::report::Day], first_day_ms: i64) -> String {
    let width = 12.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} 40" preserveAspectRatio="none" role="img" aria-label="uptime per day">"#,
        days.len() as f64 * (width + 2.0)
    );
    for (i, day) in days.iter().enumerate() {
        let x = i as f64 * (width + 2.0);
        let date = jiff::Timestamp::from_millisecond(first_day_ms + i as i64 * 86_400_000)
            .map(|t| t.strftime("%Y-%m-%d").to_string())
            .unwrap_or_default();
        match day.uptime {
            None => {
                let _ = write!(
                    svg,
                    r##"<rect x="{x}" y="0" width="{width}" height="40" fill="#d0d7de"><title>{date}: no data</title></rect>"##
                );
            }
            Some(percent) => {
                let up = percent / 100.0 * 40.0;
                let outages = match day.outages {
                    0 => String::new(),
                    n => format!(
                        ", {n} outage{}, {} down",
                        if n == 1 { "" } else { "s" },
                        crate::duration::age(0, day.down_ms)
                    ),
                };
                let _ = write!(
                    svg,
                    r##"<g><title>{date}: {percent:.2}% up{outages}</title><rect x="{x}" y="0" width="{width}" height="{:.1}" fill="#c62828"/><rect x="{x}" y="{:.1}" width="{width}" height="{up:.1}" fill="#1a7f37"/></g>"##,
                    40.0 - up,
                    40.0 - up
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// One tick per check, oldest first: green up, amber warning, red down,
/// purple unknown; each tick's tooltip says when, what and why.
pub fn heartbeat(checks: &[(i64, crate::probe::Status, crate::probe::Reason)]) -> String {
    let width = 10.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} 24" role="img" aria-label="the last checks">"#,
        (checks.len().max(1)) as f64 * (width + 3.0)
    );
    for (i, (at, status, reason)) in checks.iter().enumerate() {
        let fill = match status {
            crate::probe::Status::Up => "#1a7f37",
            crate::probe::Status::Warning => "#9a6700",
            crate::probe::Status::Down => "#c62828",
            crate::probe::Status::Unknown => "#8250df",
        };
        let when = jiff::Timestamp::from_millisecond(*at)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="0" width="{width}" height="24" rx="2" fill="{fill}"><title>{when} UTC: {} ({})</title></rect>"##,
            i as f64 * (width + 3.0),
            status.as_str(),
            reason.as_str()
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_plots_answers_and_marks_failures() {
        let start = 1_796_083_200_000; // 2026-12-01 00:00 UTC
        let hour = 3_600_000;
        let points = [
            (start, Some(1.0)),
            (start + hour, Some(2.0)),
            (start + 2 * hour, None),
        ];
        let svg = response_time(
            &points,
            start,
            start + 5 * hour,
            &[(start + 2 * hour, None)],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(
            svg.matches(r##"height="6" fill="#c62828""##).count(),
            1,
            "one failure mark: {svg}"
        );
        assert_eq!(
            svg.matches(r#"class="outage""#).count(),
            1,
            "the open outage is shaded"
        );
        // Gridlines at round figures up to 2 ms; hours on the time axis.
        for label in [
            ">0<", ">0.5 ms<", ">1 ms<", ">1.5 ms<", ">2 ms<", ">00:00<", ">01:00<", ">05:00<",
        ] {
            assert!(svg.contains(label), "{label} in {svg}");
        }
        assert!(
            svg.contains("<title>2026-12-01 01:00:00 UTC: 2.000 ms</title>"),
            "{svg}"
        );
        let empty = response_time(&[], 0, 100, &[]);
        assert!(!empty.contains("<polyline"));
    }

    #[test]
    fn the_heartbeat_bar_has_a_tick_per_check() {
        use crate::probe::{Reason, Status};
        let start = 1_796_083_200_000;
        let svg = heartbeat(&[
            (start, Status::Up, Reason::Connected),
            (start + 60_000, Status::Down, Reason::Refused),
        ]);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(
            svg.contains(
                r##"fill="#c62828"><title>2026-12-01 00:01:00 UTC: down (refused)</title>"##
            ),
            "{svg}"
        );
        assert!(svg.contains("00:00:00 UTC: up (connected)"), "{svg}");
    }

    #[test]
    fn axes_use_round_figures_and_readable_times() {
        assert_eq!(nice_top(0.7), 1.0);
        assert_eq!(nice_top(1.0), 1.0);
        assert_eq!(nice_top(1.2), 2.0);
        assert_eq!(nice_top(3.3), 5.0);
        assert_eq!(nice_top(70.0), 100.0);
        assert!((nice_top(0.0) - 0.001).abs() < 1e-12);
        assert_eq!(ms_label(0.125), "0.125 ms");
        assert_eq!(ms_label(2.5), "2.5 ms");
        assert_eq!(ms_label(250.0), "250 ms");
        assert_eq!(ms_label(0.0), "0");
        assert_eq!(ms_label(10.0), "10 ms");
        let at = 1_796_083_200_000 + 90 * 60_000;
        assert_eq!(time_label(at, 86_400_000), "01:30");
        assert_eq!(time_label(at, 7 * 86_400_000), "12-01");
        assert_eq!(time_label(at + 5_000, 60_000), "01:30:05");
    }

    #[test]
    fn bars_show_each_day() {
        let day = |uptime, outages, down_ms| crate::report::Day {
            uptime,
            outages,
            down_ms,
        };
        let svg = uptime_bars(
            &[
                day(Some(100.0), 0, 0),
                day(None, 0, 0),
                day(Some(50.0), 2, 43_200_000),
            ],
            1_796_083_200_000,
        );
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(
            svg.contains("<title>2026-12-01: 100.00% up</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>2026-12-02: no data</title>"), "{svg}");
        assert!(
            svg.contains("<title>2026-12-03: 50.00% up, 2 outages, 12h 0m down</title>"),
            "{svg}"
        );
    }
}
