//! A horizontal range chart as a standalone SVG, written by hand: one row per measured
//! point (a condition of the boot timeline, a floor figure), a bar to its median and a
//! whisker from min to max, on a shared time axis starting at zero. Text is escaped;
//! the output depends only on the input, so a re-run with the same figures gives the
//! same file.

use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const LABEL_WIDTH: f64 = 270.0;
const RIGHT_MARGIN: f64 = 90.0;
const HEADER: f64 = 78.0;
const ROW: f64 = 24.0;
const BAR: f64 = 14.0;
const FOOTER: f64 = 40.0;

/// One row.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    /// Index into [`Chart::series`]: the colour and legend entry.
    pub series: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// A named colour in the legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    /// One line under the title (machine, boots).
    pub note: String,
    /// The axis unit, e.g. `s`.
    pub unit: &'static str,
    pub series: Vec<Series>,
    pub bars: Vec<Bar>,
}

/// The SVG document for `chart`.
pub fn render(chart: &Chart) -> String {
    let top = chart
        .bars
        .iter()
        .map(|b| b.max.max(b.median))
        .fold(0.0, f64::max);
    let step = nice_step(top);
    let axis_max = (top / step).ceil().max(1.0) * step;
    let plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let x = |v: f64| LABEL_WIDTH + v.max(0.0) / axis_max * plot;
    let height = HEADER + ROW * chart.bars.len() as f64 + FOOTER;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    svg.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    header(&mut svg, chart);
    grid(&mut svg, step, axis_max, chart.unit, height, &x);
    for (i, bar) in chart.bars.iter().enumerate() {
        row(&mut svg, chart, bar, HEADER + ROW * i as f64, &x);
    }
    svg.push_str("</svg>\n");
    svg
}

fn header(svg: &mut String, chart: &Chart) {
    let _ = writeln!(
        svg,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">{}</text>"#,
        escape(&chart.title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="10" y="42" fill="#444">{}</text>"##,
        escape(&chart.note)
    );
    let mut legend_x = 10.0;
    for series in &chart.series {
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x}" y="52" width="12" height="12" fill="{}"/><text x="{}" y="62">{}</text>"#,
            series.color,
            legend_x + 16.0,
            escape(&series.name)
        );
        legend_x += 24.0 + 7.0 * series.name.chars().count() as f64;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="62" fill="#444">bar: median, whisker: min to max</text>"##,
        legend_x + 10.0
    );
}

fn grid(
    svg: &mut String,
    step: f64,
    axis_max: f64,
    unit: &str,
    height: f64,
    x: &impl Fn(f64) -> f64,
) {
    let bottom = height - FOOTER;
    let ticks = (axis_max / step).round() as usize;
    for i in 0..=ticks {
        let value = step * i as f64;
        let at = x(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{HEADER}" x2="{at:.1}" y2="{bottom}" stroke="#ddd"/><text x="{at:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            bottom + 16.0,
            tick_label(value, step)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{unit}</text>"##,
        x(axis_max / 2.0),
        bottom + 32.0
    );
}

fn row(svg: &mut String, chart: &Chart, bar: &Bar, y: f64, x: &impl Fn(f64) -> f64) {
    let color = chart.series.get(bar.series).map_or("#888", |s| s.color);
    let mid = y + ROW / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        LABEL_WIDTH - 8.0,
        mid + 4.0,
        escape(&bar.label)
    );
    let _ = writeln!(
        svg,
        r#"<rect class="bar" x="{LABEL_WIDTH}" y="{:.1}" width="{:.1}" height="{BAR}" fill="{color}" fill-opacity="0.75"/>"#,
        mid - BAR / 2.0,
        x(bar.median) - LABEL_WIDTH
    );
    let (lo, hi) = (x(bar.min), x(bar.max));
    let _ = writeln!(
        svg,
        r##"<path d="M{lo:.1} {:.1}v8M{lo:.1} {mid:.1}H{hi:.1}M{hi:.1} {:.1}v8" stroke="#222" fill="none"/>"##,
        mid - 4.0,
        mid - 4.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}">{:.2}</text>"#,
        hi + 6.0,
        mid + 4.0,
        bar.median
    );
}

/// A 1, 2 or 5 times a power of ten, giving about eight ticks up to `max`.
pub fn nice_step(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let factor = match raw / magnitude {
        r if r <= 1.0 => 1.0,
        r if r <= 2.0 => 2.0,
        r if r <= 5.0 => 5.0,
        _ => 10.0,
    };
    factor * magnitude
}

fn tick_label(value: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{value:.0}")
    } else {
        let digits = (-step.log10().floor()) as usize;
        format!("{value:.digits$}")
    }
}

/// `text` safe inside an SVG element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            title: "Boot <timeline>".into(),
            note: "tcg & 5 boots".into(),
            unit: "s",
            series: vec![
                Series {
                    name: "cairn".into(),
                    color: "#1f77b4",
                },
                Series {
                    name: "floor".into(),
                    color: "#999999",
                },
            ],
            bars: vec![
                Bar {
                    label: "floor: kernel -> /init".into(),
                    series: 1,
                    median: 1.0,
                    min: 0.9,
                    max: 1.2,
                },
                Bar {
                    label: "node-ready".into(),
                    series: 0,
                    median: 20.0,
                    min: 19.0,
                    max: 24.0,
                },
            ],
        }
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(24.0), 5.0);
        assert_eq!(nice_step(8.0), 1.0);
        assert_eq!(nice_step(15.0), 2.0);
        assert_eq!(nice_step(0.5), 0.1);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"a<b & "c"'"#), "a&lt;b &amp; &quot;c&quot;&#39;");
        let svg = render(&chart());
        assert!(svg.contains("Boot &lt;timeline&gt;"));
        assert!(svg.contains("tcg &amp; 5 boots"));
        assert!(svg.contains("floor: kernel -&gt; /init"));
    }

    #[test]
    fn one_bar_per_row_scaled_to_the_axis() {
        let svg = render(&chart());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        let widths: Vec<f64> = svg
            .lines()
            .filter(|l| l.contains("class=\"bar\""))
            .map(|l| {
                let w = l.split("width=\"").nth(1).unwrap();
                w[..w.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        // Axis to 25 s (step 5) over 600 px: 1 s is 24 px, 20 s is 480 px.
        assert_eq!(widths, [24.0, 480.0]);
        assert!(svg.contains(">25</text>"));
    }

    #[test]
    fn the_same_figures_give_the_same_document() {
        assert_eq!(render(&chart()), render(&chart()));
    }
}
