//! Line charts as SVG or PNG: accuracy against keep fraction (`sweep`), accuracy per round (`retrain`).
//!
//! The SVG is written by hand rather than with a plotting crate: a few dozen lines of text, byte-for-byte the same for
//! the same data. A PNG is that SVG rendered by resvg (pure Rust) at twice the size, its text set in DejaVu Sans,
//! which is built into the binary (`assets/`, Bitstream Vera licence), so no system font is needed and the pixels
//! are the same on every machine.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use resvg::{tiny_skia, usvg};

/// The font PNG text is set in.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Pixels per SVG unit in a PNG.
const PNG_SCALE: f32 = 2.0;

/// The formats a plot is written in, by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    /// `.svg`
    Svg,
    /// `.png`
    Png,
}

/// The format a plot file name asks for; refuses other names before any work starts.
pub fn check_plot_name(path: &Path) -> anyhow::Result<PlotFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok(PlotFormat::Svg),
        Some("png") => Ok(PlotFormat::Png),
        _ => anyhow::bail!(
            "{}: a plot is written as SVG or PNG: give a .svg or .png file name",
            path.display()
        ),
    }
}

/// Writes `chart` to `path` (atomically) in the format its extension names.
pub fn write(path: &Path, chart: &LineChart) -> anyhow::Result<()> {
    let bytes = match check_plot_name(path)? {
        PlotFormat::Svg => chart.to_svg().into_bytes(),
        PlotFormat::Png => chart.to_png()?,
    };
    outfile::write_atomic(path, |out| out.write_all(&bytes))?;
    Ok(())
}

/// One named line of (x, y) points.
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A chart with axes, a title and a legend.
pub struct LineChart {
    /// The title above the plot.
    pub title: String,
    /// The x axis label.
    pub x_label: String,
    /// The y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// Colours for the lines, in order (a colour-blind-safe palette).
const PALETTE: &[&str] = &[
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

/// About five round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Range of the values, padded a little so lines do not sit on the frame.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A tick label without float noise (`0.30000000000000004` prints as `0.3`).
fn label(value: f64) -> String {
    let text = format!("{:.6}", value);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

impl LineChart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let (x_lo, x_hi) = range(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
        let (y_lo, y_hi) = range(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w;
        let sy = |y: f64| TOP + (1.0 - (y - y_lo) / (y_hi - y_lo)) * plot_h;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );
        for x in ticks(x_lo, x_hi) {
            let px = sx(x);
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                label(x)
            );
        }
        for y in ticks(y_lo, y_hi) {
            let py = sy(y);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                py + 4.0,
                label(y)
            );
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let points: Vec<String> = series
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                points.join(" ")
            );
            for point in &points {
                let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
            }
            let ly = TOP + 10.0 + 20.0 * i as f64;
            let lx = WIDTH - RIGHT + 15.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }

    /// The chart as a PNG image: the SVG rendered at twice its size with the built-in font.
    pub fn to_png(&self) -> anyhow::Result<Vec<u8>> {
        let mut fonts = usvg::fontdb::Database::new();
        fonts.load_font_data(FONT.to_vec());
        fonts.set_sans_serif_family("DejaVu Sans");
        let options = usvg::Options {
            fontdb: Arc::new(fonts),
            font_family: "DejaVu Sans".into(),
            ..Default::default()
        };
        let tree = usvg::Tree::from_str(&self.to_svg(), &options)?;
        let (w, h) = (
            (WIDTH as f32 * PNG_SCALE).round() as u32,
            (HEIGHT as f32 * PNG_SCALE).round() as u32,
        );
        let mut pixmap = tiny_skia::Pixmap::new(w, h).ok_or_else(|| anyhow::anyhow!("cannot make a {w}x{h} image"))?;
        resvg::render(
            &tree,
            tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
            &mut pixmap.as_mut(),
        );
        Ok(pixmap.encode_png()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let t = ticks(0.93, 0.99);
        assert!(t.len() >= 3 && t.len() <= 7, "{t:?}");
        assert!(t.iter().all(|v| (0.93..=0.99).contains(v)));
        assert_eq!(label(0.30000000000000004), "0.3");
        assert_eq!(label(-0.0), "0");
    }

    #[test]
    fn svg_has_a_line_per_series_and_escapes_names() {
        let chart = LineChart {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![
                Series {
                    name: "conv1".into(),
                    points: vec![(0.3, 0.9), (0.5, 0.95)],
                },
                Series {
                    name: "ip1&2".into(),
                    points: vec![(0.1, 0.5)],
                },
            ],
        };
        let svg = chart.to_svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("a &lt; b") && svg.contains("ip1&amp;2"));
        assert_eq!(svg, chart.to_svg(), "same data, same bytes");
    }

    #[test]
    fn png_is_the_chart_with_its_text_drawn() {
        let chart = |title: &str| LineChart {
            title: title.into(),
            x_label: "keep fraction".into(),
            y_label: "top-1".into(),
            series: vec![Series {
                name: "conv1".into(),
                points: vec![(0.3, 0.9), (0.5, 0.95)],
            }],
        };
        let png = chart("Title").to_png().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, right after the signature and the chunk header.
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((w, h), (1440, 880));
        assert_eq!(png, chart("Title").to_png().unwrap(), "same data, same bytes");
        // The title is drawn from the built-in font: another title, other pixels; no title, fewer dark pixels.
        let decode = |png: &[u8]| tiny_skia::Pixmap::decode_png(png).unwrap();
        let dark = |p: &tiny_skia::Pixmap| p.pixels().iter().filter(|c| c.red() < 128).count();
        let (titled, untitled) = (decode(&png), decode(&chart("").to_png().unwrap()));
        assert!(
            dark(&titled) > dark(&untitled) + 100,
            "{} vs {}",
            dark(&titled),
            dark(&untitled)
        );
    }

    #[test]
    fn plot_names_pick_the_format() {
        assert_eq!(check_plot_name(Path::new("a.svg")).unwrap(), PlotFormat::Svg);
        assert_eq!(check_plot_name(Path::new("a.PNG")).unwrap(), PlotFormat::Png);
        let e = check_plot_name(Path::new("a.pdf")).unwrap_err().to_string();
        assert!(e.contains("SVG or PNG"), "{e}");
    }
}
