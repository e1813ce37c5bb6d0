//! `upgrade.png`: ping round trips by send time (p50, p99, max; log scale)
//! with each upgrade's window shaded, then each server process's RSS and
//! CPU over the same time axis.
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::plot::font;
use super::upgrade::{ProcPoint, Timeline};

type Res = Result<(), Box<dyn std::error::Error>>;

/// One colour per process, in the order they appear (none yellow: the
/// upgrade windows are shaded yellow).
const COLORS: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];

/// The three panels, stacked.
pub fn upgrade(t: &Timeline, path: &Path) -> Res {
    let root = BitMapBackend::new(path, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let t_min = t
        .rtt
        .first()
        .map(|p| p.t)
        .into_iter()
        .chain(t.procs.first().map(|p| p.t))
        .fold(f64::MAX, f64::min)
        .min(t.windows.first().map_or(f64::MAX, |w| w.0));
    let t_max = t
        .rtt
        .last()
        .map(|p| p.t)
        .into_iter()
        .chain(t.procs.last().map(|p| p.t))
        .fold(0.0, f64::max);
    let (t_min, t_max) = match t_min < t_max {
        true => (t_min, t_max),
        false => (0.0, 1.0),
    };
    let panels = root.split_evenly((3, 1));
    if let [rtt, rss, cpu] = panels.as_slice() {
        rtt_panel(t, rtt, t_min..t_max)?;
        proc_panel(t, rss, t_min..t_max, Measure::Rss)?;
        proc_panel(t, cpu, t_min..t_max, Measure::Cpu)?;
    }
    root.present()?;
    Ok(())
}

fn rtt_panel(
    t: &Timeline,
    area: &DrawingArea<BitMapBackend, Shift>,
    x: std::ops::Range<f64>,
) -> Res {
    let text = font();
    let ms = |us: u64| us.max(1) as f64 / 1000.0;
    let y_max = t.rtt.iter().map(|p| ms(p.us.max)).fold(1.0, f64::max) * 2.0;
    let y_min = (t.rtt.iter().map(|p| ms(p.us.p50)).fold(y_max, f64::min) / 2.0).max(0.01);
    let mut b = ChartBuilder::on(area);
    b.margin(12).x_label_area_size(35).y_label_area_size(70);
    if text {
        b.caption(
            "ping round trip by send time, ms: p50 (blue), p99 (purple), max (red); upgrades shaded",
            ("sans-serif", 17),
        );
    }
    let mut chart = b.build_cartesian_2d(x, (y_min..y_max).log_scale())?;
    if text {
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .draw()?;
    } else {
        chart.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    chart.draw_series(t.windows.iter().map(|&(a, b)| {
        // At least a pixel's worth wide: a fast upgrade is still seen.
        Rectangle::new(
            [(a, y_min), (b.max(a + 0.05), y_max)],
            YELLOW.mix(0.5).filled(),
        )
    }))?;
    chart.draw_series(
        t.windows
            .iter()
            .map(|&(a, _)| PathElement::new(vec![(a, y_min), (a, y_max)], BLACK.mix(0.6))),
    )?;
    let series = |f: fn(&super::Pcts) -> u64| {
        t.rtt
            .iter()
            .filter(|p| p.us.count > 0)
            .map(move |p| (p.t, ms(f(&p.us))))
            .collect::<Vec<_>>()
    };
    chart.draw_series(LineSeries::new(series(|p| p.p50), &BLUE))?;
    chart.draw_series(LineSeries::new(series(|p| p.p99), &MAGENTA))?;
    chart.draw_series(LineSeries::new(series(|p| p.max), &RED))?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Measure {
    Rss,
    Cpu,
}

/// Each pid's points, in order of first appearance.
fn by_pid(points: &[ProcPoint]) -> Vec<(u32, Vec<ProcPoint>)> {
    let mut out: Vec<(u32, Vec<ProcPoint>)> = Vec::new();
    for p in points {
        match out.iter_mut().find(|(pid, _)| *pid == p.pid) {
            Some((_, v)) => v.push(*p),
            None => out.push((p.pid, vec![*p])),
        }
    }
    out
}

/// CPU percent of one core between points at least half a second apart,
/// at most every core's: an exiting process's threads add their CPU time
/// as they exit, so its last reading can jump past what the interval held.
fn cpu_percent(points: &[ProcPoint]) -> Vec<(f64, f64)> {
    let cap = 100.0 * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut out = Vec::new();
    let mut from: Option<ProcPoint> = None;
    for p in points {
        match from {
            None => from = Some(*p),
            Some(f) if p.t - f.t >= 0.5 => {
                let pct = 100.0 * (p.cpu - f.cpu).max(0.0) / (p.t - f.t);
                out.push((p.t, pct.min(cap)));
                from = Some(*p);
            }
            Some(_) => {}
        }
    }
    out
}

fn proc_panel(
    t: &Timeline,
    area: &DrawingArea<BitMapBackend, Shift>,
    x: std::ops::Range<f64>,
    what: Measure,
) -> Res {
    let text = font();
    let pids = by_pid(&t.procs);
    let series: Vec<(u32, Vec<(f64, f64)>)> = pids
        .iter()
        .map(|(pid, pts)| {
            let s = match what {
                Measure::Rss => pts
                    .iter()
                    .map(|p| (p.t, p.rss as f64 / 1048576.0))
                    .collect(),
                Measure::Cpu => cpu_percent(pts),
            };
            (*pid, s)
        })
        .collect();
    let y_max = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let (caption, unit) = match what {
        Measure::Rss => ("server RSS by process, MiB", "MiB"),
        Measure::Cpu => (
            "server CPU by process, % of one core (an exiting process's last point may be high)",
            "%",
        ),
    };
    let mut b = ChartBuilder::on(area);
    b.margin(12).x_label_area_size(35).y_label_area_size(70);
    if text {
        b.caption(caption, ("sans-serif", 17));
    }
    let mut chart = b.build_cartesian_2d(x, 0.0..y_max)?;
    if text {
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .draw()?;
    } else {
        chart.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    chart.draw_series(t.windows.iter().map(|&(a, b)| {
        Rectangle::new(
            [(a, 0.0), (b.max(a + 0.05), y_max)],
            YELLOW.mix(0.5).filled(),
        )
    }))?;
    for (i, (pid, s)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()].to_rgba();
        let drawn = chart.draw_series(LineSeries::new(s, color.stroke_width(2)))?;
        if text {
            drawn.label(format!("pid {pid}")).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text && !pids.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    Ok(())
}
