//! Charts as SVG, drawn the same way for the benchmark's results (`bench-results/latest.svg`)
//! and `switchboard simulate`'s shares and waits: panels side by side under a title, each
//! a set of bars or a curve. Pure: figures in, SVG text out, so both stay one picture style and
//! the drawing is tested without a broker.

use std::fmt::Write;

const PANEL_WIDTH: f64 = 300.0;
const PANEL_HEIGHT: f64 = 260.0;
/// Where a panel's plot starts, from the top, and how tall it is.
const PLOT_TOP: f64 = 50.0;
const PLOT_HEIGHT: f64 = 170.0;
/// Left margin of each panel.
const MARGIN: f64 = 20.0;
const BLUE: &str = "#4a7bd0";
const RED: &str = "#e45756";
const GREY: &str = "#999";

/// One bar: its label (one line of text per `\n`), its value and, if any, a mark drawn across
/// it (what was expected, say).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub mark: Option<f64>,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64) -> Bar {
        Bar {
            label: label.into(),
            value,
            mark: None,
        }
    }

    /// The same bar with a mark across it at `mark`.
    pub fn marked(self, mark: f64) -> Bar {
        Bar {
            mark: Some(mark),
            ..self
        }
    }
}

#[derive(Debug, Clone)]
enum Plot {
    Bars(Vec<Bar>),
    /// Values in order, spread evenly across the plot from 0% to 100%.
    Curve(Vec<f64>),
}

#[derive(Debug, Clone)]
struct Panel {
    title: String,
    unit: String,
    plot: Plot,
}

/// A chart: a title, then panels from left to right in the order they were added.
#[derive(Debug, Clone)]
pub struct Chart {
    title: String,
    panels: Vec<Panel>,
}

impl Chart {
    pub fn new(title: impl Into<String>) -> Chart {
        Chart {
            title: title.into(),
            panels: vec![],
        }
    }

    /// A panel of bars, each labelled with its value in `unit`, scaled to the largest value or
    /// mark of the panel.
    pub fn bars(&mut self, title: &str, unit: &str, bars: Vec<Bar>) {
        self.panel(title, unit, Plot::Bars(bars));
    }

    /// A panel of one curve through `values` (sorted waits, say: the curve is then their
    /// distribution), scaled to the largest.
    pub fn curve(&mut self, title: &str, unit: &str, values: Vec<f64>) {
        self.panel(title, unit, Plot::Curve(values));
    }

    fn panel(&mut self, title: &str, unit: &str, plot: Plot) {
        self.panels.push(Panel {
            title: title.into(),
            unit: unit.into(),
            plot,
        });
    }

    pub fn svg(&self) -> String {
        let width = PANEL_WIDTH * self.panels.len().max(1) as f64;
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="8" y="16" font-size="13">{}</text>"#,
            PANEL_HEIGHT + 30.0,
            escape(&self.title)
        );
        for (i, panel) in self.panels.iter().enumerate() {
            let x0 = i as f64 * PANEL_WIDTH + MARGIN;
            let _ = write!(
                svg,
                r#"<text x="{x0}" y="{}" font-size="12" font-weight="bold">{}</text>"#,
                PLOT_TOP - 14.0,
                escape(&panel.title)
            );
            match &panel.plot {
                Plot::Bars(bars) => draw_bars(&mut svg, x0, &panel.unit, bars),
                Plot::Curve(values) => draw_curve(&mut svg, x0, &panel.unit, values),
            }
        }
        svg + "</svg>\n"
    }
}

