//! The soak's resource plot: what "flat" is judged on, one panel each for
//! server RSS and descriptors, server CPU, traffic, and error counters,
//! over the same time axis.
use std::path::Path;

use plotters::prelude::*;

use super::plot::font;
use super::Window;

type Res = Result<(), Box<dyn std::error::Error>>;

/// One line of a panel: its name, its colour, its value in a window.
type Line<'a> = (&'a str, RGBColor, &'a dyn Fn(&Window) -> f64);

/// `soak-resources.png`: four panels over time.
pub fn resources(windows: &[Window], path: &Path) -> Res {
    let text = font();
    let root = BitMapBackend::new(path, (1200, 1100)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((4, 1));
    let per_sec = |w: &Window, n: u64| n as f64 / span(windows, w);
    let rss = |w: &Window| w.server_rss as f64 / 1048576.0;
    let heap = |w: &Window| w.server_heap as f64 / 1048576.0;
    let fds = |w: &Window| w.server_fds as f64 / 1000.0;
    let cpu = |w: &Window| w.server_cpu_pct;
    let accepted = |w: &Window| per_sec(w, w.accepted);
    let rooms = |w: &Window| per_sec(w, w.room_deliveries);
    let connected = |w: &Window| w.connected as f64 / 1000.0;
    let errors = |w: &Window| w.errors as f64;
    let store = |w: &Window| w.store_errors as f64;
    let slow = |w: &Window| w.slow_closes as f64;
    let gaps = |w: &Window| w.gaps as f64;
    let failed = |w: &Window| w.failed as f64;
    let rows: [(&str, Vec<Line>); 4] = [
        (
            "server RSS MiB (red), live heap MiB (magenta), descriptors x1000 (black), connections x1000 (blue)",
            vec![
                ("rss", RED, &rss),
                ("heap", MAGENTA, &heap),
                ("fds", BLACK, &fds),
                ("connected", BLUE, &connected),
            ],
        ),
        ("server CPU, % of one core", vec![("cpu", BLUE, &cpu)]),
        (
            "per second: direct QoS 1 accepted (blue), QoS 0 room deliveries (green)",
            vec![("accepted", BLUE, &accepted), ("rooms", GREEN, &rooms)],
        ),
        (
            "per window: error frames (red), store errors (magenta), slow-consumer closes (blue), gaps (green), failed connects (black)",
            vec![
                ("errors", RED, &errors),
                ("store", MAGENTA, &store),
                ("slow", BLUE, &slow),
                ("gaps", GREEN, &gaps),
                ("failed", BLACK, &failed),
            ],
        ),
    ];
    for (area, (caption, lines)) in panels.iter().zip(rows) {
        panel(area, windows, caption, &lines, text)?;
    }
    root.present()?;
    Ok(())
}

/// Seconds covered by window `w` (the first one starts at 0).
fn span(windows: &[Window], w: &Window) -> f64 {
    let prev = windows
        .iter()
        .take_while(|x| x.t < w.t)
        .last()
        .map_or(0.0, |x| x.t);
    (w.t - prev).max(1e-6)
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    windows: &[Window],
    caption: &str,
    lines: &[Line],
    text: bool,
) -> Res {
    let t_max = windows.last().map_or(1.0, |w| w.t).max(1.0);
    let y_max = lines
        .iter()
        .flat_map(|(_, _, f)| windows.iter().map(f))
        .fold(1.0f64, f64::max);
    let mut b = ChartBuilder::on(area);
    b.margin(12).x_label_area_size(30).y_label_area_size(60);
    if text {
        b.caption(caption, ("sans-serif", 15));
    }
    let mut chart = b.build_cartesian_2d(0.0..t_max, 0.0..y_max * 1.15)?;
    if text {
        chart.configure_mesh().x_desc("seconds").draw()?;
    } else {
        chart.configure_mesh().x_labels(0).y_labels(0).draw()?;
    }
    for (_, colour, f) in lines {
        chart.draw_series(LineSeries::new(windows.iter().map(|w| (w.t, f(w))), colour))?;
    }
    Ok(())
}
