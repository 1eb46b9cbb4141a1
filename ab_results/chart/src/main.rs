//! Draws the worker-count chart (ab_results/workers.svg) from the runs.tsv that
//! ab_results/run.sh writes: two panels, requests per second and server CPU µs per request,
//! against httpd's worker count on a log2 axis, one line per workload (median over the
//! rounds), and each peer server as a horizontal reference line in the workload's colour.
//!
//! Usage: `workers-chart RUNS_TSV OUT_SVG [NOTE]` (NOTE: a line under the title saying where
//! the numbers come from). Not part of httpd's build: a separate Cargo project.

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

/// The workloads run.sh runs, in its order: its name in runs.tsv, the legend's words, colour.
const MODES: [(&str, &str, RGBColor); 4] = [
    (
        "ab",
        "ab -c 100 (new connection each request)",
        RGBColor(0xd6, 0x27, 0x28),
    ),
    (
        "ab-k",
        "ab -k -c 100 (keep-alive)",
        RGBColor(0x1f, 0x77, 0xb4),
    ),
    ("wrk-c100", "wrk -c 100", RGBColor(0x2c, 0xa0, 0x2c)),
    ("wrk-c1000", "wrk -c 1000", RGBColor(0x94, 0x67, 0xbd)),
];

/// Peers and how their reference line is dashed: (name, dash length, gap), in pixels.
const PEERS: [(&str, u32, u32); 3] = [("nginx", 16, 6), ("h2o", 2, 4), ("lighttpd", 6, 4)];

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 1150;
const FONT: &str = "sans-serif";

/// One measured value per run, grouped: (workload, server, workers) → values over the rounds.
type Samples = BTreeMap<(String, String, u32), Vec<f64>>;

/// What the chart shows, read from runs.tsv: req/s and CPU µs per request.
struct Runs {
    rps: Samples,
    cpu: Samples,
}

fn read_runs(path: &str) -> Result<Runs, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("runs.tsv is empty")?
        .split('\t')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("{path}: no column {name}"))
    };
    let (wl, srv, workers) = (col("workload")?, col("server")?, col("workers")?);
    let (rps_col, cpu_col) = (col("req_s")?, col("srv_us_per_req")?);
    let mut runs = Runs {
        rps: Samples::new(),
        cpu: Samples::new(),
    };
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let field = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| format!("{path}: line {} is short", n + 2))
        };
        let key = (
            field(wl)?.to_string(),
            field(srv)?.to_string(),
            field(workers)?.parse()?,
        );
        // "-" marks a run that failed or was aborted: it has no value.
        if let Ok(v) = field(rps_col)?.parse::<f64>() {
            runs.rps.entry(key.clone()).or_default().push(v);
        }
        if let Ok(v) = field(cpu_col)?.parse::<f64>() {
            runs.cpu.entry(key).or_default().push(v);
        }
    }
    Ok(runs)
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// What one panel draws, from the medians.
struct Panel {
    title: &'static str,
    y_desc: &'static str,
    /// Per workload: httpd's (log2 workers, value) points.
    httpd: Vec<(usize, Vec<(f64, f64)>)>,
    /// Per workload and peer: the peer's value.
    peers: Vec<(usize, usize, f64)>,
    /// Whether the y labels count in thousands.
    thousands: bool,
}

impl Panel {
    fn new(samples: &Samples, title: &'static str, y_desc: &'static str, thousands: bool) -> Self {
        let mut panel = Panel {
            title,
            y_desc,
            httpd: Vec::new(),
            peers: Vec::new(),
            thousands,
        };
        for (m, (mode, _, _)) in MODES.iter().enumerate() {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter(|((w, s, _), _)| w == mode && s == "httpd")
                .filter_map(|((_, _, workers), v)| Some((f64::from(*workers).log2(), median(v)?)))
                .collect();
            if !points.is_empty() {
                panel.httpd.push((m, points));
            }
            for (p, (peer, _, _)) in PEERS.iter().enumerate() {
                let values: Vec<f64> = samples
                    .iter()
                    .filter(|((w, s, _), _)| w == mode && s == peer)
                    .flat_map(|(_, v)| v.iter().copied())
                    .collect();
                if let Some(v) = median(&values) {
                    panel.peers.push((m, p, v));
                }
            }
        }
        panel
    }

    fn y_max(&self) -> f64 {
        let httpd = self
            .httpd
            .iter()
            .flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
        let peers = self.peers.iter().map(|&(_, _, y)| y);
        httpd.chain(peers).fold(0.0, f64::max) * 1.08
    }
}

/// Largest log2(workers) on the x axis: at least 64 workers, more if measured.
fn x_max(runs: &Runs) -> f64 {
    let most = runs
        .rps
        .keys()
        .map(|(_, _, w)| *w)
        .max()
        .unwrap_or(1)
        .max(64);
    f64::from(most).log2().ceil()
}

fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    panel: &Panel,
    x_max: f64,
) -> Result<(), Box<dyn Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FONT, 22))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .margin_right(80)
        .build_cartesian_2d(-0.2..x_max + 0.2, 0.0..panel.y_max().max(1.0))?;
    let thousands = panel.thousands;
    let y_fmt = move |y: &f64| {
        if thousands && *y != 0.0 {
            format!("{}k", (y / 1000.0).round())
        } else {
            format!("{y}")
        }
    };
    let x_fmt = |x: &f64| {
        let rounded = x.round();
        if (x - rounded).abs() < 1e-6 && rounded >= 0.0 {
            format!("{}", 2u64.pow(rounded as u32))
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .y_labels(8)
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .x_desc("httpd worker threads (-w), log2 scale")
        .y_desc(panel.y_desc)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;

    // Peers first, so httpd's lines are drawn over them.
    let mut labels = Vec::new();
    for &(m, p, y) in &panel.peers {
        let (_, _, color) = MODES[m];
        let (peer, dash, gap) = PEERS[p];
        chart.draw_series(DashedLineSeries::new(
            [(-0.2, y), (x_max + 0.2, y)],
            dash,
            gap,
            color.mix(0.8).stroke_width(2),
        ))?;
        labels.push((chart.backend_coord(&(x_max + 0.2, y)), peer, color));
    }
    for (m, points) in &panel.httpd {
        let (_, _, color) = MODES[*m];
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(3),
        ))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))?;
    }
    let bottom = chart.backend_coord(&(0.0, 0.0)).1;
    label_peers(area, labels, bottom)?;
    Ok(())
}

/// Names each peer's line at its right end, in the line's colour, nudging labels apart so
/// that none overlaps another and none falls below the x axis (`bottom`, in pixels).
fn label_peers(
    area: &DrawingArea<SVGBackend, Shift>,
    mut labels: Vec<((i32, i32), &str, RGBColor)>,
    bottom: i32,
) -> Result<(), Box<dyn Error>> {
    const STEP: i32 = 13;
    labels.sort_by_key(|((_, y), _, _)| *y);
    let mut ys: Vec<i32> = labels.iter().map(|((_, y), _, _)| *y).collect();
    for i in 1..ys.len() {
        ys[i] = ys[i].max(ys[i - 1] + STEP);
    }
    // Pushed below the axis: shift the tail back up, keeping the spacing.
    let mut limit = bottom;
    for y in ys.iter_mut().rev() {
        *y = (*y).min(limit);
        limit = *y - STEP;
    }
    let (ox, oy) = area.get_base_pixel();
    for (((x, _), name, color), y) in labels.into_iter().zip(ys) {
        let style = TextStyle::from((FONT, 12))
            .color(&color)
            .pos(text_anchor::Pos::new(
                text_anchor::HPos::Left,
                text_anchor::VPos::Center,
            ));
        area.draw_text(name, &style, (x - ox + 6, y - oy))?;
    }
    Ok(())
}

/// The legend strip: workloads by colour, servers by line style.
fn draw_legend(area: &DrawingArea<SVGBackend, Shift>) -> Result<(), Box<dyn Error>> {
    let text = TextStyle::from((FONT, 15))
        .color(&BLACK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Left,
            text_anchor::VPos::Center,
        ));
    let gray = RGBColor(0x44, 0x44, 0x44);
    let y = 12;
    area.draw_text("httpd (solid):", &text, (20, y))?;
    let mut x = 140;
    for (_, words, color) in MODES {
        area.draw(&PathElement::new(
            [(x, y), (x + 30, y)],
            color.stroke_width(3),
        ))?;
        area.draw(&Circle::new((x + 15, y), 5, color.filled()))?;
        area.draw_text(words, &text, (x + 38, y))?;
        x += 38 + 7 * words.len() as i32 + 26;
    }
    let y = 40;
    area.draw_text("peers (one core each):", &text, (20, y))?;
    let mut x = 200;
    for (peer, dash, gap) in PEERS {
        dashes(area, (x, y), 50, (dash, gap), gray)?;
        area.draw_text(peer, &text, (x + 58, y))?;
        x += 150;
    }
    area.draw_text(
        "a horizontal line per workload, in its colour",
        &text.color(&RGBColor(0x55, 0x55, 0x55)),
        (x + 10, y),
    )?;
    Ok(())
}

/// A dashed horizontal line in pixel coordinates (the legend's sample of a peer's line).
fn dashes(
    area: &DrawingArea<SVGBackend, Shift>,
    (x, y): (i32, i32),
    len: i32,
    (dash, gap): (u32, u32),
    color: RGBColor,
) -> Result<(), Box<dyn Error>> {
    let (dash, gap) = (dash as i32, gap as i32);
    let mut from = x;
    while from < x + len {
        let to = (from + dash).min(x + len);
        area.draw(&PathElement::new(
            [(from, y), (to, y)],
            color.stroke_width(2),
        ))?;
        from = to + gap;
    }
    Ok(())
}

fn draw(runs: &Runs, out: &str, note: &str) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(120);
    top.draw_text(
        "httpd: throughput and CPU per request against worker count (1 KiB file, loopback)",
        &TextStyle::from((FONT, 24)).color(&BLACK),
        (20, 10),
    )?;
    top.draw_text(
        note,
        &TextStyle::from((FONT, 13)).color(&RGBColor(0x55, 0x55, 0x55)),
        (20, 42),
    )?;
    draw_legend(&top.shrink((0, 62), (WIDTH, 58)))?;
    let (upper, lower) = body.split_vertically((HEIGHT - 120) / 2);
    let x_max = x_max(runs);
    draw_panel(
        &upper,
        &Panel::new(
            &runs.rps,
            "Requests per second (higher is better)",
            "requests/s",
            true,
        ),
        x_max,
    )?;
    draw_panel(
        &lower,
        &Panel::new(
            &runs.cpu,
            "Server CPU time per request (lower is better)",
            "CPU µs per request (user+system)",
            false,
        ),
        x_max,
    )?;
    root.present()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(tsv), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: workers-chart RUNS_TSV OUT_SVG [NOTE]");
        return ExitCode::from(2);
    };
    let note = args.get(3).map_or("", String::as_str);
    match read_runs(tsv).and_then(|runs| draw(&runs, out, note)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workers-chart: {e}");
            ExitCode::FAILURE
        }
    }
}
