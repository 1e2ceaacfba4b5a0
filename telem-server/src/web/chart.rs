//! SVG charts drawn on the server: a bar chart (stacked or grouped series) and a sparkline.
//!
//! Labels and series names come from records (attacker-controlled), so everything written into
//! the SVG goes through [`escape`]. Colours are classes (`series-0` … `series-9`, in
//! style.css): the Content-Security-Policy allows no inline style.

use std::fmt::{self, Write as _};

/// A finished chart, safe to put into a page as it is (`{{ chart|safe }}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Svg(String);

impl Svg {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Svg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One series: a name (for the legend) and a value per label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub values: Vec<i64>,
}

/// How the series of a bar chart share a label's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bars {
    /// One bar per label, the series on top of each other.
    Stacked,
    /// One bar per series, side by side.
    Grouped,
}

/// Text escaped for SVG/HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// Colour classes cycle after this many series.
pub const COLOURS: usize = 10;

const WIDTH: f64 = 800.0;
const PLOT_H: f64 = 200.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 10.0;
const LEGEND_ROW: f64 = 18.0;

/// A bar chart of `series` over `labels` (x axis), with a y axis from 0 to the largest bar, the
/// labels below (thinned out when many) and a legend. Every bar has a `<title>` with its label,
/// series and value. `id` becomes the `<svg>`'s id; `title` its accessible name.
pub fn bar_chart(id: &str, title: &str, labels: &[String], series: &[Series], mode: Bars) -> Svg {
    let n = labels.len();
    let value = |s: &Series, i: usize| s.values.get(i).copied().unwrap_or(0).max(0);
    let max = (0..n)
        .map(|i| match mode {
            Bars::Stacked => series.iter().map(|s| value(s, i)).sum::<i64>(),
            Bars::Grouped => series.iter().map(|s| value(s, i)).max().unwrap_or(0),
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let legend_rows = series.len().div_ceil(3);
    let height = TOP + PLOT_H + 40.0 + legend_rows as f64 * LEGEND_ROW;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"{}\" class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {WIDTH} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        escape(id),
        escape(title),
        escape(title)
    );
    // Axis: the base line and the top value.
    let base = TOP + PLOT_H;
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\"/>\
         <text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\
         <text class=\"tick\" x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        LEFT - 4.0,
        TOP + 10.0,
        LEFT - 4.0
    );
    if n > 0 {
        let slot = (WIDTH - LEFT) / n as f64;
        let bar_w = (slot * 0.8).max(1.0);
        let scale = PLOT_H / max as f64;
        for (i, label) in labels.iter().enumerate() {
            let x0 = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
            let mut y = base;
            for (k, ser) in series.iter().enumerate() {
                let v = value(ser, i);
                if v == 0 {
                    continue;
                }
                let h = v as f64 * scale;
                let (x, w, top) = match mode {
                    Bars::Stacked => {
                        y -= h;
                        (x0, bar_w, y)
                    }
                    Bars::Grouped => {
                        let w = bar_w / series.len().max(1) as f64;
                        (x0 + w * k as f64, w, base - h)
                    }
                };
                let _ = write!(
                    s,
                    "<rect class=\"series-{}\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" \
                     height=\"{h:.1}\"><title>{}: {} {v}</title></rect>",
                    k % COLOURS,
                    escape(label),
                    escape(&ser.name)
                );
            }
            // At most about 12 labels fit under the axis.
            let every = n.div_ceil(12);
            if i % every == 0 {
                let _ = write!(
                    s,
                    "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    x0 + bar_w / 2.0,
                    base + 16.0,
                    escape(&shorten(label, 16))
                );
            }
        }
    }
    for (k, ser) in series.iter().enumerate() {
        let x = LEFT + (k % 3) as f64 * ((WIDTH - LEFT) / 3.0);
        let y = base + 34.0 + (k / 3) as f64 * LEGEND_ROW;
        let _ = write!(
            s,
            "<rect class=\"series-{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\"/>\
             <text class=\"legend\" x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            k % COLOURS,
            y - 10.0,
            x + 16.0,
            escape(&shorten(&ser.name, 40))
        );
    }
    s.push_str("</svg>");
    Svg(s)
}

