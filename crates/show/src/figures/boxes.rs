//! Metric box plots by depth group (the robustness paper's 3×N grid).

use crate::color::{self, Rgb};
use crate::figures::invalid;
use crate::layout::{
    category_label, fit_text, label_rotation, legend, legend_height, nice_range, y_axis, Lin, Mark,
    AXIS_C, AXIS_W, COLUMN_WIDTH, FS_LABEL, FS_TICK, MUTED, PAGE_WIDTH,
};
use crate::stats::box_stats;
use crate::svg::{num, text_width, Anchor, Font, Paint, Svg, VAlign};
use crate::{Figure, ShowError};

const PAD: f64 = 6.0;
/// Most metrics (rows), columns, depth groups or groups.
pub const MAX_AXIS: usize = 32;
/// Most outlier dots drawn per box (the rest are summarised by the whiskers).
pub const MAX_OUTLIERS_DRAWN: usize = 2000;

/// Box plots of metrics by depth group: a grid with one row per metric (e.g. sparsity, variance
/// entropy, orthogonality) and one column per entry of `columns` (e.g. datasets); inside each
/// panel, for every depth group, one Tukey box per group (e.g. normal vs robust) side by side.
/// `values(metric, column, depth, group)` returns the sample (NaN ignored). Boxes show quartiles,
/// whiskers at 1.5 IQR, outliers as dots and the mean as a triangle; each metric row shares one
/// y range. Boxes are groups `class="box"` with `data-metric`, `data-col`, `data-depth`,
/// `data-group`.
pub fn metric_boxes(
    metrics: &[String],
    columns: &[String],
    depth_labels: &[String],
    groups: &[String],
    values: &dyn Fn(usize, usize, usize, usize) -> Vec<f64>,
) -> Result<Figure, ShowError> {
    metric_boxes_marked(metrics, columns, depth_labels, groups, values, None)
}

