//! Grouped bar charts and line charts as SVG, the one drawing code of the command:
//! `pymalloc compare --svg` draws its time ratios with it, `pymalloc inspect --watch --svg`
//! its timeline (as lines), and `pymalloc chart` draws what another tool describes in a few
//! lines of text (`python -m pymalloc_rs --report-svg` does).

use crate::fail;
use clap::Parser;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// Bar colours, one per series (repeating after six).
const COLORS: [&str; 6] = [
    "#888888", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e",
];

/// One chart: groups along the x axis, one value per series in each group, drawn as a bar
/// each, or (`lines`) as one line per series through its groups' values.
pub struct BarChart {
    pub title: String,
    /// The series' names, in the legend.
    pub series: Vec<String>,
    /// Each group's label (the first 24 characters are drawn) and one value per series.
    pub groups: Vec<(String, Vec<f64>)>,
    /// A dashed line across at this value, labelled (compare's 1.0), if any.
    pub reference: Option<f64>,
    /// Lines instead of bars, with a label on every few groups only (a timeline).
    pub lines: bool,
}

/// Escapes text for SVG.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl BarChart {
    /// The chart as an `<svg>` element at height `top_y` of its document, and its width
    /// and height in pixels.
    fn element(&self, top_y: f64) -> (String, f64, f64) {
        let (bar, gap, h, top, left) = (14.0, 18.0, 260.0, 40.0, 60.0);
        let n = self.series.len().max(1) as f64;
        // A line chart spreads its groups over a fixed width.
        let group = if self.lines {
            660.0 / (self.groups.len().max(2) - 1) as f64
        } else {
            bar * n + gap
        };
        // Wide enough for the bars and for the legend (120 px a series).
        let width = (left + group * self.groups.len() as f64).max(left + 120.0 * n) + 20.0;
        let height = top + h + 110.0;
        let max = self
            .groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(self.reference.map_or(0.0, |r| r * 1.2), f64::max)
            .max(f64::MIN_POSITIVE);
        let y = |r: f64| top + h - r / max * h;
        let mut s = format!(
            "<svg y=\"{top_y}\" width=\"{width}\" height=\"{height}\">\n<text x=\"{left}\" y=\"20\" font-size=\"14\">{}</text>\n",
            escape(&self.title)
        );
        match self.reference {
            Some(r) => s.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y1}\" y2=\"{y1}\" stroke=\"black\" stroke-dasharray=\"4\"/><text x=\"5\" y=\"{y1}\">{r:.1}</text>\n",
                width - 10.0,
                y1 = y(r)
            )),
            None => s.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" stroke=\"black\"/><text x=\"5\" y=\"{}\">{}</text><text x=\"5\" y=\"{}\">0</text>\n",
                top + h,
                top + 4.0,
                short_number(max),
                top + h
            )),
        }
        if self.lines {
            for (c, name) in self.series.iter().enumerate() {
                let points: Vec<String> = self
                    .groups
                    .iter()
                    .enumerate()
                    .filter_map(|(j, (_, v))| {
                        Some(format!(
                            "{:.1},{:.1}",
                            left + j as f64 * group,
                            y(*v.get(c)?)
                        ))
                    })
                    .collect();
                s.push_str(&format!(
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"><title>{}</title></polyline>\n",
                    points.join(" "),
                    COLORS[c % COLORS.len()],
                    escape(name)
                ));
            }
        }
        // A line chart labels about a dozen of its groups.
        let every = if self.lines {
            self.groups.len().div_ceil(12).max(1)
        } else {
            1
        };
        for (j, (label, values)) in self.groups.iter().enumerate() {
            let x0 = left + j as f64 * group;
            if self.lines {
                if j % every == 0 {
                    s.push_str(&format!(
                        "<text transform=\"translate({:.1},{:.1}) rotate(40)\">{}</text>\n",
                        x0,
                        top + h + 12.0,
                        escape(label)
                    ));
                }
                continue;
            }
            for (c, (&v, name)) in values.iter().zip(&self.series).enumerate() {
                s.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect>\n",
                    x0 + c as f64 * bar,
                    y(v),
                    top + h - y(v),
                    COLORS[c % COLORS.len()],
                    escape(name),
                    short_number(v)
                ));
            }
            let label: String = label.chars().take(24).collect();
            s.push_str(&format!(
                "<text transform=\"translate({:.1},{:.1}) rotate(40)\">{}</text>\n",
                x0,
                top + h + 12.0,
                escape(&label)
            ));
        }
        for (c, name) in self.series.iter().enumerate() {
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
                left + c as f64 * 120.0,
                top + h + 85.0,
                COLORS[c % COLORS.len()],
                left + c as f64 * 120.0 + 14.0,
                top + h + 94.0,
                escape(name)
            ));
        }
        s.push_str("</svg>\n");
        (s, width, height)
    }
}

