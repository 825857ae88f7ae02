//! `cargo xtask bench --plot`: each suite's results in `bench/results.json` drawn as SVG
//! bar charts in `bench/<chart>.svg` (plotters' SVG backend: text stays text, no fonts
//! or network needed). What each chart shows is a table below — JSON pointers into the
//! suite's results — so a chart never computes a figure the benchmark did not record.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// One chart: bars read from a suite's results, and the target line if it has one.
struct Def {
    suite: &'static str,
    file: &'static str,
    title: &'static str,
    unit: &'static str,
    /// (label, JSON pointer into the suite's results); a missing value drops the bar.
    bars: &'static [(&'static str, &'static str)],
    /// (label, value) of the target, drawn as a red line.
    target: Option<(&'static str, f64)>,
}

const CHARTS: &[Def] = &[
    Def {
        suite: "local",
        file: "local-throughput",
        title: "Load balancer: requests/s through each (higher is better)",
        unit: "req/s",
        bars: &[
            ("direct to the instance", "/direct/requests_per_s"),
            ("nginx reverse proxy", "/via_nginx/requests_per_s"),
            ("skiff load balancer", "/via_load_balancer/requests_per_s"),
        ],
        target: None,
    },
    Def {
        suite: "local",
        file: "local-latency",
        title: "Load balancer: latency (lower is better)",
        unit: "µs",
        bars: &[
            ("direct p50", "/direct/p50_us"),
            ("nginx p50", "/via_nginx/p50_us"),
            ("skiff p50", "/via_load_balancer/p50_us"),
            ("direct p99", "/direct/p99_us"),
            ("nginx p99", "/via_nginx/p99_us"),
            ("skiff p99", "/via_load_balancer/p99_us"),
        ],
        target: None,
    },
    Def {
        suite: "control",
        file: "control-throughput",
        title: "skiffd status reads, 1,000 services: requests/s (higher is better)",
        unit: "req/s",
        bars: &[
            ("nginx static file (floor)", "/nginx_static_file/requests_per_s"),
            ("skiffd index, file://", "/backends/0/index/requests_per_s"),
            ("skiffd index, refreshing", "/index_refreshing/file/requests_per_s"),
            ("skiffd bucket, file://", "/backends/0/bucket/requests_per_s"),
            ("skiffd index, S3", "/backends/1/index/requests_per_s"),
            ("skiffd bucket, S3", "/backends/1/bucket/requests_per_s"),
        ],
        target: None,
    },
    Def {
        suite: "control",
        file: "control-latency",
        title: "skiffd status reads: p99 latency (lower is better)",
        unit: "ms",
        bars: &[
            ("nginx static file (floor)", "/nginx_static_file/p99_ms"),
            ("skiffd index, file://", "/backends/0/index/p99_ms"),
            ("skiffd index, refreshing", "/index_refreshing/file/p99_ms"),
            ("two replicas, file://", "/two_replicas_file_index/p99_ms"),
            ("skiffd index, S3", "/backends/1/index/p99_ms"),
        ],
        target: None,
    },
    Def {
        suite: "cli",
        file: "cli",
        title: "skiff status --format json, 100 services, new process each (lower is better)",
        unit: "ms",
        bars: &[("fastest", "/min_ms"), ("median", "/median_ms"), ("p90", "/p90_ms")],
        target: Some(("target: median < 10 ms", 10.0)),
    },
    Def {
        suite: "compile",
        file: "compile",
        title: "spec -> IR -> plan, per service of 1,000 (lower is better)",
        unit: "µs",
        bars: &[("p50", "/per_service_us/p50"), ("p90", "/per_service_us/p90"), ("p99", "/per_service_us/p99")],
        target: Some(("target: p50 < 1 ms", 1000.0)),
    },
    Def {
        suite: "ledger",
        file: "ledger",
        title: "State bucket on file://: operations/s (higher is better)",
        unit: "ops/s",
        bars: &[
            ("raw put", "/backends/0/raw_put_ops_per_s"),
            ("encode + put", "/backends/0/encode_and_put_ops_per_s"),
            ("event append", "/backends/0/event_appends_per_s"),
            ("CAS, 1 writer", "/backends/0/cas_1_writer_ops_per_s"),
            ("CAS, 8 writers", "/backends/0/cas_8_writers_ops_per_s"),
        ],
        target: None,
    },
    Def {
        suite: "saga",
        file: "saga",
        title: "Saga engine: time per step (lower is better)",
        unit: "ms",
        bars: &[
            ("memory bucket", "/backends/0/per_step_ms"),
            ("file:// bucket", "/backends/1/per_step_ms"),
            ("one fsynced raw put", "/backends/1/raw_put_ms"),
        ],
        target: Some(("target: file:// < 1.5 ms", 1.5)),
    },
    Def {
        suite: "restore",
        file: "restore",
        title: "PostgreSQL restore to a point, 1.2 GB (lower is better)",
        unit: "ms",
        bars: &[
            ("by hand, run 1", "/by_hand_ms/0"),
            ("skiff, run 1", "/skiff_ms/0"),
            ("by hand, run 2", "/by_hand_ms/1"),
            ("skiff, run 2", "/skiff_ms/1"),
        ],
        target: None,
    },
    Def {
        suite: "deploy",
        file: "deploy",
        title: "Canary deploy: Skiff's own time besides waiting on instances (lower is better)",
        unit: "ms",
        bars: &[
            ("round 1", "/rounds/0/overhead_ms"),
            ("round 2", "/rounds/1/overhead_ms"),
            ("round 3", "/rounds/2/overhead_ms"),
        ],
        target: Some(("target: < 3 s", 3000.0)),
    },
    Def {
        suite: "failover",
        file: "failover",
        title: "Regional failover under a writer (lower is better)",
        unit: "ms",
        bars: &[
            ("write unavailability", "/write_unavailability_ms_median"),
            ("time to 100% traffic", "/time_to_full_traffic_ms_median"),
        ],
        target: Some(("target: writes back < 10 s", 10_000.0)),
    },
    Def {
        suite: "telemetry",
        file: "telemetry",
        title: "OpenTelemetry: a deploy's steps with and without a collector (lower is better)",
        unit: "ms",
        bars: &[
            ("steps, no collector", "/steps_ms_median_without"),
            ("steps, collector down", "/steps_ms_median_collector_down"),
            ("exit, silent collector", "/silent_collector_exit_delay_ms"),
        ],
        target: None,
    },
    Def {
        suite: "tui",
        file: "tui",
        title: "Cockpit with 1,000 services (lower is better)",
        unit: "ms",
        bars: &[
            ("first paint", "/first_paint_ms"),
            ("key to redraw p50", "/key_to_redraw_ms/p50"),
            ("key to redraw p95", "/key_to_redraw_ms/p95"),
        ],
        target: Some(("target: p95 < 50 ms", 50.0)),
    },
    Def {
        suite: "import",
        file: "import",
        title: "Kubernetes import: objects/s (higher is better)",
        unit: "objects/s",
        bars: &[("median", "/objects_per_second_median")],
        target: Some(("target: ≥ 1,000/s", 1000.0)),
    },
];

/// Where the README shows the `local` suite's table.
pub(crate) const README_START: &str =
    "<!-- bench-local:start (generated from bench/results.json by `cargo xtask codegen`) -->\n";
pub(crate) const README_END: &str = "<!-- bench-local:end -->";

/// `readme` with the `local` suite's table (from `results`) between its markers.
pub(crate) fn readme_with_table(readme: &str, results: &Value) -> String {
    let (Some(start), Some(end)) = (readme.find(README_START), readme.find(README_END)) else {
        return readme.to_owned();
    };
    format!("{}{README_START}{}{}", &readme[..start], local_table(&results["local"]), &readme[end..])
}

/// The direct / nginx / Skiff rows of one `local` run, its ratios and where it ran.
fn local_table(local: &Value) -> String {
    let mut out = String::from("| path | req/s | p50 | p99 |\n|---|---|---|---|\n");
    for (name, key) in [("direct", "direct"), ("nginx", "via_nginx"), ("Skiff", "via_load_balancer")] {
        let row = &local[key];
        match row["requests_per_s"].as_f64() {
            Some(rps) => out.push_str(&format!(
                "| {name} | {} | {} µs | {} µs |\n",
                thousands(rps),
                row["p50_us"].as_f64().map_or("?".into(), |v| format!("{v:.0}")),
                row["p99_us"].as_f64().map_or("?".into(), |v| format!("{v:.0}")),
            )),
            None => out.push_str(&format!("| {name} | skipped (not installed) | | |\n")),
        }
    }
    if let (Some(t), Some(p)) = (
        local.pointer("/skiff_vs_nginx/requests_per_s").and_then(Value::as_f64),
        local.pointer("/skiff_vs_nginx/p99").and_then(Value::as_f64),
    ) {
        out.push_str(&format!(
            "\nSkiff/nginx: {t:.2}× the throughput (target ≥ 1.0×: {}), {p:.2}× the p99 (target ≤ 1.0×: {}).",
            if t >= 1.0 { "met" } else { "missed" },
            if p <= 1.0 { "met" } else { "missed" },
        ));
    }
    out.push_str(&format!(
        " {}; load generator: {}.\n",
        capitalized(&measured(local)),
        local["load_generator"].as_str().unwrap_or("not recorded")
    ));
    out
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// 25392.4 → "25,392".
fn thousands(v: f64) -> String {
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Draws every chart whose suite has results; returns the files written.
pub(crate) fn run(results: &serde_json::Map<String, Value>, dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    for def in CHARTS {
        let Some(suite) = results.get(def.suite) else { continue };
        let bars: Vec<(&str, f64)> =
            def.bars.iter().filter_map(|(label, ptr)| Some((*label, suite.pointer(ptr)?.as_f64()?))).collect();
        if bars.is_empty() {
            continue;
        }
        let path = dir.join(format!("{}.svg", def.file));
        draw(def, &bars, &measured(suite), &path).with_context(|| format!("draw {}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// "measured 2026-12-07 on 2 cores (AMD EPYC), 24 GiB" from the suite's `measured`.
fn measured(suite: &Value) -> String {
    match (
        suite.pointer("/measured/date").and_then(Value::as_str),
        suite.pointer("/measured/machine").and_then(Value::as_str),
    ) {
        (Some(date), Some(machine)) => format!("measured {date} on {machine}"),
        _ => "measured before dates were recorded; run `cargo xtask bench` again to date it".to_owned(),
    }
}

fn draw(def: &Def, bars: &[(&str, f64)], note: &str, path: &Path) -> Result<()> {
    let foot_height = if def.target.is_some() { 44 } else { 26 };
    let height = 84 + 42 * u32::try_from(bars.len().max(2)).unwrap_or(8) + foot_height;
    let root = SVGBackend::new(path, (860, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (chart_area, foot) = root.split_vertically(height - foot_height);
    let top = bars.iter().map(|b| b.1).chain(def.target.map(|t| t.1)).fold(0.0_f64, f64::max).max(f64::MIN_POSITIVE);
    let n = bars.len();
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(def.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(200)
        // A segmented range of 0..=last has one segment per bar (a lone bar gets an
        // empty row above it: the range cannot be empty).
        .build_cartesian_2d(0.0..top * 1.22, (0..(n - 1).max(1)).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(def.unit)
        .x_labels(6)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map_or(String::new(), |b| b.0.to_owned()),
            _ => String::new(),
        })
        .label_style(("sans-serif", 13))
        .draw()?;
    let skiff = RGBColor(31, 111, 191);
    let other = RGBColor(150, 150, 150);
    chart.draw_series(bars.iter().enumerate().map(|(i, (label, v))| {
        let color = if label.contains("skiff") { skiff } else { other };
        let mut bar = Rectangle::new([(0.0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))], color.filled());
        bar.set_margin(7, 7, 0, 0);
        bar
    }))?;
    let value_style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Text::new(format!(" {}", short(*v)), (*v, SegmentValue::CenterOf(i)), value_style.clone())
    }))?;
    let mut y = 4;
    if let Some((label, t)) = def.target {
        chart.draw_series(LineSeries::new(
            [(t, SegmentValue::Exact(0)), (t, SegmentValue::Last)],
            RED.stroke_width(2),
        ))?;
        foot.draw(&PathElement::new([(14, y + 7), (34, y + 7)], RED.stroke_width(2)))?;
        foot.draw_text(label, &("sans-serif", 12).into_font().color(&RED), (40, y))?;
        y += 18;
    }
    foot.draw_text(note, &("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)), (14, y))?;
    root.present()?;
    Ok(())
}

/// 25392.4 → "25.4k", 1.5 → "1.5", 0.2 → "0.2".
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_draws_from_results_and_skips_what_is_missing() {
        let results = serde_json::json!({
            "local": {
                "direct": {"requests_per_s": 60000.0, "p50_us": 90.0, "p99_us": 1200.0},
                "via_load_balancer": {"requests_per_s": 25000.0, "p50_us": 280.0, "p99_us": 1900.0},
                "measured": {"date": "2026-12-07", "machine": "2 cores (AMD EPYC), 24 GiB"},
            },
            "cli": {"min_ms": 30.0, "median_ms": 37.0, "p90_ms": 44.0},
        });
        let dir = std::env::temp_dir().join(format!("skiff-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = run(results.as_object().unwrap(), &dir).unwrap();
        assert_eq!(written.len(), 3, "{written:?}");
        let svg = std::fs::read_to_string(dir.join("local-throughput.svg")).unwrap();
        assert!(svg.contains("skiff load balancer") && svg.contains("25.0k"), "{svg}");
        assert!(!svg.contains("nginx reverse proxy"), "a missing row draws no bar");
        assert!(svg.contains("measured 2026-12-07 on 2 cores"), "{svg}");
        let cli = std::fs::read_to_string(dir.join("cli.svg")).unwrap();
        assert!(cli.contains("target: median &lt; 10 ms") || cli.contains("target: median < 10 ms"), "{cli}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