/// [`metric_boxes`] with significance marks: `marks(metric, column, depth)` puts an asterisk
/// (`text class="sig"`) at the top of that depth group's slot, explained in a note under the
/// axis (e.g. Benjamini–Hochberg q ≤ 0.05 of a permutation test of the group difference).
pub fn metric_boxes_marked(
    metrics: &[String],
    columns: &[String],
    depth_labels: &[String],
    groups: &[String],
    values: &dyn Fn(usize, usize, usize, usize) -> Vec<f64>,
    marks: Option<&dyn Fn(usize, usize, usize) -> bool>,
) -> Result<Figure, ShowError> {
    let note_h = if marks.is_some() { FS_TICK + 3.0 } else { 0.0 };
    let (nm, nc, nd, ng) = (
        metrics.len(),
        columns.len(),
        depth_labels.len(),
        groups.len(),
    );
    for (what, k) in [
        ("metrics", nm),
        ("columns", nc),
        ("depth groups", nd),
        ("groups", ng),
    ] {
        if k == 0 || k > MAX_AXIS {
            return Err(invalid(format!(
                "metric boxes: {k} {what} is outside 1..={MAX_AXIS}"
            )));
        }
    }
    // stats[m][c][d][g]
    let mut stats = Vec::with_capacity(nm);
    for m in 0..nm {
        let mut per_col = Vec::with_capacity(nc);
        for c in 0..nc {
            let mut per_depth = Vec::with_capacity(nd);
            for d in 0..nd {
                per_depth.push(
                    (0..ng)
                        .map(|g| box_stats(&values(m, c, d, g)))
                        .collect::<Vec<_>>(),
                );
            }
            per_col.push(per_depth);
        }
        stats.push(per_col);
    }

    let width = if nc == 1 {
        COLUMN_WIDTH
    } else {
        (80.0 + nc as f64 * 150.0).min(PAGE_WIDTH)
    };
    let items: Vec<(String, Mark)> = groups
        .iter()
        .enumerate()
        .map(|(g, name)| (name.clone(), Mark::Box(color::category(g))))
        .chain(std::iter::once(("mean".to_string(), Mark::MeanTriangle)))
        .collect();
    // Per-row y ranges and tick widths.
    let mut rows = Vec::with_capacity(nm);
    for per_col in &stats {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for b in per_col.iter().flatten().flatten() {
            if b.n == 0 {
                continue;
            }
            for v in [b.lo_whisker, b.hi_whisker, b.mean]
                .into_iter()
                .chain(b.outliers.iter().copied())
            {
                if v.is_finite() {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = (hi - lo) * 0.04;
        rows.push(nice_range(lo - pad, hi + pad, 5));
    }
    let ytw = rows
        .iter()
        .flat_map(|(_, _, t)| t.values.iter().map(|v| text_width(&t.label(*v), FS_TICK)))
        .fold(0.0, f64::max);
    let left = PAD + FS_LABEL + 4.0 + ytw + 4.0;
    let right = PAD;
    let col_gap = 8.0;
    let pw = (width - left - right - col_gap * (nc - 1) as f64) / nc as f64;
    let slot = pw / nd as f64;
    let widest = depth_labels
        .iter()
        .map(|l| text_width(l, FS_TICK))
        .fold(0.0, f64::max);
    let (rot, lab_h) = label_rotation(widest, slot, FS_TICK);
    let leg_h = legend_height(&items, width - 2.0 * PAD, FS_TICK);
    let col_title_h = if nc > 1 || !columns[0].is_empty() {
        FS_LABEL + 4.0
    } else {
        0.0
    };
    let top = PAD + leg_h + 3.0 + col_title_h;
    let ph = 70.0;
    let row_gap = 11.0;
    let height = top
        + nm as f64 * ph
        + (nm - 1) as f64 * row_gap
        + 3.0
        + lab_h
        + 4.0
        + FS_LABEL
        + PAD
        + note_h;
    let mut svg = Svg::new(width, height, "metrics by depth");
    legend(
        &mut svg,
        width / 2.0,
        PAD,
        width - 2.0 * PAD,
        &items,
        FS_TICK,
    );
    for (c, name) in columns.iter().enumerate() {
        let x0 = left + c as f64 * (pw + col_gap);
        svg.text(
            x0 + pw / 2.0,
            top - 3.0,
            &fit_text(name, pw, FS_LABEL),
            &Font::new(FS_LABEL).anchor(Anchor::Middle),
        );
    }
    for (m, per_col) in stats.iter().enumerate() {
        let y_top = top + m as f64 * (ph + row_gap);
        let (ylo, yhi, yt) = &rows[m];
        let ys = Lin::new(*ylo, *yhi, y_top + ph, y_top);
        svg.text(
            PAD,
            y_top + ph / 2.0,
            &fit_text(&metrics[m], ph, FS_LABEL),
            &Font::new(FS_LABEL)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top)
                .rotate(-90.0),
        );
        for (c, per_depth) in per_col.iter().enumerate() {
            let x0 = left + c as f64 * (pw + col_gap);
            y_axis(&mut svg, x0, &ys, yt, c == 0, Some(x0 + pw));
            svg.line(
                x0,
                y_top + ph,
                x0 + pw,
                y_top + ph,
                &Paint::stroke(AXIS_C, AXIS_W),
            );
            for (d, per_group) in per_depth.iter().enumerate() {
                if marks.is_some_and(|f| f(m, c, d)) {
                    svg.text_attr(
                        x0 + (d as f64 + 0.5) * slot,
                        y_top + FS_LABEL * 0.8,
                        "*",
                        &Font::new(FS_LABEL).anchor(Anchor::Middle),
                        &format!(
                            "class=\"sig\" data-metric=\"{m}\" data-col=\"{c}\" data-depth=\"{d}\""
                        ),
                    );
                }
                let gw = slot * 0.84;
                let bw = gw / ng as f64;
                let gx = x0 + d as f64 * slot + (slot - gw) / 2.0;
                for (g, b) in per_group.iter().enumerate() {
                    let cx = gx + (g as f64 + 0.5) * bw;
                    let col = color::category(g);
                    let w = (bw * 0.78).min(14.0);
                    svg.open(&format!(
                        "class=\"box\" data-metric=\"{m}\" data-col=\"{c}\" data-depth=\"{d}\" data-group=\"{g}\" data-n=\"{}\"",
                        b.n
                    ));
                    if b.n == 0 {
                        svg.text(
                            cx,
                            y_top + ph - 2.0,
                            "n/a",
                            &Font::new((bw * 0.9).clamp(3.0, 5.0))
                                .valign(VAlign::Middle)
                                .rotate(-90.0)
                                .fill(MUTED),
                        );
                        svg.close();
                        continue;
                    }
                    let stroke = Paint::stroke(col, 0.6);
                    svg.line(cx, ys.map(b.q3), cx, ys.map(b.hi_whisker), &stroke);
                    svg.line(cx, ys.map(b.q1), cx, ys.map(b.lo_whisker), &stroke);
                    for v in [b.lo_whisker, b.hi_whisker] {
                        svg.line(cx - w * 0.3, ys.map(v), cx + w * 0.3, ys.map(v), &stroke);
                    }
                    let (bt, bb) = (ys.map(b.q3), ys.map(b.q1));
                    svg.rect_attr(
                        cx - w / 2.0,
                        bt,
                        w,
                        (bb - bt).max(0.3),
                        &Paint::fill(col).opacity(0.35).with_stroke(col, 0.6),
                        "class=\"iqr\"",
                    );
                    svg.line(
                        cx - w / 2.0,
                        ys.map(b.median),
                        cx + w / 2.0,
                        ys.map(b.median),
                        &Paint::stroke(Rgb::BLACK, 0.8),
                    );
                    let r = (w * 0.12).clamp(0.35, 0.8);
                    for v in b.outliers.iter().take(MAX_OUTLIERS_DRAWN) {
                        svg.circle(
                            cx,
                            ys.map(*v),
                            r,
                            &Paint::stroke(col, 0.3),
                            "class=\"outlier\"",
                        );
                    }
                    let t = (w * 0.22).clamp(0.9, 1.8);
                    svg.path(
                        &triangle(t),
                        &Paint::fill(Rgb::WHITE).with_stroke(Rgb::BLACK, 0.4),
                        &format!(
                            "class=\"mean\" transform=\"translate({} {})\"",
                            num(cx),
                            num(ys.map(b.mean))
                        ),
                    );
                    svg.close();
                }
                if m + 1 == nm {
                    category_label(
                        &mut svg,
                        x0 + (d as f64 + 0.5) * slot,
                        y_top + ph + 3.0,
                        &depth_labels[d],
                        rot,
                        FS_TICK,
                    );
                }
            }
        }
    }
    svg.text(
        left + (width - left - right) / 2.0,
        height - PAD - note_h,
        "relative depth",
        &Font::new(FS_LABEL).anchor(Anchor::Middle),
    );
    if marks.is_some() {
        svg.text(
            left + (width - left - right) / 2.0,
            height - PAD,
            &fit_text(
                crate::figures::divergence::SIG_NOTE,
                width - left - right,
                FS_TICK,
            ),
            &Font::new(FS_TICK).anchor(Anchor::Middle).fill(MUTED),
        );
    }
    Ok(svg.finish())
}

fn triangle(t: f64) -> String {
    format!(
        "M0 {}L{} {}L{} {}Z",
        num(-t * 1.1),
        num(t),
        num(t * 0.7),
        num(-t),
        num(t * 0.7)
    )
}