/// A small line of `values` (oldest first) scaled to its own maximum, for a table cell.
pub fn sparkline(values: &[i64]) -> Svg {
    const W: f64 = 100.0;
    const H: f64 = 20.0;
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        0.0
    };
    let mut points = String::new();
    for (i, v) in values.iter().enumerate() {
        let y = H - 1.0 - (*v).max(0) as f64 / max * (H - 2.0);
        let _ = write!(points, "{:.1},{y:.1} ", step * i as f64);
    }
    let total: i64 = values.iter().sum();
    Svg(format!(
        "<svg class=\"sparkline\" role=\"img\" aria-label=\"{total} in {} days\" viewBox=\"0 0 {W} {H}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><polyline points=\"{}\"/></svg>",
        values.len(),
        points.trim_end()
    ))
}

/// `s` cut to at most `max` characters, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i}")).collect()
    }

    #[test]
    fn stacked_bars_sum_to_the_axis_maximum() {
        let series = vec![
            Series {
                name: "a".into(),
                values: vec![1, 3],
            },
            Series {
                name: "b".into(),
                values: vec![2, 1],
            },
        ];
        let svg = bar_chart("c", "t", &labels(2), &series, Bars::Stacked);
        let s = svg.as_str();
        assert!(s.starts_with("<svg id=\"c\""), "{s}");
        // The tallest stack (1+2 = 3+1 = 4) is the axis top and fills the plot.
        assert!(s.contains(">4</text>"), "{s}");
        assert_eq!(
            s.matches("<rect class=\"series-").count(),
            4 + 2,
            "bars + legend"
        );
        assert!(s.contains("<title>d1: a 3</title>"), "{s}");
        // The first day's two parts stack to the full height 200 * 3/4 = 150.
        assert!(s.contains("height=\"50.0\"><title>d0: a 1"), "{s}");
        assert!(s.contains("height=\"100.0\"><title>d0: b 2"), "{s}");
    }

    #[test]
    fn grouped_bars_scale_to_the_largest_bar() {
        let series = vec![
            Series {
                name: "1 day".into(),
                values: vec![5],
            },
            Series {
                name: "7 days".into(),
                values: vec![10],
            },
        ];
        let s = bar_chart("p", "t", &labels(1), &series, Bars::Grouped).0;
        assert!(s.contains(">10</text>"), "{s}");
        assert!(s.contains("height=\"200.0\"><title>d0: 7 days 10"), "{s}");
        assert!(s.contains("height=\"100.0\"><title>d0: 1 day 5"), "{s}");
    }

    #[test]
    fn labels_and_names_are_escaped() {
        let evil = "<script>alert(1)</script>\"'&";
        let series = vec![Series {
            name: evil.into(),
            values: vec![1],
        }];
        let s = bar_chart("x\"y", evil, &[evil.to_string()], &series, Bars::Stacked).0;
        assert!(!s.contains("<script"), "{s}");
        assert!(!s.contains("x\"y"), "{s}");
        assert!(
            s.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
            "{s}"
        );
    }

    #[test]
    fn an_empty_chart_is_still_an_svg() {
        let s = bar_chart("e", "empty", &[], &[], Bars::Stacked).0;
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"), "{s}");
        assert!(!s.contains("NaN") && !s.contains("inf"), "{s}");
    }

    #[test]
    fn sparklines_span_the_width_and_scale_to_their_maximum() {
        let s = sparkline(&[0, 5, 10]).0;
        assert!(s.contains("points=\"0.0,19.0 50.0,10.0 100.0,1.0\""), "{s}");
        assert!(s.contains("aria-label=\"15 in 3 days\""), "{s}");
        let one = sparkline(&[3]).0;
        assert!(one.contains("points=\"0.0,1.0\""), "{one}");
        let none = sparkline(&[]).0;
        assert!(none.contains("points=\"\""), "{none}");
    }

    #[test]
    fn long_labels_are_shortened() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
