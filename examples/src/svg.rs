//! Inline SVG for the HTML report, drawn here so the report stays self-contained (no
//! scripts, no external resources): the run's timeline (phases over time, the
//! fence-to-commit window, the lag curve during the wait) and the state diagram generated
//! from [`failover_core::machine::TRANSITIONS`].

use crate::output::summary_rows;
use crate::report::{ReportDoc, format_ms};
use failover_core::machine::{StateName, TRANSITIONS};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Escapes text for SVG/XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const LEFT: f64 = 250.0;
const WIDTH: f64 = 900.0;
const ROW: f64 = 22.0;

/// The timeline of a run: one row per phase (polls of a wait collapsed), a bar from its
/// start for its duration; the write-unavailability window as a red band over all rows; the
/// total lag sampled during the waits as a curve under the rows.
pub fn timeline(doc: &ReportDoc) -> String {
    let r = &doc.run;
    let rows = summary_rows(r);
    let total = (r.duration_us / 1000).max(1) as f64;
    let plot = WIDTH - LEFT - 20.0;
    let x = |ms: f64| LEFT + plot * (ms / total).clamp(0.0, 1.0);
    let curve_h = if doc.lag_curve.is_empty() { 0.0 } else { 90.0 };
    let top = 24.0;
    let rows_h = rows.len() as f64 * ROW;
    let height = top + rows_h + curve_h + 40.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg id="timeline-svg" class="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="Timeline of the run">"#
    );
    let _ = write!(
        o,
        r#"<title>Timeline: {} phases over {}</title>"#,
        rows.len(),
        format_ms(total as u64)
    );
    if let Some(w) = &r.window {
        let (a, b) = (x(w.start_ms as f64), x(w.end_ms as f64));
        // The label reads leftwards from the band when the band is in the right half.
        let (tx, anchor) = if a > LEFT + plot / 2.0 {
            (b, "end")
        } else {
            (a, "start")
        };
        let _ = write!(
            o,
            r##"<g id="timeline-window"><rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#b42318" fill-opacity="0.18" stroke="#b42318" stroke-dasharray="3 2"/><text x="{tx:.1}" y="14" font-size="11" fill="#b42318" text-anchor="{anchor}">write-unavailability window (fence → commit): {}</text></g>"##,
            top - 4.0,
            (b - a).max(2.0),
            rows_h + curve_h + 8.0,
            esc(&format_ms(w.duration_us / 1000))
        );
    }
    for (n, row) in rows.iter().enumerate() {
        let y = top + n as f64 * ROW;
        let start = row.started_ms;
        let (a, b) = (x(start as f64), x((start + row.elapsed_ms) as f64));
        let colour = if row.wait { "#0969da" } else { "#57606a" };
        let polls = if row.wait {
            format!(" ({} polls)", row.polls)
        } else {
            String::new()
        };
        let _ = write!(
            o,
            r##"<g class="phase"><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text><rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="2" fill="{colour}"><title>{}: {}{}</title></rect></g>"##,
            LEFT - 8.0,
            y + 14.0,
            esc(&row.label),
            y + 4.0,
            (b - a).max(2.0),
            ROW - 8.0,
            esc(&row.label),
            esc(&format_ms(row.elapsed_ms)),
            esc(&polls)
        );
    }
    if !doc.lag_curve.is_empty() {
        let base = top + rows_h + curve_h;
        let max = doc.lag_curve.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
        let y = |lag: u64| base - (curve_h - 10.0) * (lag as f64 / max);
        let mut pts: Vec<String> = doc
            .lag_curve
            .iter()
            .map(|(at, lag)| {
                let ms = at.saturating_sub(r.started_unix_ms) as f64;
                format!("{:.1},{:.1}", x(ms), y(*lag))
            })
            .collect();
        // A poll that finds the backup caught up reports no lag: the wait's end is lag 0.
        for row in rows.iter().filter(|w| w.wait) {
            if doc.lags.get(&row.state).is_some_and(|l| l.caught_up) {
                pts.push(format!(
                    "{:.1},{:.1}",
                    x((row.started_ms + row.elapsed_ms) as f64),
                    y(0)
                ));
            }
        }
        let _ = write!(
            o,
            r##"<g id="timeline-lag"><line x1="{LEFT}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}" stroke="#d0d7de"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">replication lag</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text><polyline fill="none" stroke="#1a7f37" stroke-width="2" points="{}"/></g>"##,
            WIDTH - 20.0,
            LEFT - 8.0,
            base - curve_h / 2.0,
            LEFT - 8.0,
            base - curve_h + 14.0,
            max as u64,
            pts.join(" ")
        );
    }
    let axis_y = height - 12.0;
    let _ = write!(
        o,
        r##"<g class="axis" font-size="10" fill="#57606a"><text x="{LEFT}" y="{axis_y:.1}">0</text><text x="{:.1}" y="{axis_y:.1}" text-anchor="end">{}</text></g></svg>"##,
        WIDTH - 20.0,
        esc(&format_ms(total as u64))
    );
    o
}