fn draw_bars(svg: &mut String, x0: f64, unit: &str, bars: &[Bar]) {
    let top = bars
        .iter()
        .flat_map(|bar| [bar.value, bar.mark.unwrap_or(0.0)])
        .fold(0.0, f64::max)
        .max(1e-9);
    let slot = (PANEL_WIDTH - 2.0 * MARGIN) / bars.len().max(1) as f64;
    let bottom = PLOT_TOP + PLOT_HEIGHT;
    for (j, bar) in bars.iter().enumerate() {
        let x = x0 + j as f64 * slot;
        let middle = x + slot * 0.35;
        let height = bar.value / top * PLOT_HEIGHT;
        let y = bottom - height;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{height:.1}" fill="{BLUE}"/><text x="{middle:.1}" y="{:.1}" text-anchor="middle">{} {}</text>"#,
            slot * 0.7,
            y - 4.0,
            shown(bar.value),
            escape(unit),
        );
        if let Some(mark) = bar.mark {
            let y = bottom - mark / top * PLOT_HEIGHT;
            let _ = write!(
                svg,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{RED}" stroke-width="3"/>"#,
                x - slot * 0.05,
                x + slot * 0.75,
            );
        }
        // One line of the label per `\n`.
        let lines: String = bar
            .label
            .split('\n')
            .enumerate()
            .map(|(k, line)| {
                format!(
                    r#"<tspan x="{middle:.1}" dy="{}">{}</tspan>"#,
                    if k == 0 { 0 } else { 13 },
                    escape(line)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<text x="{middle:.1}" y="{:.1}" text-anchor="middle">{lines}</text>"#,
            bottom + 16.0,
        );
    }
}

fn draw_curve(svg: &mut String, x0: f64, unit: &str, values: &[f64]) {
    let width = PANEL_WIDTH - 2.0 * MARGIN;
    let bottom = PLOT_TOP + PLOT_HEIGHT;
    let top = values.iter().copied().fold(0.0, f64::max).max(1e-9);
    let last = values.len().max(2) - 1;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            format!(
                "{:.1},{:.1}",
                x0 + i as f64 / last as f64 * width,
                bottom - value / top * PLOT_HEIGHT
            )
        })
        .collect();
    let _ = write!(
        svg,
        r#"<rect x="{x0}" y="{PLOT_TOP}" width="{width}" height="{PLOT_HEIGHT}" fill="none" stroke="{GREY}"/><polyline fill="none" stroke="{BLUE}" stroke-width="2" points="{}"/>"#,
        points.join(" ")
    );
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}">max {} {}</text><text x="{x0}" y="{:.1}">0%</text><text x="{:.1}" y="{:.1}" text-anchor="end">100%</text>"#,
        x0 + 4.0,
        PLOT_TOP + 14.0,
        shown(top),
        escape(unit),
        bottom + 16.0,
        x0 + width,
        bottom + 16.0
    );
}

/// A value as a label: one decimal below 100, none above.
fn shown(value: f64) -> String {
    if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_or_mark_and_carry_their_labels() {
        let mut chart = Chart::new("run <1>");
        chart.bars(
            "drain",
            "ev/s",
            vec![
                Bar::new("relay", 100.0),
                Bar::new("worker\n2 cores", 50.0).marked(200.0),
            ],
        );
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("run &lt;1&gt;"), "the title is escaped");
        // The mark (200) is the top: the bars are half and a quarter of the plot's height.
        assert!(svg.contains(r##"height="85.0" fill="#4a7bd0""##), "{svg}");
        assert!(svg.contains(r##"height="42.5" fill="#4a7bd0""##), "{svg}");
        assert_eq!(svg.matches("<line").count(), 1, "one mark");
        assert!(svg.contains(">relay<") && svg.contains(">2 cores<"));
        assert!(svg.contains(">100 ev/s<") && svg.contains(">50.0 ev/s<"));
    }

    #[test]
    fn a_curve_goes_through_every_value_across_its_panel() {
        let mut chart = Chart::new("waits");
        chart.bars("shares", "%", vec![Bar::new("a", 1.0)]);
        chart.curve("wait", "ms", vec![1.0, 2.0, 4.0]);
        let svg = chart.svg();
        let points = svg
            .split(r#"points=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        // The second panel starts at 320; the highest value reaches the plot's top.
        assert_eq!(points, "320.0,177.5 450.0,135.0 580.0,50.0");
        assert!(svg.contains(r#"width="600""#));
        assert!(svg.contains(">max 4.0 ms<"));
    }

    #[test]
    fn an_empty_chart_is_still_a_picture() {
        let svg = Chart::new("nothing yet").svg();
        assert!(svg.contains(r#"width="300""#) && svg.ends_with("</svg>\n"));
    }
}
