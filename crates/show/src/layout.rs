//! Shared drawing pieces: ticks, axes, colour bars, legends, markers.

use crate::color::{self, Rgb};
use crate::svg::{num, text_width, Anchor, Font, Paint, Svg, VAlign};

/// Tick label size (pt).
pub(crate) const FS_TICK: f64 = 7.0;
/// Axis label size (pt).
pub(crate) const FS_LABEL: f64 = 8.0;
/// Title size (pt).
pub(crate) const FS_TITLE: f64 = 9.0;
/// Width of one paper column (pt).
pub(crate) const COLUMN_WIDTH: f64 = 240.0;
/// Width of a two-column figure (pt).
pub(crate) const PAGE_WIDTH: f64 = 504.0;
/// Axis line width (pt).
pub(crate) const AXIS_W: f64 = 0.6;
/// Axis colour.
pub(crate) const AXIS_C: Rgb = Rgb(0x22, 0x22, 0x22);
/// Grid line colour.
pub(crate) const GRID_C: Rgb = Rgb(0xE3, 0xE3, 0xE3);
/// Secondary text colour.
pub(crate) const MUTED: Rgb = Rgb(0x55, 0x55, 0x55);

/// Tick values and the decimals needed to print them.
#[derive(Debug, Clone)]
pub(crate) struct Ticks {
    pub values: Vec<f64>,
    pub decimals: usize,
}

impl Ticks {
    pub fn label(&self, v: f64) -> String {
        fmt_fixed(v, self.decimals)
    }
}

/// `v` with `decimals` decimals and a typographic minus.
pub(crate) fn fmt_fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let neg_zero = s.starts_with('-') && s.chars().skip(1).all(|c| c == '0' || c == '.');
    if neg_zero {
        s[1..].to_string()
    } else if let Some(rest) = s.strip_prefix('-') {
        format!("\u{2212}{rest}")
    } else {
        s
    }
}

/// `v` with about `sig` significant digits (fixed notation), typographic minus.
pub(crate) fn fmt_sig(v: f64, sig: usize) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let mag = v.abs().log10().floor() as i64;
    let dec = (sig as i64 - 1 - mag).clamp(0, 6) as usize;
    fmt_fixed(v, dec)
}

/// Ticks at 1, 2, 2.5 or 5 × 10^k covering `lo..=hi` with at most `max_n` ticks inside it.
pub(crate) fn nice_ticks(lo: f64, hi: f64, max_n: usize) -> Ticks {
    let (lo, hi) = sane_range(lo, hi);
    let max_n = max_n.max(2);
    let span = hi - lo;
    let mut exp = (span / max_n as f64).log10().floor() as i32 - 1;
    loop {
        for m in [1.0, 2.0, 2.5, 5.0] {
            let step = m * 10f64.powi(exp);
            let k0 = (lo / step - 1e-9).ceil();
            let k1 = (hi / step + 1e-9).floor();
            let count = k1 - k0 + 1.0;
            if count <= max_n as f64 {
                let mut decimals = (-exp).max(0) as usize;
                if m == 2.5 {
                    decimals += 1;
                }
                let values = (0..count.max(0.0) as usize)
                    .map(|i| {
                        let v = (k0 + i as f64) * step;
                        if v.abs() < step * 1e-9 {
                            0.0
                        } else {
                            v
                        }
                    })
                    .collect();
                return Ticks { values, decimals };
            }
        }
        exp += 1;
        if exp > 300 {
            return Ticks {
                values: vec![lo, hi],
                decimals: 2,
            };
        }
    }
}

/// Ticks as [`nice_ticks`], with the range widened to the enclosing tick positions.
pub(crate) fn nice_range(lo: f64, hi: f64, max_n: usize) -> (f64, f64, Ticks) {
    let (lo, hi) = sane_range(lo, hi);
    let t = nice_ticks(lo, hi, max_n);
    let step = match (t.values.first(), t.values.get(1)) {
        (Some(a), Some(b)) => b - a,
        _ => hi - lo,
    };
    let lo2 = (lo / step + 1e-9).floor() * step;
    let hi2 = (hi / step - 1e-9).ceil() * step;
    let t2 = nice_ticks(lo2, hi2, max_n + 1);
    (lo2, hi2, t2)
}