/// The failover state machine as an SVG: states in layers by their distance from
/// `Preflight` (breadth-first over [`TRANSITIONS`]), each transition an arrow whose tooltip
/// says when it is taken.
pub fn state_diagram() -> String {
    let mut layer: BTreeMap<StateName, usize> = BTreeMap::new();
    layer.insert(StateName::Preflight, 0);
    let mut frontier = vec![StateName::Preflight];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for s in frontier {
            let d = layer[&s];
            for (a, b, _) in TRANSITIONS {
                if *a == s && !layer.contains_key(b) {
                    layer.insert(*b, d + 1);
                    next.push(*b);
                }
            }
        }
        frontier = next;
    }
    let mut layers: Vec<Vec<StateName>> = Vec::new();
    for (s, d) in &layer {
        if layers.len() <= *d {
            layers.resize(d + 1, Vec::new());
        }
        layers[*d].push(*s);
    }
    let (bw, bh, gx, gy) = (150.0, 26.0, 20.0, 46.0);
    let widest = layers.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let width = widest * (bw + gx) + gx;
    let height = layers.len() as f64 * (bh + gy) + gy;
    let mut pos: BTreeMap<StateName, (f64, f64)> = BTreeMap::new();
    for (d, ls) in layers.iter().enumerate() {
        let row_w = ls.len() as f64 * (bw + gx) - gx;
        let x0 = (width - row_w) / 2.0;
        for (i, s) in ls.iter().enumerate() {
            pos.insert(
                *s,
                (x0 + i as f64 * (bw + gx), gy / 2.0 + d as f64 * (bh + gy)),
            );
        }
    }
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg id="state-diagram" viewBox="0 0 {width:.0} {height:.0}" width="100%" role="img" aria-label="The failover state machine"><title>The failover state machine ({} states, {} transitions)</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a"/></marker></defs>"##,
        pos.len(),
        TRANSITIONS.len()
    );
    for (a, b, why) in TRANSITIONS {
        let (Some(&(ax, ay)), Some(&(bx, by))) = (pos.get(a), pos.get(b)) else {
            continue;
        };
        let (x1, y1) = (ax + bw / 2.0, if by > ay { ay + bh } else { ay });
        let (x2, y2) = (bx + bw / 2.0, if by > ay { by } else { by + bh });
        let back = by <= ay;
        let stroke = if back { "#9a6700" } else { "#57606a" };
        let _ = write!(
            o,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-opacity="0.6" marker-end="url(#arrow)"{}><title>{} → {}: {}</title></line>"##,
            if back {
                r#" stroke-dasharray="4 3""#
            } else {
                ""
            },
            esc(a.as_str()),
            esc(b.as_str()),
            esc(why)
        );
    }
    for (s, (x, y)) in &pos {
        let _ = write!(
            o,
            r##"<g class="state"><rect x="{x:.1}" y="{y:.1}" width="{bw}" height="{bh}" rx="6" fill="#f6f8fa" stroke="#1f2328"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text></g>"##,
            x + bw / 2.0,
            y + 17.0,
            esc(s.as_str())
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_diagram_draws_every_state_and_transition() {
        let svg = state_diagram();
        for (a, b, _) in TRANSITIONS {
            assert!(svg.contains(&format!(">{}<", a.as_str())), "{a}");
            assert!(
                svg.contains(&format!("<title>{} → {}:", a.as_str(), b.as_str())),
                "{a} -> {b}"
            );
        }
        assert_eq!(svg.matches("<line ").count(), TRANSITIONS.len());
    }
}
