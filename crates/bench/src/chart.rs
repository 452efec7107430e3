//! Two small SVG charts, drawn by hand: latency percentiles per scenario, and pull
//! latency against room size.

use serde_json::Value;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 360.0;
const PAD: f64 = 60.0;

fn frame(title: &str, y_max: f64, unit: &str) -> String {
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="24" text-anchor="middle" font-size="15">{title}</text>"#,
        W / 2.0
    );
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let y = H - PAD - (H - 2.0 * PAD) * i as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{PAD}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v:.1} {unit}</text>"##,
            W - PAD / 2.0,
            PAD - 6.0,
            y + 4.0
        );
    }
    s
}

/// p50 and p99 bars for every scenario with a flat latency summary.
pub fn latency(results: &[Value]) -> String {
    let rows: Vec<(&str, f64, f64)> = results
        .iter()
        .filter_map(|r| {
            let l = &r["latency"];
            Some((r["scenario"].as_str()?, l["p50_ms"].as_f64()?, l["p99_ms"].as_f64()?))
        })
        .collect();
    let y_max = rows.iter().map(|r| r.2).fold(1.0, f64::max) * 1.1;
    let mut s = frame("Latency per scenario (p50 dark, p99 light)", y_max, "ms");
    let slot = (W - 1.5 * PAD) / rows.len().max(1) as f64;
    let scale = |v: f64| (H - 2.0 * PAD) * v / y_max;
    for (i, (name, p50, p99)) in rows.iter().enumerate() {
        let x = PAD + slot * i as f64 + slot * 0.15;
        let bw = slot * 0.35;
        let _ = write!(
            s,
            r##"<rect x="{x}" y="{}" width="{bw}" height="{}" fill="#2b6cb0"/><rect x="{}" y="{}" width="{bw}" height="{}" fill="#90cdf4"/><text x="{}" y="{}" text-anchor="middle" font-size="10">{name}</text>"##,
            H - PAD - scale(*p50),
            scale(*p50),
            x + bw,
            H - PAD - scale(*p99),
            scale(*p99),
            x + bw,
            H - PAD + 16.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Pull p50/p99 (middle of the room) against messages in the room, log scale.
pub fn pull(results: &[Value]) -> String {
    let rows: Vec<(f64, f64, f64)> = results
        .iter()
        .filter_map(|r| {
            let n = r["messages_in_room"].as_f64()?;
            let l = &r["latency"]["middle"];
            Some((n, l["p50_ms"].as_f64()?, l["p99_ms"].as_f64()?))
        })
        .collect();
    let y_max = rows.iter().map(|r| r.2).fold(1.0, f64::max) * 1.2;
    let mut s = frame("Pull latency (limit=100, middle of room) vs room size", y_max, "ms");
    let (lo, hi) = (2.5, 5.5);
    let x_of = |n: f64| PAD + (W - 2.0 * PAD) * (n.log10() - lo) / (hi - lo);
    let y_of = |v: f64| H - PAD - (H - 2.0 * PAD) * v / y_max;
    for (series, color) in [(1usize, "#2b6cb0"), (2, "#dd6b20")] {
        let points: Vec<String> =
            rows.iter().map(|r| format!("{:.1},{:.1}", x_of(r.0), y_of(if series == 1 { r.1 } else { r.2 }))).collect();
        let _ = write!(s, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#, points.join(" "));
    }
    for r in &rows {
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, x_of(r.0), H - PAD + 16.0, r.0);
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" fill="#2b6cb0">p50</text><text x="{}" y="{}" fill="#dd6b20">p99</text></svg>"##,
        W - PAD,
        PAD,
        W - PAD,
        PAD + 16.0
    );
    s.push('\n');
    s
}