/// A finite, non-empty range.
pub(crate) fn sane_range(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (lo.min(hi), lo.max(hi)),
        (true, false) => (lo, lo),
        (false, true) => (hi, hi),
        (false, false) => (0.0, 1.0),
    };
    if hi - lo > f64::EPSILON * hi.abs().max(lo.abs()).max(1e-300) * 16.0 {
        (lo, hi)
    } else {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - d, hi + d)
    }
}

/// Linear map from data `d0..d1` to page `r0..r1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lin {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Lin {
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Self {
        let (d0, d1) = if d1 == d0 { (d0, d0 + 1.0) } else { (d0, d1) };
        Lin { d0, d1, r0, r1 }
    }
    pub fn map(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// Draws a y axis line at `x` over the scale's page range, tick marks and (optionally) labels;
/// gridlines from `x` to `grid_to` when given. Returns the widest label width.
pub(crate) fn y_axis(
    svg: &mut Svg,
    x: f64,
    s: &Lin,
    ticks: &Ticks,
    labels: bool,
    grid_to: Option<f64>,
) -> f64 {
    let mut widest: f64 = 0.0;
    let f = Font::new(FS_TICK)
        .anchor(Anchor::End)
        .valign(VAlign::Middle);
    for &v in &ticks.values {
        let y = s.map(v);
        let lab = ticks.label(v);
        svg.open(&format!(
            "class=\"ytick\" data-value=\"{}\"",
            lab_attr(&lab)
        ));
        if let Some(x2) = grid_to {
            svg.line(x, y, x2, y, &Paint::stroke(GRID_C, 0.4));
        }
        svg.line(x - 2.0, y, x, y, &Paint::stroke(AXIS_C, AXIS_W));
        if labels {
            svg.text(x - 3.0, y, &lab, &f);
            widest = widest.max(text_width(&lab, FS_TICK));
        }
        svg.close();
    }
    svg.line(x, s.r0, x, s.r1, &Paint::stroke(AXIS_C, AXIS_W));
    widest
}

/// Draws an x axis line at `y`, tick marks and labels below.
pub(crate) fn x_axis(svg: &mut Svg, y: f64, s: &Lin, ticks: &Ticks, labels: bool) {
    let f = Font::new(FS_TICK)
        .anchor(Anchor::Middle)
        .valign(VAlign::Top);
    for &v in &ticks.values {
        let x = s.map(v);
        let lab = ticks.label(v);
        svg.open(&format!(
            "class=\"xtick\" data-value=\"{}\"",
            lab_attr(&lab)
        ));
        svg.line(x, y, x, y + 2.0, &Paint::stroke(AXIS_C, AXIS_W));
        if labels {
            svg.text(x, y + 3.0, &lab, &f);
        }
        svg.close();
    }
    svg.line(s.r0, y, s.r1, y, &Paint::stroke(AXIS_C, AXIS_W));
}

/// Tick label as a plain ASCII number for a data attribute.
fn lab_attr(lab: &str) -> String {
    lab.replace('\u{2212}', "-")
}

/// A vertical colour bar at (`x`, `y`) of `w`×`h` for `map` over 0..=1 (bottom → top), ticks at
/// positions 0..=1 with labels, and a rotated `label`. Returns the total width used.
#[allow(clippy::too_many_arguments)]
pub(crate) fn colorbar(
    svg: &mut Svg,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    map: &dyn Fn(f64) -> Rgb,
    ticks: &[(f64, String)],
    label: &str,
) -> f64 {
    let url = svg.gradient(&color::stops(map, 33), true);
    svg.open("class=\"colorbar\"");
    svg.rect_url(x, y, w, h, &url, "class=\"colorbar-fill\"");
    svg.rect(x, y, w, h, &Paint::stroke(AXIS_C, 0.4));
    let f = Font::new(FS_TICK).valign(VAlign::Middle);
    let mut widest: f64 = 0.0;
    for (t, lab) in ticks {
        let ty = y + h * (1.0 - t.clamp(0.0, 1.0));
        svg.line(x + w, ty, x + w + 2.0, ty, &Paint::stroke(AXIS_C, 0.4));
        svg.text(x + w + 3.0, ty, lab, &f);
        widest = widest.max(text_width(lab, FS_TICK));
    }
    let lx = x + w + 3.0 + widest + 3.0;
    if !label.is_empty() {
        svg.text(
            lx,
            y + h / 2.0,
            label,
            &Font::new(FS_LABEL)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top)
                .rotate(-90.0),
        );
    }
    svg.close();
    let label_w = if label.is_empty() {
        0.0
    } else {
        FS_LABEL * 1.0
    };
    lx - x + label_w
}

