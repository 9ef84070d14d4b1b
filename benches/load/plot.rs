//! The load tool's picture (SVG): each phase's ratio to its reference as a bar, labelled
//! with both rates; latency percentiles and rates against the number of client threads.

use std::path::Path;

use plotters::prelude::*;

/// One phase: the daemon's rate and its reference's (another server's, or the argon2
/// bound), and the target ratio.
pub struct Bar {
    pub name: String,
    pub rate: f64,
    pub reference: f64,
    pub reference_name: &'static str,
    pub target: Option<f64>,
}

/// One measurement of a persistent-connection phase at a client count.
pub struct Point {
    /// e.g. "policy postern", "policy reference".
    pub series: String,
    pub clients: usize,
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

pub fn write(path: &Path, title: &str, bars: &[Bar], points: &[Point]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let height = 120 + 34 * bars.len() as u32 + if points.is_empty() { 0 } else { 420 };
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|x| e(&x))?;
    let (top, bottom) = if points.is_empty() {
        (root.clone(), None)
    } else {
        let (t, b) = root.split_vertically(height - 420 - 30);
        (t, Some(b))
    };

    // Ratios, one bar per phase, the rates written next to it.
    let n = bars.len().max(1) as f64;
    let max = bars
        .iter()
        .map(|b| b.rate / b.reference)
        .fold(1.2f64, f64::max)
        .min(3.0);
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .caption(
            "ratio to the reference measured in the same run (1.0 = the reference's rate)",
            ("sans-serif", 15),
        )
        .build_cartesian_2d(0f64..max * 1.9, 0f64..n)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .disable_y_mesh()
        .disable_y_axis()
        .x_labels(12)
        .x_label_formatter(&|v| {
            if *v <= max {
                format!("{v:.1}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    for (i, b) in bars.iter().enumerate() {
        let y = n - i as f64 - 1.0;
        let ratio = b.rate / b.reference;
        let color = match b.target {
            Some(t) if ratio < t => PALETTE[3],
            _ => PALETTE[0],
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + 0.15), (ratio.min(max), y + 0.85)],
                color.filled(),
            )))
            .map_err(|x| e(&x))?;
        if let Some(t) = b.target {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(t, y + 0.05), (t, y + 0.95)],
                    BLACK.stroke_width(2),
                )))
                .map_err(|x| e(&x))?;
        }
        let target = b.target.map_or(String::new(), |t| format!(", target {t}"));
        let label = format!(
            "{}: {} = {ratio:.2} x {} {}{target}",
            b.name,
            rate(b.rate),
            b.reference_name,
            rate(b.reference)
        );
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (ratio.min(max) + 0.03, y + 0.62),
                ("sans-serif", 13),
            )))
            .map_err(|x| e(&x))?;
    }

    // Latency percentiles and rates against the number of client threads.
    if let Some(bottom) = bottom {
        let (left, right) = bottom.split_horizontally(550);
        let clients_max = points.iter().map(|p| p.clients).max().unwrap_or(1) as f64;
        let mut series: Vec<&str> = points.iter().map(|p| p.series.as_str()).collect();
        series.dedup();
        series.sort_unstable();
        series.dedup();
        let lat_max = points.iter().map(|p| p.p99_us).fold(10.0f64, f64::max) * 1.2;
        let mut lat = ChartBuilder::on(&left)
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .caption("latency (µs): p50 solid, p99 dashed", ("sans-serif", 15))
            .build_cartesian_2d(
                (0.8f64..clients_max * 1.25).log_scale(),
                (5f64..lat_max).log_scale(),
            )
            .map_err(|x| e(&x))?;
        lat.configure_mesh()
            .max_light_lines(0)
            .x_desc("client threads")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|x| e(&x))?;
        let rate_max = points.iter().map(|p| p.rate).fold(10.0f64, f64::max) * 1.15;
        let mut thr = ChartBuilder::on(&right)
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .caption("requests per second", ("sans-serif", 15))
            .build_cartesian_2d((0.8f64..clients_max * 1.25).log_scale(), 0f64..rate_max)
            .map_err(|x| e(&x))?;
        thr.configure_mesh()
            .max_light_lines(0)
            .x_desc("client threads")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| rate(*v))
            .draw()
            .map_err(|x| e(&x))?;
        for (k, s) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mut pts: Vec<&Point> = points.iter().filter(|p| p.series == *s).collect();
            pts.sort_by_key(|p| p.clients);
            let style = if s.ends_with("reference") {
                color.stroke_width(1)
            } else {
                color.stroke_width(3)
            };
            lat.draw_series(LineSeries::new(
                pts.iter().map(|p| (p.clients as f64, p.p50_us.max(5.0))),
                style,
            ))
            .map_err(|x| e(&x))?
            .label(*s)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            lat.draw_series(DashedLineSeries::new(
                pts.iter().map(|p| (p.clients as f64, p.p99_us.max(5.0))),
                6,
                4,
                style,
            ))
            .map_err(|x| e(&x))?;
            thr.draw_series(LineSeries::new(
                pts.iter().map(|p| (p.clients as f64, p.rate)),
                style,
            ))
            .map_err(|x| e(&x))?
            .label(*s)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        lat.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// A rate as people write it: 43 606/s, 61.3/s.
pub fn rate(r: f64) -> String {
    if r >= 100.0 {
        let s = format!("{:.0}", r);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push('\u{2009}');
            }
            out.push(c);
        }
        out + "/s"
    } else {
        format!("{r:.1}/s")
    }
}
