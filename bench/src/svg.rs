//! A plain SVG line plot of latency against load, one line per system, written by the
//! scenarios for `docs/benchmarks.md`. Pure: series in, SVG text out.

/// One line of the plot: a name and (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Renders the series on linear axes; `bound` (a latency limit) is drawn as a dashed line and
/// y values above `y_cap` are drawn at the cap.
pub fn latency_plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    bound: f64,
    y_cap: f64,
) -> String {
    let points = series.iter().flat_map(|s| s.1.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.map(|p| p.1.min(y_cap)).fold(bound * 1.2, f64::max);
    let sx = |x: f64| LEFT + x / x_max * (W - LEFT - RIGHT);
    let sy = |y: f64| H - BOTTOM - y.min(y_cap) / y_max * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        escape(title)
    );
    // Axes, ticks and labels.
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"black\"/>\n",
        b = H - BOTTOM,
        r = W - RIGHT
    ));
    for i in 0..=5 {
        let (x, y) = (x_max * i as f64 / 5.0, y_max * i as f64 / 5.0);
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>\n",
            sx(x),
            H - BOTTOM + 16.0,
            compact(x),
            LEFT - 6.0,
            sy(y) + 4.0,
            y
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">{}</text>\n\
         <line x1=\"{LEFT}\" y1=\"{by:.1}\" x2=\"{:.1}\" y2=\"{by:.1}\" stroke=\"gray\" stroke-dasharray=\"4 4\"/>\n",
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0,
        escape(x_label),
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label),
        W - RIGHT,
        by = sy(bound)
    ));
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            path.join(" ")
        ));
        for &(x, y) in pts {
            svg.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>\n",
                sx(x),
                sy(y)
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>\n",
            LEFT + 10.0,
            TOP + 14.0 + 16.0 * i as f64,
            escape(name)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn compact(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.0}k", x / 1000.0)
    } else {
        format!("{x:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_has_one_line_and_legend_per_series() {
        let svg = latency_plot(
            "p99 <latency>",
            "deliveries/s",
            "ms",
            &[
                ("chatcluster".into(), vec![(1000.0, 2.0), (5000.0, 4.0)]),
                ("socketio".into(), vec![(1000.0, 5.0), (5000.0, 900.0)]),
            ],
            50.0,
            200.0,
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains(">chatcluster<") && svg.contains(">socketio<"));
        assert!(svg.contains("p99 &lt;latency&gt;"));
        assert!(!svg.contains("NaN"));
    }
}