/// Width a vertical colour bar of bar width `w` with these tick labels needs.
pub(crate) fn colorbar_width(w: f64, ticks: &[(f64, String)], label: &str) -> f64 {
    let widest = ticks
        .iter()
        .map(|(_, l)| text_width(l, FS_TICK))
        .fold(0.0, f64::max);
    w + 6.0 + widest + if label.is_empty() { 0.0 } else { FS_LABEL }
}

/// A horizontal colour bar centred at `cx` with its top at `y`; returns the height used.
#[allow(clippy::too_many_arguments)]
pub(crate) fn colorbar_h(
    svg: &mut Svg,
    cx: f64,
    y: f64,
    w: f64,
    h: f64,
    map: &dyn Fn(f64) -> Rgb,
    ticks: &[(f64, String)],
    label: &str,
) -> f64 {
    let x = cx - w / 2.0;
    let url = svg.gradient(&color::stops(map, 33), false);
    svg.open("class=\"colorbar\"");
    svg.rect_url(x, y, w, h, &url, "class=\"colorbar-fill\"");
    svg.rect(x, y, w, h, &Paint::stroke(AXIS_C, 0.4));
    let f = Font::new(FS_TICK)
        .anchor(Anchor::Middle)
        .valign(VAlign::Top);
    for (t, lab) in ticks {
        let tx = x + w * t.clamp(0.0, 1.0);
        svg.line(tx, y + h, tx, y + h + 2.0, &Paint::stroke(AXIS_C, 0.4));
        svg.text(tx, y + h + 3.0, lab, &f);
    }
    let mut used = h + 3.0 + FS_TICK * 0.95;
    if !label.is_empty() {
        svg.text(
            cx,
            y + used + 2.0,
            label,
            &Font::new(FS_TICK)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top),
        );
        used += 2.0 + FS_TICK;
    }
    svg.close();
    used
}

/// Height of [`colorbar_h`] output.
pub(crate) fn colorbar_h_height(h: f64, label: &str) -> f64 {
    h + 3.0 + FS_TICK * 0.95 + if label.is_empty() { 0.0 } else { 2.0 + FS_TICK }
}

/// Marker shapes, cycled per series so series differ without colour.
pub(crate) fn marker_path(kind: usize, r: f64) -> String {
    match kind % 6 {
        0 => {
            // circle as two arcs
            format!(
                "M{} 0A{r} {r} 0 1 0 {} 0A{r} {r} 0 1 0 {} 0Z",
                num(-r),
                num(r),
                num(-r),
                r = num(r)
            )
        }
        1 => {
            let a = r * 0.9;
            format!("M{n} {n}L{p} {n}L{p} {p}L{n} {p}Z", n = num(-a), p = num(a))
        }
        2 => format!(
            "M0 {}L{} {}L{} {}Z",
            num(-r * 1.15),
            num(r),
            num(r * 0.75),
            num(-r),
            num(r * 0.75)
        ),
        3 => {
            let a = r * 1.25;
            format!("M0 {}L{} 0L0 {}L{} 0Z", num(-a), num(a), num(a), num(-a))
        }
        4 => format!(
            "M0 {}L{} {}L{} {}Z",
            num(r * 1.15),
            num(r),
            num(-r * 0.75),
            num(-r),
            num(-r * 0.75)
        ),
        _ => {
            // plus-like square rotated: a hexagon-ish star is overkill; use a pentagon
            let pts: Vec<String> = (0..5)
                .map(|i| {
                    let a =
                        -std::f64::consts::FRAC_PI_2 + i as f64 * 2.0 * std::f64::consts::PI / 5.0;
                    format!("{} {}", num(r * 1.1 * a.cos()), num(r * 1.1 * a.sin()))
                })
                .collect();
            format!("M{}Z", pts.join("L"))
        }
    }
}

