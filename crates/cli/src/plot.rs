//! Grouped bar charts with ± sd error bars (plotters), as SVG or PNG by the file's extension.
//!
//! Text needs a TrueType font: DejaVu Sans or Liberation Sans from the usual system directories, else the DejaVu
//! Sans subset built into the binary (Latin-1 and common punctuation;
//! `assets/DejaVu-LICENSE.txt`).

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// One bar per category; `None` where the series has no value for it.
pub struct Series {
    pub name: String,
    /// (mean, sd) per category.
    pub values: Vec<Option<(f64, f64)>>,
}

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Svg,
    Png,
}

fn kind(path: &Path) -> Result<Kind> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok(Kind::Svg),
        Some("png") => Ok(Kind::Png),
        _ => bail!("plot file {} must end in .svg or .png", path.display()),
    }
}

/// Fails early (before a long run) on a plot path that cannot be written.
pub fn check_plot_path(path: &Path) -> Result<()> {
    kind(path)?;
    register_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!(
                "plot file {}: directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// DejaVu Sans, subset to Latin-1 and common punctuation (24 KB): the font of last resort.
const BUILTIN_FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

fn register_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        plotters::style::register_font("sans-serif", FontStyle::Normal, BUILTIN_FONT)
            .map_err(|_| "the built-in font does not load".to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws `series` as grouped bars over `categories`, with error bars of ± sd.
pub fn bar_chart(path: &Path, title: &str, categories: &[String], series: &[Series]) -> Result<()> {
    if categories.is_empty() || series.is_empty() {
        bail!("nothing to plot");
    }
    register_font()?;
    // Room for each category's label (about 7 px a character at 13 px) and its bars.
    let label_w = categories.iter().map(|c| c.chars().count()).max().unwrap_or(8) as u32 * 7 + 24;
    let per_cat = label_w.max(90 * series.len() as u32);
    let width = (160 + per_cat * categories.len() as u32).clamp(640, 4000);
    match kind(path)? {
        Kind::Svg => draw(
            SVGBackend::new(path, (width, 520)).into_drawing_area(),
            title,
            categories,
            series,
        ),
        Kind::Png => draw(
            BitMapBackend::new(path, (width, 520)).into_drawing_area(),
            title,
            categories,
            series,
        ),
    }
    .with_context(|| format!("drawing {}", path.display()))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    categories: &[String],
    series: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .map(|&(m, sd)| m + sd)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let n = categories.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(err)?;
    let cats = categories.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&move |x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 && i < cats.len() {
                cats[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc("tokens / s")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let k = series.len() as f64;
    let bar_w = 0.8 / k;
    for (si, s) in series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let bars = s.values.iter().enumerate().filter_map(|(ci, v)| {
            v.map(|(m, _)| {
                let x0 = ci as f64 + 0.1 + si as f64 * bar_w;
                Rectangle::new([(x0, 0.0), (x0 + bar_w * 0.9, m)], color.filled())
            })
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let errs = s.values.iter().enumerate().filter_map(|(ci, v)| {
            v.map(|(m, sd)| {
                let xc = ci as f64 + 0.1 + si as f64 * bar_w + bar_w * 0.45;
                ErrorBar::new_vertical(xc, (m - sd).max(0.0), m, m + sd, BLACK.stroke_width(1), 8)
            })
        });
        chart.draw_series(errs).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_font_loads_and_draws_a_chart() {
        assert!(plotters::style::register_font("sans-serif", FontStyle::Normal, BUILTIN_FONT).is_ok());
        let dir = std::env::temp_dir().join(format!("quarrel-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        let series = [Series {
            name: "quarrel".into(),
            values: vec![Some((10.0, 1.0)), None, Some((5.5, 0.2))],
        }];
        let cats = ["pp512 t2".to_string(), "tg128 t2".into(), "pp512 t1 ±".into()];
        bar_chart(&path, "tokens / s", &cats, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("pp512 t1"));
        assert!(bar_chart(&dir.join("chart.gif"), "x", &cats, &series).is_err());
    }
}