/// `v` for a label: whole numbers as they are, others with three decimals.
fn short_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.3}")
    }
}

/// An SVG document of `charts`, one under the other.
pub fn document(charts: &[BarChart]) -> String {
    let (mut body, mut width, mut height) = (String::new(), 0.0f64, 0.0);
    for c in charts {
        let (s, w, h) = c.element(height);
        body.push_str(&s);
        width = width.max(w);
        height += h;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

/// Parses the text `pymalloc chart` reads: lines of tab-separated fields,
/// `chart TITLE` starting a bar chart (`lines TITLE` a line chart), `series NAME...` naming
/// its series, `row LABEL VALUE...` adding a group (one value per series). Blank lines are
/// skipped.
pub fn parse(text: &str) -> Result<Vec<BarChart>, String> {
    let mut charts: Vec<BarChart> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let err = |what: &str| format!("line {}: {what}: {line:?}", i + 1);
        match fields[0] {
            "" if fields.len() == 1 => {}
            "chart" | "lines" if fields.len() == 2 => charts.push(BarChart {
                title: fields[1].to_string(),
                series: Vec::new(),
                groups: Vec::new(),
                reference: None,
                lines: fields[0] == "lines",
            }),
            "series" | "row" if charts.is_empty() => return Err(err("before any `chart` line")),
            "series" => {
                charts.last_mut().unwrap().series =
                    fields[1..].iter().map(|s| s.to_string()).collect()
            }
            "row" if fields.len() >= 2 => {
                let chart = charts.last_mut().unwrap();
                let values = fields[2..]
                    .iter()
                    .map(|v| v.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0))
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(|| err("a value is not a number >= 0"))?;
                if values.len() != chart.series.len() {
                    return Err(err("not one value per series"));
                }
                chart.groups.push((fields[1].to_string(), values));
            }
            _ => return Err(err(
                "expected `chart TITLE`, `lines TITLE`, `series NAME...` or `row LABEL VALUE...`",
            )),
        }
    }
    if charts.is_empty() {
        return Err("no chart in the input".into());
    }
    Ok(charts)
}

/// Draws bar and line charts described on stdin (see `pymalloc chart --help`) as SVG.
///
/// Input: lines of tab-separated fields: `chart<TAB>TITLE` starts a bar chart,
/// `lines<TAB>TITLE` a line chart (a timeline: one line per series),
/// `series<TAB>NAME<TAB>...` names its series, `row<TAB>LABEL<TAB>VALUE<TAB>...` adds a
/// group of bars, or a point to each line (one value per series). Charts are drawn one
/// under the other.
#[derive(Parser)]
pub struct Args {
    /// Write the SVG into FILE (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn main(args: Args) -> ExitCode {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        return fail(&format!("cannot read stdin: {e}"), 1);
    }
    let charts = match parse(&text) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    let svg = document(&charts);
    let written = match &args.output {
        Some(path) => {
            std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => {
            print!("{svg}");
            Ok(())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_charts_and_rejects_malformed_lines() {
        let c =
            parse("chart\tA & B\nseries\tx\ty\nrow\tone\t1\t2.5\n\nchart\tC\nseries\tz\n").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].groups, vec![("one".to_string(), vec![1.0, 2.5])]);
        assert!(c[1].groups.is_empty());
        assert!(!c[0].lines);
        let l = parse("lines\tT\nseries\tx\nrow\t0 s\t1\nrow\t1 s\t2\n").unwrap();
        assert!(l[0].lines && l[0].groups.len() == 2);
        assert!(document(&l).contains("<polyline"));
        for bad in [
            "row\tx\t1",
            "chart\tA\nseries\tx\nrow\tl\t1\t2",
            "chart\tA\nseries\tx\nrow\tl\tNaN",
            "bogus",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let svg = document(&c);
        assert!(
            svg.starts_with("<svg xmlns") && svg.contains("A &amp; B") && svg.ends_with("</svg>\n")
        );
    }
}