/// What a legend entry shows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mark {
    /// A filled square.
    Swatch(Rgb),
    /// A line with a marker of the given kind.
    LineMarker(Rgb, usize),
    /// A dashed line.
    Dashed(Rgb),
    /// A filled square with an edge (box plots).
    Box(Rgb),
    /// The white triangle that marks a mean.
    MeanTriangle,
}

/// Width of a legend entry.
fn entry_w(label: &str, size: f64) -> f64 {
    12.0 + 3.0 + text_width(label, size)
}

/// Height of [`legend`] for these entries within `max_w`.
pub(crate) fn legend_height(items: &[(String, Mark)], max_w: f64, size: f64) -> f64 {
    legend_rows(items, max_w, size).len() as f64 * (size + 3.0)
}

fn legend_rows(items: &[(String, Mark)], max_w: f64, size: f64) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut used = 0.0;
    for (i, (label, _)) in items.iter().enumerate() {
        let w = entry_w(label, size);
        if !cur.is_empty() && used + 8.0 + w > max_w {
            rows.push(std::mem::take(&mut cur));
            used = 0.0;
        }
        if !cur.is_empty() {
            used += 8.0;
        }
        used += w;
        cur.push(i);
    }
    if !cur.is_empty() {
        rows.push(cur);
    }
    rows
}

/// A legend laid out in rows within `max_w`, centred on `cx`, top at `y`. Returns its height.
pub(crate) fn legend(
    svg: &mut Svg,
    cx: f64,
    y: f64,
    max_w: f64,
    items: &[(String, Mark)],
    size: f64,
) -> f64 {
    let rows = legend_rows(items, max_w, size);
    let row_h = size + 3.0;
    svg.open("class=\"legend\"");
    for (r, row) in rows.iter().enumerate() {
        let total: f64 = row
            .iter()
            .filter_map(|&i| items.get(i))
            .map(|(l, _)| entry_w(l, size))
            .sum::<f64>()
            + 8.0 * (row.len().saturating_sub(1)) as f64;
        let mut x = cx - total / 2.0;
        let my = y + r as f64 * row_h + row_h / 2.0;
        for &i in row {
            let Some((label, mark)) = items.get(i) else {
                continue;
            };
            draw_mark(svg, x, my, *mark);
            svg.text(x + 15.0, my, label, &Font::new(size).valign(VAlign::Middle));
            x += entry_w(label, size) + 8.0;
        }
    }
    svg.close();
    rows.len() as f64 * row_h
}

/// Draws a legend mark 12 pt wide starting at `x`, vertically centred on `y`.
pub(crate) fn draw_mark(svg: &mut Svg, x: f64, y: f64, mark: Mark) {
    match mark {
        Mark::Swatch(c) => svg.rect(x + 2.0, y - 4.0, 8.0, 8.0, &Paint::fill(c)),
        Mark::Box(c) => svg.rect(
            x + 2.0,
            y - 4.0,
            8.0,
            8.0,
            &Paint::fill(c).opacity(0.35).with_stroke(c, 0.7),
        ),
        Mark::Dashed(c) => svg.line(x, y, x + 12.0, y, &Paint::stroke(c, 0.8).dash(2.0, 1.2)),
        Mark::MeanTriangle => svg.path(
            &format!(
                "M{} {}L{} {}L{} {}Z",
                num(x + 6.0),
                num(y - 3.3),
                num(x + 9.0),
                num(y + 2.1),
                num(x + 3.0),
                num(y + 2.1)
            ),
            &Paint::fill(Rgb::WHITE).with_stroke(Rgb::BLACK, 0.5),
            "",
        ),
        Mark::LineMarker(c, k) => {
            svg.line(x, y, x + 12.0, y, &Paint::stroke(c, 1.0));
            svg.path(
                &marker_path(k, 1.8),
                &Paint::fill(c),
                &format!("transform=\"translate({} {})\"", num(x + 6.0), num(y)),
            );
        }
    }
}

