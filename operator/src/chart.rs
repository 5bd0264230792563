//! A tenant's ingestion over time as an SVG chart, pure: documents stored by batch runs and
//! messages ingested by stream apps, summed per time bucket, drawn as two bar series on one
//! time axis. No plotting library: the picture is a few rectangles, lines and labels.

use std::{collections::BTreeMap, fmt::Write};

/// One series: `(time in Unix milliseconds, amount)` pairs, in any order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its colour, e.g. `#1f77b4`.
    pub colour: String,
    /// The amounts.
    pub points: Vec<(i64, f64)>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn time_label(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%H:%M:%S").to_string())
}

/// Sums each series per `bucket_ms` and draws them; an empty chart says there is no data.
pub fn svg(title: &str, series: &[Series], bucket_ms: i64) -> String {
    let bucket_ms = bucket_ms.max(1);
    let sums: Vec<BTreeMap<i64, f64>> = series
        .iter()
        .map(|s| {
            let mut sums = BTreeMap::new();
            for &(at, amount) in &s.points {
                *sums.entry(at.div_euclid(bucket_ms)).or_insert(0.0) += amount;
            }
            sums
        })
        .collect();
    let buckets: Vec<i64> = {
        let mut all: Vec<i64> = sums.iter().flat_map(|s| s.keys().copied()).collect();
        all.sort_unstable();
        all.dedup();
        match (all.first(), all.last()) {
            (Some(&first), Some(&last)) => (first..=last).collect(),
            _ => Vec::new(),
        }
    };
    let top = sums.iter().flat_map(|s| s.values().copied()).fold(0.0_f64, f64::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="24" font-size="16">{}</text>"#, escape(title));
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h,
        TOP + plot_h
    );
    if buckets.is_empty() || top <= 0.0 {
        let _ = writeln!(out, r#"<text x="{}" y="{}">no ingestion recorded</text>"#, LEFT + 20.0, TOP + plot_h / 2.0);
        out.push_str("</svg>\n");
        return out;
    }
    for step in 0..=4 {
        let value = top * f64::from(step) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(step) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{value:.0}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let slot = plot_w / buckets.len() as f64;
    let bar = (slot * 0.8 / series.len().max(1) as f64).max(1.0);
    for (i, bucket) in buckets.iter().enumerate() {
        let x0 = LEFT + slot * i as f64 + slot * 0.1;
        for (k, (s, sum)) in series.iter().zip(&sums).enumerate() {
            let amount = sum.get(bucket).copied().unwrap_or(0.0);
            if amount <= 0.0 {
                continue;
            }
            let h = plot_h * amount / top;
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" fill="{}"><title>{}: {amount:.0}</title></rect>"#,
                x0 + bar * k as f64,
                TOP + plot_h - h,
                escape(&s.colour),
                escape(&s.name)
            );
        }
    }
    let every = (buckets.len() / 8).max(1);
    for (i, bucket) in buckets.iter().enumerate().step_by(every) {
        let x = LEFT + slot * i as f64 + slot / 2.0;
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            time_label(bucket * bucket_ms)
        );
    }
    for (k, s) in series.iter().enumerate() {
        let x = LEFT + 200.0 * k as f64;
        let y = HEIGHT - 16.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{} per {}s</text>"#,
            y - 10.0,
            escape(&s.colour),
            x + 16.0,
            escape(&s.name),
            bucket_ms / 1000
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_summed_per_bucket_and_scaled_to_the_highest() {
        let series = [
            Series {
                name: "batch rows".into(),
                colour: "#1f77b4".into(),
                points: vec![(0, 10.0), (500, 30.0), (2500, 20.0)],
            },
            Series { name: "stream <msgs>".into(), colour: "#ff7f0e".into(), points: vec![(1500, 5.0)] },
        ];
        let svg = svg("acme & co", &series, 1000);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count() - 2, 3, "three bars, two legend boxes: {svg}");
        assert!(svg.contains("<title>batch rows: 40</title>"), "0 ms and 500 ms share a bucket");
        assert!(svg.contains(r##"height="310.0" fill="#1f77b4""##), "the highest bar fills the plot: {svg}");
        assert!(svg.contains("acme &amp; co") && svg.contains("stream &lt;msgs&gt;"), "text is escaped");
    }

    #[test]
    fn no_data_says_so() {
        let svg = svg("empty", &[Series { name: "x".into(), colour: "red".into(), points: vec![] }], 60_000);
        assert!(svg.contains("no ingestion recorded"));
    }
}
