//! Calibration figure: reliability diagram of predicted probabilities.

use crate::color;
use crate::figures::invalid;
use crate::layout::{
    fit_text, legend, legend_height, marker_path, nice_ticks, x_axis, y_axis, Lin, Mark, AXIS_C,
    COLUMN_WIDTH, FS_LABEL, FS_TICK,
};
use crate::svg::{num, text_width, Anchor, Font, Paint, Svg, VAlign};
use crate::{Figure, ShowError};

const PAD: f64 = 6.0;
/// Most series or bins of a reliability diagram.
pub const MAX_RELIABILITY: usize = 64;

/// One series of a reliability diagram: per probability bin, (mean predicted probability,
/// observed share of positives, number of cases); empty bins are left out by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ReliabilitySeries {
    /// Legend name.
    pub name: String,
    /// Points `(mean predicted, observed, n)`.
    pub points: Vec<(f64, f64, usize)>,
}

/// Reliability diagram: observed frequency against mean predicted probability per bin, one line
/// per series, the diagonal of perfect calibration dashed, each point labelled with its count.
/// Points are `path class="pt"` with `data-series`, `data-n`.
pub fn reliability_diagram(
    series: &[ReliabilitySeries],
    x_label: &str,
) -> Result<Figure, ShowError> {
    if series.is_empty() || series.len() > MAX_RELIABILITY {
        return Err(invalid(format!(
            "reliability diagram: {} series is outside 1..={MAX_RELIABILITY}",
            series.len()
        )));
    }
    for s in series {
        if s.points.len() > MAX_RELIABILITY {
            return Err(invalid(format!(
                "reliability diagram: series {} has {} points (at most {MAX_RELIABILITY})",
                s.name,
                s.points.len()
            )));
        }
        for &(p, o, _) in &s.points {
            if !(0.0..=1.0).contains(&p) || !(0.0..=1.0).contains(&o) {
                return Err(invalid(format!(
                    "reliability diagram: series {} has a point ({p}, {o}) outside [0, 1]",
                    s.name
                )));
            }
        }
    }
    let ticks = nice_ticks(0.0, 1.0, 6);
    let ytw = ticks
        .values
        .iter()
        .map(|v| text_width(&ticks.label(*v), FS_TICK))
        .fold(0.0, f64::max);
    let mut items: Vec<(String, Mark)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), Mark::LineMarker(color::category(i), i)))
        .collect();
    items.push((
        "perfect calibration".into(),
        Mark::Dashed(color::Rgb(0x66, 0x66, 0x66)),
    ));
    let width = COLUMN_WIDTH;
    let left = PAD + FS_LABEL + 4.0 + ytw + 4.0;
    let right = PAD + 4.0;
    let plot_w = width - left - right;
    let leg_h = legend_height(&items, plot_w, FS_TICK);
    let top = PAD + leg_h + 4.0;
    let plot_h = plot_w.min(170.0);
    let height = top + plot_h + 3.0 + FS_TICK + 4.0 + FS_LABEL + PAD;
    let mut svg = Svg::new(width, height, "reliability diagram");
    legend(&mut svg, left + plot_w / 2.0, PAD, plot_w, &items, FS_TICK);
    let xs = Lin::new(0.0, 1.0, left, left + plot_w);
    let ys = Lin::new(0.0, 1.0, top + plot_h, top);
    y_axis(&mut svg, left, &ys, &ticks, true, Some(left + plot_w));
    x_axis(&mut svg, top + plot_h, &xs, &ticks, true);
    svg.line(
        left,
        top + plot_h,
        left + plot_w,
        top + plot_h,
        &Paint::stroke(AXIS_C, 0.6),
    );
    svg.line_attr(
        xs.map(0.0),
        ys.map(0.0),
        xs.map(1.0),
        ys.map(1.0),
        &Paint::stroke(color::Rgb(0x66, 0x66, 0x66), 0.6).dash(2.0, 1.2),
        "class=\"diagonal\"",
    );
    svg.text(
        PAD,
        top + plot_h / 2.0,
        "observed share",
        &Font::new(FS_LABEL)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top)
            .rotate(-90.0),
    );
    svg.text(
        left + plot_w / 2.0,
        height - PAD,
        &fit_text(x_label, plot_w, FS_LABEL),
        &Font::new(FS_LABEL).anchor(Anchor::Middle),
    );
    for (i, s) in series.iter().enumerate() {
        let col = color::category(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(p, o, _)| (xs.map(p), ys.map(o)))
            .collect();
        svg.poly(
            &pts,
            false,
            &Paint::stroke(col, 0.9),
            &format!("class=\"series\" data-series=\"{i}\""),
        );
        let mp = marker_path(i, 2.0);
        for &(p, o, n) in &s.points {
            svg.path(
                &mp,
                &Paint::fill(col).with_stroke(color::Rgb::WHITE, 0.4),
                &format!(
                    "class=\"pt\" data-series=\"{i}\" data-n=\"{n}\" transform=\"translate({} {})\"",
                    num(xs.map(p)),
                    num(ys.map(o))
                ),
            );
            // count labels of successive series alternate above and below their points
            let dy = if i % 2 == 0 {
                -2.5
            } else {
                2.5 + FS_TICK * 0.8
            };
            svg.text_attr(
                xs.map(p) + 2.5,
                ys.map(o) + dy,
                &n.to_string(),
                &Font::new(FS_TICK * 0.8).fill(col),
                &format!("class=\"count\" data-series=\"{i}\""),
            );
        }
    }
    Ok(svg.finish())
}