/// Picks the label rotation (0, 45 or 90 degrees) so labels of `widest` width fit in `slot`,
/// and returns (rotation, height needed below the axis).
pub(crate) fn label_rotation(widest: f64, slot: f64, size: f64) -> (f64, f64) {
    if widest + 2.0 <= slot {
        (0.0, size * 1.1)
    } else if slot >= size * 1.2 {
        (45.0, widest * std::f64::consts::FRAC_1_SQRT_2 + size)
    } else {
        (90.0, widest + 2.0)
    }
}

/// Draws a category label under an axis at `x` with the rotation from [`label_rotation`].
pub(crate) fn category_label(svg: &mut Svg, x: f64, y: f64, label: &str, rot: f64, size: f64) {
    if rot == 0.0 {
        svg.text(
            x,
            y,
            label,
            &Font::new(size).anchor(Anchor::Middle).valign(VAlign::Top),
        );
    } else {
        svg.text(
            x,
            y,
            label,
            &Font::new(size)
                .anchor(Anchor::End)
                .valign(VAlign::Middle)
                .rotate(-rot),
        );
    }
}

/// Truncates `s` with an ellipsis so it is at most `max_w` wide at `size`.
pub(crate) fn fit_text(s: &str, max_w: f64, size: f64) -> String {
    if text_width(s, size) <= max_w {
        return s.to_string();
    }
    let mut out = String::new();
    for c in s.chars() {
        let mut t = out.clone();
        t.push(c);
        t.push('\u{2026}');
        if text_width(&t, size) > max_w {
            break;
        }
        out.push(c);
    }
    out.push('\u{2026}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        let t = nice_ticks(0.0, 1.0, 6);
        assert_eq!(t.values, vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(t.label(0.6000000000000001), "0.6");
        let t = nice_ticks(-0.31, 0.31, 5);
        assert_eq!(
            t.values.iter().map(|v| t.label(*v)).collect::<Vec<_>>(),
            ["\u{2212}0.2", "0.0", "0.2"]
        );
        let t = nice_ticks(60.0, 100.0, 6);
        assert_eq!(t.values, vec![60.0, 70.0, 80.0, 90.0, 100.0]);
        assert_eq!(t.decimals, 0);
        let t = nice_ticks(5.0, 5.0, 5);
        assert!(t.values.len() >= 2);
    }

    #[test]
    fn ranges_widen_to_ticks() {
        let (lo, hi, t) = nice_range(0.0, 0.93, 5);
        assert_eq!(lo, 0.0);
        assert!((hi - 1.0).abs() < 1e-12, "{hi}");
        assert!(t.values.len() >= 3);
        let (lo, hi, _) = nice_range(0.0, 0.33, 5);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.4).abs() < 1e-12, "{hi}");
        let (lo, hi, _) = nice_range(-0.05, 0.2, 5);
        assert!(
            (lo + 0.1).abs() < 1e-12 && (hi - 0.2).abs() < 1e-12,
            "{lo} {hi}"
        );
    }

    #[test]
    fn significant_digits() {
        assert_eq!(fmt_sig(0.31234, 2), "0.31");
        assert_eq!(fmt_sig(12.6, 2), "13");
        assert_eq!(fmt_sig(-0.0042, 2), "\u{2212}0.0042");
        assert_eq!(fmt_sig(0.0, 2), "0");
    }
}
