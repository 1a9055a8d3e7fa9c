//! Server-side SVG charts: no JavaScript, no CDN, and only numbers in the
//! markup (nothing a user typed), so they are safe to embed as they are.

use std::fmt::Write;

/// A response-time chart: one point per result (or per hourly rollup), in
/// milliseconds, over `from_ms..to_ms`. Failed checks are red marks on the
/// time axis.
pub fn response_time(points: &[(i64, Option<f64>)], from_ms: i64, to_ms: i64) -> String {
    // A sensor younger than the range is drawn from its first result on.
    let from_ms = points
        .iter()
        .map(|p| p.0)
        .min()
        .map_or(from_ms, |first| first.max(from_ms));
    const W: f64 = 800.0;
    const H: f64 = 200.0;
    const PAD: f64 = 30.0;
    let span = (to_ms - from_ms).max(1) as f64;
    let max = points
        .iter()
        .filter_map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(0.001);
    let x = |at: i64| PAD + (at - from_ms) as f64 / span * (W - PAD - 5.0);
    let y = |ms: f64| H - PAD - ms / max * (H - PAD - 10.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="connect time">"#
    );
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{0}" x2="{1}" y2="{0}" stroke="#8c959f"/>"##,
        H - PAD,
        W - 5.0
    );
    let _ = write!(
        svg,
        r##"<text x="2" y="14" font-size="11" fill="#57606a">{max:.3} ms</text>"##
    );
    let _ = write!(
        svg,
        r##"<text x="2" y="{}" font-size="11" fill="#57606a">0</text>"##,
        H - PAD
    );
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
    for (at, _) in points.iter().filter(|p| p.1.is_none()) {
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{}" width="2" height="8" fill="#c62828"/>"##,
            x(*at),
            H - PAD + 2.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One bar per day of uptime by time (green up, red down, grey without
/// data), the first day starting at `first_day_ms`; each bar's tooltip
/// says its date and figure.
pub fn uptime_bars(days: &[Option<f64>], first_day_ms: i64) -> String {
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
        match day {
            None => {
                let _ = write!(
                    svg,
                    r##"<rect x="{x}" y="0" width="{width}" height="40" fill="#d0d7de"><title>{date}: no data</title></rect>"##
                );
            }
            Some(percent) => {
                let up = percent / 100.0 * 40.0;
                let _ = write!(
                    svg,
                    r##"<g><title>{date}: {percent:.2}% up</title><rect x="{x}" y="0" width="{width}" height="{:.1}" fill="#c62828"/><rect x="{x}" y="{:.1}" width="{width}" height="{up:.1}" fill="#1a7f37"/></g>"##,
                    40.0 - up,
                    40.0 - up
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_plots_answers_and_marks_failures() {
        let svg = response_time(&[(0, Some(1.0)), (50, Some(2.0)), (100, None)], 0, 100);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches(r##"fill="#c62828""##).count(), 1, "{svg}");
        assert!(svg.contains("2.000 ms"), "the axis shows the maximum");
        let empty = response_time(&[], 0, 100);
        assert!(!empty.contains("<polyline"));
    }

    #[test]
    fn bars_show_each_day() {
        let svg = uptime_bars(&[Some(100.0), None, Some(50.0)], 1_796_083_200_000);
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(
            svg.contains("<title>2026-12-01: 100.00% up</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>2026-12-02: no data</title>"), "{svg}");
        assert!(
            svg.contains("<title>2026-12-03: 50.00% up</title>"),
            "{svg}"
        );
    }
}
