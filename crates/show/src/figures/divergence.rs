//! Divergence figures: KL heat map between groups and KL by depth.

use crate::color::{self, Rgb};
use crate::figures::{finite_range, invalid};
use crate::layout::{
    category_label, colorbar, colorbar_width, fit_text, fmt_fixed, label_rotation, legend,
    legend_height, nice_range, y_axis, Lin, Mark, AXIS_C, AXIS_W, COLUMN_WIDTH, FS_LABEL, FS_TICK,
    MUTED,
};
use crate::svg::{text_width, Anchor, Font, Paint, Svg, VAlign};
use crate::{Figure, ShowError};

const PAD: f64 = 6.0;
/// Most groups in a KL heat map.
pub const MAX_HEATMAP: usize = 128;
/// Largest heat map whose values are printed in the cells.
pub const MAX_ANNOTATED: usize = 12;
/// Most depth groups or series in a divergence bar chart.
pub const MAX_BARS: usize = 64;

/// Heat map of KL divergences between groups: `kl[i][j]` is the divergence of row group `i`
/// from column group `j` (n×n, n = `labels.len()`); with `sort_by_mean` rows and columns are
/// ordered by the mean off-diagonal divergence of each group, smallest first. Viridis from 0 to
/// the largest value, a colour bar, and values printed in the cells when n ≤ 12. Cells are
/// `rect class="hm"` with `data-row`/`data-col` (original indices).
pub fn kl_heatmap(
    labels: &[String],
    kl: &[Vec<f64>],
    sort_by_mean: bool,
) -> Result<Figure, ShowError> {
    let n = labels.len();
    if n == 0 || n > MAX_HEATMAP {
        return Err(invalid(format!(
            "KL heat map: {n} groups is outside 1..={MAX_HEATMAP}"
        )));
    }
    if kl.len() != n {
        return Err(invalid(format!(
            "KL heat map: {n} labels but {} matrix rows",
            kl.len()
        )));
    }
    for (i, row) in kl.iter().enumerate() {
        if row.len() != n {
            return Err(invalid(format!(
                "KL heat map: row {i} has {} values, expected {n}",
                row.len()
            )));
        }
    }
    let at = |i: usize, j: usize| {
        kl.get(i)
            .and_then(|r| r.get(j))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut order: Vec<usize> = (0..n).collect();
    if sort_by_mean {
        let mean = |i: usize| {
            let (s, c) = (0..n)
                .filter(|&j| j != i)
                .map(|j| at(i, j))
                .filter(|v| v.is_finite())
                .fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
            if c > 0 {
                s / c as f64
            } else {
                f64::INFINITY
            }
        };
        let means: Vec<f64> = (0..n).map(mean).collect();
        order.sort_by(|&a, &b| means[a].total_cmp(&means[b]).then(a.cmp(&b)));
    }
    let vmax = finite_range(
        (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .map(|(i, j)| at(i, j)),
    )
    .map_or(1.0, |(_, hi)| hi.max(0.0));
    let vmax = if vmax > 0.0 { vmax } else { 1.0 };

    let short: Vec<String> = labels.iter().map(|l| fit_text(l, 70.0, FS_TICK)).collect();
    let lab_w = short
        .iter()
        .map(|l| text_width(l, FS_TICK))
        .fold(0.0, f64::max);
    let cb_ticks: Vec<(f64, String)> = {
        let (_, _, t) = nice_range(0.0, vmax, 5);
        t.values
            .iter()
            .filter(|v| **v <= vmax * (1.0 + 1e-9))
            .map(|v| (v / vmax, t.label(*v)))
            .collect()
    };
    let cb_label = "KL divergence (nats)";
    let cb_w = colorbar_width(6.0, &cb_ticks, cb_label);
    let left = PAD + lab_w + 3.0;
    let right = 8.0 + cb_w + PAD;
    let pitch = ((COLUMN_WIDTH - left - right) / n as f64).min(22.0);
    let grid = pitch * n as f64;
    let width = left + grid + right;
    let top = PAD;
    let bottom = lab_w * std::f64::consts::FRAC_1_SQRT_2 + FS_TICK + 4.0 + PAD;
    let height = top + grid + bottom;
    let mut svg = Svg::new(width, height, "KL divergence between groups");
    // Cell values share one number of decimals: two significant digits of the largest value.
    let decimals = (1 - vmax.log10().floor() as i64).clamp(0, 4) as usize;
    let cell_text = |v: f64| {
        if !v.is_finite() {
            "n/a".to_string()
        } else if v == 0.0 {
            "0".to_string()
        } else {
            fmt_fixed(v, decimals)
        }
    };
    let fs_val = if n <= MAX_ANNOTATED {
        let widest = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .map(|(i, j)| text_width(&cell_text(at(i, j)), 1.0))
            .fold(0.0, f64::max);
        (0.86 * pitch / widest.max(0.1)).min(FS_TICK)
    } else {
        0.0
    };
    svg.open("class=\"heatmap\"");
    for (pi, &i) in order.iter().enumerate() {
        for (pj, &j) in order.iter().enumerate() {
            let v = at(i, j);
            let c = if v.is_finite() {
                color::viridis(v / vmax)
            } else {
                color::MISSING
            };
            let x = left + pj as f64 * pitch;
            let y = top + pi as f64 * pitch;
            svg.rect_attr(
                x,
                y,
                pitch + if pj + 1 < n { 0.2 } else { 0.0 },
                pitch + if pi + 1 < n { 0.2 } else { 0.0 },
                &Paint::fill(c),
                &format!("class=\"hm\" data-row=\"{i}\" data-col=\"{j}\""),
            );
            if fs_val >= 3.5 {
                svg.text(
                    x + pitch / 2.0,
                    y + pitch / 2.0,
                    &cell_text(v),
                    &Font::new(fs_val)
                        .anchor(Anchor::Middle)
                        .valign(VAlign::Middle)
                        .fill(c.contrast_text()),
                );
            }
        }
    }
    svg.close();
    svg.rect(left, top, grid, grid, &Paint::stroke(AXIS_C, 0.4));
    for (p, &i) in order.iter().enumerate() {
        let c = top + p as f64 * pitch + pitch / 2.0;
        svg.text(
            left - 3.0,
            c,
            &short[i],
            &Font::new(FS_TICK)
                .anchor(Anchor::End)
                .valign(VAlign::Middle),
        );
        svg.text(
            left + p as f64 * pitch + pitch / 2.0,
            top + grid + 3.0,
            &short[i],
            &Font::new(FS_TICK)
                .anchor(Anchor::End)
                .valign(VAlign::Middle)
                .rotate(-45.0),
        );
    }
    colorbar(
        &mut svg,
        left + grid + 8.0,
        top,
        6.0,
        grid.max(40.0),
        &color::viridis,
        &cb_ticks,
        cb_label,
    );
    Ok(svg.finish())
}

/// Grouped bars of a divergence by depth group: x = `depth_labels` (e.g. "first",
/// "(0.0, 0.1]", …), one bar series per `series` entry (name, value per depth group; `None` is
/// drawn as "n/a"), and optionally a noise floor per depth group (e.g. the within-group KL) as a
/// grey band with a dashed line. Bars are `rect class="bar"` with `data-series`, `data-depth`.
pub fn divergence_by_depth(
    depth_labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
    noise_floor: Option<&[Option<f64>]>,
) -> Result<Figure, ShowError> {
    divergence_by_depth_marked(depth_labels, series, noise_floor, None)
}

/// [`divergence_by_depth`] with significance marks: `marks[s][d]` puts an asterisk
/// (`text class="sig"`) above the bar of series `s` at depth group `d`, explained in a note
/// under the axis (e.g. Benjamini–Hochberg q ≤ 0.05 of a permutation test).
pub fn divergence_by_depth_marked(
    depth_labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
    noise_floor: Option<&[Option<f64>]>,
    marks: Option<&[Vec<bool>]>,
) -> Result<Figure, ShowError> {
    let nd = depth_labels.len();
    let ns = series.len();
    if nd == 0 || nd > MAX_BARS || ns == 0 || ns > MAX_BARS {
        return Err(invalid(format!(
            "divergence by depth: {nd} depth groups and {ns} series; each must be in 1..={MAX_BARS}"
        )));
    }
    for (name, v) in series {
        if v.len() != nd {
            return Err(invalid(format!(
                "divergence by depth: series {name} has {} values for {nd} depth groups",
                v.len()
            )));
        }
    }
    if let Some(f) = noise_floor {
        if f.len() != nd {
            return Err(invalid(format!(
                "divergence by depth: noise floor has {} values for {nd} depth groups",
                f.len()
            )));
        }
    }
    if let Some(m) = marks {
        if m.len() != ns || m.iter().any(|r| r.len() != nd) {
            return Err(invalid(format!(
                "divergence by depth: marks must be {ns} series × {nd} depth groups"
            )));
        }
    }
    let marked = |s: usize, d: usize| marks.is_some_and(|m| m[s][d]);
    let note_h = if marks.is_some() { FS_TICK + 3.0 } else { 0.0 };
    let fin = |v: &Option<f64>| v.filter(|x| x.is_finite());
    let all = series
        .iter()
        .flat_map(|(_, v)| v.iter().filter_map(fin))
        .chain(noise_floor.into_iter().flatten().filter_map(fin));
    let (lo, hi) = finite_range(all).unwrap_or((0.0, 1.0));
    let (ylo, yhi, yt) = nice_range(lo.min(0.0), hi.max(0.0) * 1.04, 6);

    let mut items: Vec<(String, Mark)> = series
        .iter()
        .enumerate()
        .map(|(s, (name, _))| (name.clone(), Mark::Swatch(color::category(s))))
        .collect();
    if noise_floor.is_some() {
        items.push((
            "noise floor".to_string(),
            Mark::Dashed(Rgb(0x44, 0x44, 0x44)),
        ));
    }
    let width = COLUMN_WIDTH;
    let ytw = yt
        .values
        .iter()
        .map(|v| text_width(&yt.label(*v), FS_TICK))
        .fold(0.0, f64::max);
    let left = PAD + FS_LABEL + 4.0 + ytw + 4.0;
    let right = PAD;
    let plot_w = width - left - right;
    let slot = plot_w / nd as f64;
    let widest = depth_labels
        .iter()
        .map(|l| text_width(l, FS_TICK))
        .fold(0.0, f64::max);
    let (rot, lab_h) = label_rotation(widest, slot, FS_TICK);
    let leg_h = legend_height(&items, plot_w, FS_TICK);
    let top = PAD + leg_h + 4.0;
    let plot_h = 120.0;
    let height = top + plot_h + 3.0 + lab_h + 4.0 + FS_LABEL + PAD + note_h;
    let mut svg = Svg::new(width, height, "KL divergence by depth");
    legend(&mut svg, left + plot_w / 2.0, PAD, plot_w, &items, FS_TICK);

    let ys = Lin::new(ylo, yhi, top + plot_h, top);
    y_axis(&mut svg, left, &ys, &yt, true, Some(width - right));
    svg.text(
        PAD,
        top + plot_h / 2.0,
        "KL divergence (nats)",
        &Font::new(FS_LABEL)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top)
            .rotate(-90.0),
    );
    let group_w = slot * 0.82;
    let bar_w = group_w / ns as f64;
    let y0 = ys.map(0.0);
    for (d, depth_label) in depth_labels.iter().enumerate() {
        let gx = left + d as f64 * slot + (slot - group_w) / 2.0;
        if let Some(Some(f)) = noise_floor.and_then(|f| f.get(d)).map(fin) {
            let fy = ys.map(f);
            svg.rect_attr(
                gx - 1.0,
                fy.min(y0),
                group_w + 2.0,
                (y0 - fy).abs(),
                &Paint::fill(Rgb(0xD9, 0xD9, 0xD9)),
                &format!("class=\"floor-band\" data-depth=\"{d}\""),
            );
        }
        for (s, (_, vals)) in series.iter().enumerate() {
            let x = gx + s as f64 * bar_w;
            match vals.get(d).and_then(fin) {
                Some(v) => {
                    let vy = ys.map(v);
                    svg.rect_attr(
                        x + bar_w * 0.06,
                        vy.min(y0),
                        bar_w * 0.88,
                        (y0 - vy).abs(),
                        &Paint::fill(color::category(s)),
                        &format!("class=\"bar\" data-series=\"{s}\" data-depth=\"{d}\""),
                    );
                    if marked(s, d) {
                        svg.text_attr(
                            x + bar_w / 2.0,
                            vy.min(y0) - 0.5,
                            "*",
                            &Font::new(FS_LABEL).anchor(Anchor::Middle),
                            &format!("class=\"sig\" data-series=\"{s}\" data-depth=\"{d}\""),
                        );
                    }
                }
                None => {
                    let fs = (bar_w * 0.9).clamp(3.0, 5.5);
                    svg.text_attr(
                        x + bar_w / 2.0,
                        y0 - 1.5,
                        "n/a",
                        &Font::new(fs)
                            .valign(VAlign::Middle)
                            .rotate(-90.0)
                            .fill(MUTED),
                        &format!("class=\"na\" data-series=\"{s}\" data-depth=\"{d}\""),
                    );
                }
            }
        }
        if let Some(Some(f)) = noise_floor.and_then(|f| f.get(d)).map(fin) {
            let fy = ys.map(f);
            svg.line_attr(
                gx - 1.0,
                fy,
                gx + group_w + 1.0,
                fy,
                &Paint::stroke(Rgb(0x44, 0x44, 0x44), 0.8).dash(2.0, 1.2),
                &format!("class=\"floor\" data-depth=\"{d}\""),
            );
        }
        category_label(
            &mut svg,
            left + (d as f64 + 0.5) * slot,
            top + plot_h + 3.0,
            depth_label,
            rot,
            FS_TICK,
        );
    }
    svg.line(left, y0, width - right, y0, &Paint::stroke(AXIS_C, AXIS_W));
    svg.text(
        left + plot_w / 2.0,
        height - PAD - note_h,
        "relative depth",
        &Font::new(FS_LABEL).anchor(Anchor::Middle),
    );
    if marks.is_some() {
        svg.text(
            left + plot_w / 2.0,
            height - PAD,
            &fit_text(SIG_NOTE, plot_w, FS_TICK),
            &Font::new(FS_TICK).anchor(Anchor::Middle).fill(MUTED),
        );
    }
    Ok(svg.finish())
}

/// The note explaining significance marks.
pub(crate) const SIG_NOTE: &str = "* Benjamini-Hochberg q <= 0.05 (permutation test)";
