//! PNG plots with plotters: connections and server RSS over time, and the
//! latency percentile curve. Text needs a TrueType font: DejaVu Sans from
//! the system (Debian `fonts-dejavu-core`) is registered once; without it
//! the plots are drawn with no text.
use std::path::Path;
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::Window;
use crate::monitor::Sample;

type Res = Result<(), Box<dyn std::error::Error>>;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Whether a font is registered (text can be drawn).
pub(super) fn font() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        for path in FONTS {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Connections (left axis) and server RSS in MiB (right axis) over time.
pub fn timeline(samples: &[Sample], path: &Path) -> Res {
    let text = font();
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let c_max = samples
        .iter()
        .map(|s| s.connected)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let r_max = samples
        .iter()
        .map(|s| s.server_rss)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1048576.0;
    let mut b = ChartBuilder::on(&root);
    b.margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70);
    if text {
        b.caption(
            "connections (blue) and server RSS MiB (red)",
            ("sans-serif", 20),
        );
    }
    let mut chart = b
        .build_cartesian_2d(0.0..t_max, 0.0..c_max * 1.05)?
        .set_secondary_coord(0.0..t_max, 0.0..r_max * 1.05);
    if text {
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("connections")
            .draw()?;
        chart.configure_secondary_axes().y_desc("RSS MiB").draw()?;
    } else {
        chart.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    chart.draw_series(LineSeries::new(
        samples.iter().map(|s| (s.t, s.connected as f64)),
        &BLUE,
    ))?;
    chart.draw_secondary_series(LineSeries::new(
        samples
            .iter()
            .map(|s| (s.t, s.server_rss as f64 / 1048576.0)),
        &RED,
    ))?;
    root.present()?;
    Ok(())
}

/// Latency (us, log scale) against percentile, 1/(1-q) on a log axis.
pub fn latency(h: &Histogram<u64>, path: &Path) -> Res {
    let text = font();
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    // x: log10 of 1/(1-q): 0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99
    let points: Vec<(f64, f64)> = (0..=400)
        .map(|i| {
            let x = f64::from(i) / 100.0;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q).max(1) as f64)
        })
        .collect();
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let y_min = (points.iter().map(|p| p.1).fold(f64::MAX, f64::min) / 1.5).max(1.0);
    let mut b = ChartBuilder::on(&root);
    b.margin(15).x_label_area_size(40).y_label_area_size(70);
    if text {
        b.caption("latency (us) by percentile", ("sans-serif", 20));
    }
    let mut chart = b.build_cartesian_2d(0.0..4.0, (y_min..y_max).log_scale())?;
    if text {
        chart
            .configure_mesh()
            .x_desc("percentile")
            .x_labels(5)
            .y_desc("us")
            .x_label_formatter(&|x: &f64| match x.round() as i64 {
                0 => "p0".into(),
                1 => "p90".into(),
                2 => "p99".into(),
                3 => "p99.9".into(),
                4 => "p99.99".into(),
                _ => String::new(),
            })
            .draw()?;
    } else {
        chart.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    chart.draw_series(LineSeries::new(points, &BLUE))?;
    root.present()?;
    Ok(())
}

/// A long run's windows: latency p50 and p99 (us, log scale, left) and
/// server RSS in MiB (right) over time; cuts as grey ticks at the bottom.
pub fn soak(windows: &[Window], path: &Path) -> Res {
    let text = font();
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let t_max = windows.last().map_or(1.0, |w| w.t).max(1.0);
    let l_max = windows.iter().map(|w| w.p99_us).max().unwrap_or(1).max(10) as f64 * 2.0;
    let r_max = windows
        .iter()
        .map(|w| w.server_rss)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1048576.0;
    let mut b = ChartBuilder::on(&root);
    b.margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70);
    if text {
        b.caption(
            "latency p50 (blue) and p99 (purple), us; server RSS MiB (red); cuts (grey)",
            ("sans-serif", 18),
        );
    }
    let mut chart = b
        .build_cartesian_2d(0.0..t_max, (10.0..l_max).log_scale())?
        .set_secondary_coord(0.0..t_max, 0.0..r_max * 1.2);
    if text {
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("us")
            .draw()?;
        chart.configure_secondary_axes().y_desc("RSS MiB").draw()?;
    } else {
        chart.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    let series = |f: fn(&Window) -> u64| {
        windows
            .iter()
            .filter(|w| f(w) > 0)
            .map(move |w| (w.t, f(w) as f64))
            .collect::<Vec<_>>()
    };
    chart.draw_series(LineSeries::new(series(|w| w.p50_us), &BLUE))?;
    chart.draw_series(LineSeries::new(series(|w| w.p99_us), &MAGENTA))?;
    chart.draw_series(
        windows
            .iter()
            .filter(|w| w.cuts > 0)
            .map(|w| PathElement::new(vec![(w.t, 10.0), (w.t, 14.0)], BLACK.mix(0.4))),
    )?;
    chart.draw_secondary_series(LineSeries::new(
        windows
            .iter()
            .map(|w| (w.t, w.server_rss as f64 / 1048576.0)),
        &RED,
    ))?;
    root.present()?;
    Ok(())
}
