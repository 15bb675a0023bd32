//! PCA figures: basis eigen-images, cumulative explained variance, coefficient ridge plots.

use crate::color;
use crate::figures::{check_kernel, draw_pixels, finite_range, invalid, max_abs};
use crate::layout::{
    colorbar_h, colorbar_h_height, draw_mark, fit_text, marker_path, nice_range, nice_ticks,
    x_axis, y_axis, Lin, Mark, Ticks, AXIS_C, AXIS_W, COLUMN_WIDTH, FS_LABEL, FS_TICK, GRID_C,
    MUTED, PAGE_WIDTH,
};
use crate::svg::{num, text_width, Anchor, Font, Paint, Svg, VAlign};
use crate::{Figure, ShowError};

const PAD: f64 = 6.0;
/// Most panels, groups or components in one PCA figure.
pub const MAX_SERIES: usize = 64;
/// Most density samples per curve (longer curves are thinned evenly).
pub const MAX_CURVE_POINTS: usize = 512;

/// One panel of [`basis_images`]: a group's principal components.
#[derive(Debug, Clone, PartialEq)]
pub struct BasisPanel {
    /// Panel name, e.g. "all", "normal", "robust".
    pub name: String,
    /// Components v0, v1, … each of kh·kw values (row-major).
    pub components: Vec<Vec<f64>>,
    /// Explained-variance ratio of each component as a fraction (0..=1); printed in percent.
    pub ratios: Vec<f64>,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

/// PCA bases: one row per panel with its eigen-images v0, v1, … (each on the diverging map scaled
/// to its own ±max, since a component's sign is arbitrary) and the explained-variance ratio in
/// percent under each. Images are groups `class="basis"` with `data-panel` and `data-comp`.
pub fn basis_images(panels: &[BasisPanel]) -> Result<Figure, ShowError> {
    if panels.is_empty() || panels.len() > MAX_SERIES {
        return Err(invalid(format!(
            "basis images: {} panels is outside 1..={MAX_SERIES}",
            panels.len()
        )));
    }
    let mut ncomp = 0;
    for p in panels {
        check_kernel(&format!("basis images, panel {}", p.name), p.kh, p.kw)?;
        if p.components.len() > MAX_SERIES {
            return Err(invalid(format!(
                "basis images, panel {}: {} components is above {MAX_SERIES}",
                p.name,
                p.components.len()
            )));
        }
        for (k, v) in p.components.iter().enumerate() {
            if v.len() != p.kh * p.kw {
                return Err(invalid(format!(
                    "basis images, panel {}: component {k} has {} values, a {}x{} kernel needs {}",
                    p.name,
                    v.len(),
                    p.kh,
                    p.kw,
                    p.kh * p.kw
                )));
            }
        }
        ncomp = ncomp.max(p.components.len());
    }
    let ncomp = ncomp.max(1);
    let pitch = ((COLUMN_WIDTH - 2.0 * PAD) / ncomp as f64).min(30.0);
    let img = pitch * 0.8;
    let grid_w = ncomp as f64 * pitch;
    let width = grid_w + 2.0 * PAD;
    let gx = PAD;
    // Ratio labels: shrink the font until "99.9%" fits the pitch.
    let rfs = (0.95 * pitch / text_width("99.9%", 1.0)).min(FS_TICK);
    let head_h = FS_LABEL + 4.0;
    let panel_h = FS_LABEL + 3.0 + img + 2.0 + rfs + 4.0;
    let cb_label = "component value / max |value| of each image";
    let cb_h = colorbar_h_height(5.0, cb_label);
    let height = PAD + head_h + panels.len() as f64 * panel_h + 4.0 + cb_h + PAD;
    let mut svg = Svg::new(width, height, "PCA basis");

    for k in 0..ncomp {
        svg.text(
            gx + k as f64 * pitch + pitch / 2.0,
            PAD,
            &format!("v{k}"),
            &Font::new(FS_LABEL)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top),
        );
    }
    for (pi, p) in panels.iter().enumerate() {
        let y0 = PAD + head_h + pi as f64 * panel_h;
        svg.text(
            gx,
            y0,
            &fit_text(&p.name, grid_w, FS_LABEL),
            &Font::new(FS_LABEL).valign(VAlign::Top),
        );
        let iy = y0 + FS_LABEL + 3.0;
        let px = img / p.kh.max(p.kw) as f64;
        for (k, v) in p.components.iter().enumerate() {
            let m = max_abs(v.iter().copied());
            let cx = gx + k as f64 * pitch + pitch / 2.0;
            let x0 = cx - px * p.kw as f64 / 2.0;
            let yy = iy + (img - px * p.kh as f64) / 2.0;
            svg.open(&format!(
                "class=\"basis\" data-panel=\"{pi}\" data-comp=\"{k}\""
            ));
            let color = |r: usize, c: usize| {
                color::diverging(v.get(r * p.kw + c).copied().unwrap_or(f64::NAN) / m)
            };
            draw_pixels(&mut svg, x0, yy, px, p.kh, p.kw, &color, false);
            svg.rect(
                x0,
                yy,
                px * p.kw as f64,
                px * p.kh as f64,
                &Paint::stroke(color::Rgb(0xAA, 0xAA, 0xAA), 0.3),
            );
            if let Some(r) = p.ratios.get(k) {
                let lab = if r.is_finite() {
                    format!("{:.1}%", r * 100.0)
                } else {
                    "n/a".to_string()
                };
                svg.text(
                    cx,
                    iy + img + 2.0,
                    &lab,
                    &Font::new(rfs).anchor(Anchor::Middle).valign(VAlign::Top),
                );
            }
            svg.close();
        }
    }
    colorbar_h(
        &mut svg,
        width / 2.0,
        PAD + head_h + panels.len() as f64 * panel_h + 4.0,
        90.0,
        5.0,
        &|t| color::diverging(2.0 * t - 1.0),
        &[
            (0.0, "\u{2212}1".to_string()),
            (0.5, "0".to_string()),
            (1.0, "1".to_string()),
        ],
        cb_label,
    );
    Ok(svg.finish())
}

/// Cumulative explained variance per group: `groups` = (name, explained-variance ratio of each
/// component as a fraction); drawn as lines with markers, x = number of components (1, 2, …),
/// y = cumulative ratio in percent. Markers are groups `class="pt"` with `data-group`, `data-k`
/// (components, from 1) and `transform="translate(x y)"`; y ticks are groups `class="ytick"`.
pub fn cumulative_variance(groups: &[(String, Vec<f64>)]) -> Result<Figure, ShowError> {
    if groups.is_empty() || groups.len() > MAX_SERIES {
        return Err(invalid(format!(
            "cumulative variance: {} groups is outside 1..={MAX_SERIES}",
            groups.len()
        )));
    }
    let n = groups.iter().map(|g| g.1.len()).max().unwrap_or(0);
    if n == 0 || n > 4096 {
        return Err(invalid(format!(
            "cumulative variance: {n} components is outside 1..=4096"
        )));
    }
    let cum: Vec<Vec<f64>> = groups
        .iter()
        .map(|(_, r)| {
            let mut s = 0.0;
            r.iter()
                .map(|v| {
                    s += v;
                    s * 100.0
                })
                .collect()
        })
        .collect();
    let (lo, hi) = finite_range(cum.iter().flatten().copied()).unwrap_or((0.0, 100.0));
    let (ylo, yhi, yt) = nice_range(lo.min(100.0), hi.max(100.0), 6);
    let xt = if n <= 12 {
        Ticks {
            values: (1..=n).map(|k| k as f64).collect(),
            decimals: 0,
        }
    } else {
        let t = nice_ticks(1.0, n as f64, 8);
        Ticks {
            values: t.values.into_iter().filter(|v| *v >= 1.0).collect(),
            decimals: 0,
        }
    };
    let ytw = yt
        .values
        .iter()
        .map(|v| text_width(&yt.label(*v), FS_TICK))
        .fold(0.0, f64::max);
    let width = COLUMN_WIDTH;
    let left = PAD + FS_LABEL + 4.0 + ytw + 4.0;
    let right = PAD + 4.0;
    let top = PAD + 2.0;
    let bottom = 3.0 + FS_TICK + 4.0 + FS_LABEL + PAD;
    let plot_h = 150.0;
    let height = top + plot_h + bottom;
    let mut svg = Svg::new(width, height, "cumulative explained variance");
    let xs = Lin::new(0.5, n as f64 + 0.5, left, width - right);
    let ys = Lin::new(ylo, yhi, top + plot_h, top);
    y_axis(&mut svg, left, &ys, &yt, true, Some(width - right));
    x_axis(&mut svg, top + plot_h, &xs, &xt, true);
    svg.text(
        PAD,
        top + plot_h / 2.0,
        "cumulative explained variance (%)",
        &Font::new(FS_LABEL)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top)
            .rotate(-90.0),
    );
    svg.text(
        (left + width - right) / 2.0,
        height - PAD,
        "number of components",
        &Font::new(FS_LABEL).anchor(Anchor::Middle),
    );
    for (g, c) in cum.iter().enumerate() {
        let col = color::category(g);
        let pts: Vec<(f64, f64)> = c
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (xs.map(k as f64 + 1.0), ys.map(*v)))
            .collect();
        svg.poly(
            &pts,
            false,
            &Paint::stroke(col, 1.0),
            &format!("class=\"series\" data-group=\"{g}\""),
        );
        let mpath = marker_path(g, 2.0);
        for (k, v) in c.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            svg.path(
                &mpath,
                &Paint::fill(col).with_stroke(color::Rgb::WHITE, 0.4),
                &format!(
                    "class=\"pt\" data-group=\"{g}\" data-k=\"{}\" transform=\"translate({} {})\"",
                    k + 1,
                    num(xs.map(k as f64 + 1.0)),
                    num(ys.map(*v))
                ),
            );
        }
    }
    // Legend inside the plot, lower right (cumulative curves rise to the upper left).
    let lw = groups
        .iter()
        .map(|(name, _)| 15.0 + text_width(&fit_text(name, 100.0, FS_TICK), FS_TICK))
        .fold(0.0, f64::max);
    let row = FS_TICK + 3.0;
    let lh = groups.len() as f64 * row + 4.0;
    let lx = width - right - lw - 8.0;
    let ly = top + plot_h - lh - 4.0;
    svg.open("class=\"legend\"");
    svg.rect(
        lx - 3.0,
        ly,
        lw + 8.0,
        lh,
        &Paint::fill(color::Rgb::WHITE).with_stroke(GRID_C, 0.5),
    );
    for (g, (name, _)) in groups.iter().enumerate() {
        let y = ly + 2.0 + row * (g as f64 + 0.5);
        draw_mark(&mut svg, lx, y, Mark::LineMarker(color::category(g), g));
        svg.text(
            lx + 15.0,
            y,
            &fit_text(name, 100.0, FS_TICK),
            &Font::new(FS_TICK).valign(VAlign::Middle),
        );
    }
    svg.close();
    Ok(svg.finish())
}

/// Ridge plot of PCA coefficient densities: one row per group, one column per component c0…;
/// `groups` = (name, per component the density sampled on an even grid over `x_range`, first and
/// last sample at the ends). Curves are filled in the group's colour and may overlap the row
/// above; each column's height is scaled to its largest density. Curves are paths
/// `class="ridge"` with `data-group` and `data-comp`.
pub fn ridge_plot(
    x_range: (f64, f64),
    components: usize,
    groups: &[(String, Vec<Vec<f64>>)],
) -> Result<Figure, ShowError> {
    let (xlo, xhi) = x_range;
    if !(xlo.is_finite() && xhi.is_finite() && xlo < xhi) {
        return Err(invalid(format!(
            "ridge plot: x range ({xlo}, {xhi}) must be finite and increasing"
        )));
    }
    if components == 0 || components > MAX_SERIES {
        return Err(invalid(format!(
            "ridge plot: {components} components is outside 1..={MAX_SERIES}"
        )));
    }
    if groups.is_empty() || groups.len() > MAX_SERIES {
        return Err(invalid(format!(
            "ridge plot: {} groups is outside 1..={MAX_SERIES}",
            groups.len()
        )));
    }
    let dens = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let peaks: Vec<f64> = (0..components)
        .map(|c| {
            let m = groups
                .iter()
                .filter_map(|(_, d)| d.get(c))
                .flat_map(|d| d.iter().map(|v| dens(*v)))
                .fold(0.0, f64::max);
            if m > 0.0 {
                m
            } else {
                1.0
            }
        })
        .collect();

    let label_w = groups
        .iter()
        .map(|(n, _)| text_width(&fit_text(n, 90.0, FS_LABEL), FS_LABEL))
        .fold(0.0, f64::max);
    let left = PAD + label_w + 5.0;
    let right = PAD;
    let want = left + right + components as f64 * 52.0;
    let width = if want <= COLUMN_WIDTH {
        COLUMN_WIDTH
    } else {
        want.min(PAGE_WIDTH)
    };
    let colw = (width - left - right) / components as f64;
    let col_gap = (colw * 0.1).min(6.0);
    let pw = colw - col_gap;
    let rh = 13.0;
    let amp = rh * 1.7;
    let head = PAD + FS_LABEL + 3.0;
    let base = |r: usize| head + amp + r as f64 * rh;
    let last = base(groups.len() - 1);
    let height = last + 3.0 + FS_TICK + 4.0 + FS_LABEL + PAD;
    let mut svg = Svg::new(width, height, "PCA coefficient densities");

    let xlabels = column_ticks(xlo, xhi, pw, col_gap);
    for (c, &peak) in peaks.iter().enumerate() {
        let x0 = left + c as f64 * colw + col_gap / 2.0;
        let xs = Lin::new(xlo, xhi, x0, x0 + pw);
        svg.text(
            x0 + pw / 2.0,
            PAD,
            &format!("c{c}"),
            &Font::new(FS_LABEL)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top),
        );
        if xlo < 0.0 && xhi > 0.0 {
            svg.line(
                xs.map(0.0),
                head,
                xs.map(0.0),
                last,
                &Paint::stroke(GRID_C, 0.5).dash(1.0, 1.0),
            );
        }
        for (g, (_, d)) in groups.iter().enumerate() {
            let y0 = base(g);
            svg.line(x0, y0, x0 + pw, y0, &Paint::stroke(GRID_C, 0.4));
            let Some(curve) = d.get(c) else { continue };
            if curve.len() < 2 {
                continue;
            }
            let stride = curve.len().div_ceil(MAX_CURVE_POINTS).max(1);
            let nseg = (curve.len() - 1) as f64;
            let mut pts: Vec<(f64, f64)> = Vec::with_capacity(curve.len() / stride + 3);
            pts.push((xs.map(xlo), y0));
            let mut idx: Vec<usize> = (0..curve.len()).step_by(stride).collect();
            if idx.last() != Some(&(curve.len() - 1)) {
                idx.push(curve.len() - 1);
            }
            for i in idx {
                let v = curve.get(i).copied().map_or(0.0, dens);
                let x = xlo + (xhi - xlo) * i as f64 / nseg;
                pts.push((xs.map(x), y0 - v / peak * amp));
            }
            pts.push((xs.map(xhi), y0));
            let col = color::category(g);
            svg.poly(
                &pts,
                true,
                &Paint::fill(col).opacity(0.7).with_stroke(col, 0.6),
                &format!("class=\"ridge\" data-group=\"{g}\" data-comp=\"{c}\""),
            );
        }
        let ax_y = last + 1.5;
        svg.open("class=\"xaxis\"");
        let f = Font::new(FS_TICK)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top);
        for (v, lab, anchor) in &xlabels {
            let x = xs.map(*v);
            svg.line(x, ax_y, x, ax_y + 2.0, &Paint::stroke(AXIS_C, AXIS_W));
            svg.text(x, ax_y + 3.0, lab, &f.anchor(*anchor));
        }
        svg.line(x0, ax_y, x0 + pw, ax_y, &Paint::stroke(AXIS_C, AXIS_W));
        svg.close();
    }
    for (g, (name, _)) in groups.iter().enumerate() {
        svg.text(
            left - 5.0,
            base(g) - 1.0,
            &fit_text(name, 90.0, FS_LABEL),
            &Font::new(FS_LABEL).anchor(Anchor::End),
        );
    }
    svg.text(
        (left + width - right) / 2.0,
        height - PAD,
        "coefficient value",
        &Font::new(FS_LABEL).anchor(Anchor::Middle).fill(MUTED),
    );
    Ok(svg.finish())
}

/// Tick values, labels and anchors for a narrow facet column `pw` wide over `lo..hi`: nice
/// interior ticks when their labels fit side by side, else the two ends (labels inside the
/// column) and 0 when it is inside and fits.
fn column_ticks(lo: f64, hi: f64, pw: f64, gap: f64) -> Vec<(f64, String, Anchor)> {
    let span = hi - lo;
    let per_unit = pw / span;
    for max_n in [5, 4, 3, 2] {
        let t = nice_ticks(lo + 0.1 * span, hi - 0.1 * span, max_n);
        if t.values.len() < 2 {
            continue;
        }
        let labels: Vec<String> = t.values.iter().map(|v| t.label(*v)).collect();
        let widest = labels
            .iter()
            .map(|l| text_width(l, FS_TICK))
            .fold(0.0, f64::max);
        let step = t.values[1] - t.values[0];
        let first_half = text_width(&labels[0], FS_TICK) / 2.0;
        let last_half = labels.last().map_or(0.0, |l| text_width(l, FS_TICK) / 2.0);
        let fits_inside = (t.values[0] - lo) * per_unit + gap / 2.0 >= first_half
            && (hi - t.values[t.values.len() - 1]) * per_unit + gap / 2.0 >= last_half;
        if step * per_unit >= widest + 3.0 && fits_inside {
            return t
                .values
                .iter()
                .zip(labels)
                .map(|(v, l)| (*v, l, Anchor::Middle))
                .collect();
        }
    }
    let lab = |v: f64| {
        let s = crate::layout::fmt_sig(v, 2);
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let mut out = vec![(lo, lab(lo), Anchor::Start), (hi, lab(hi), Anchor::End)];
    if lo < 0.0 && hi > 0.0 {
        let z = "0".to_string();
        let zx = -lo * per_unit;
        let zw = text_width(&z, FS_TICK) / 2.0;
        if zx - zw >= text_width(&out[0].1, FS_TICK) + 2.0
            && pw - zx - zw >= text_width(&out[1].1, FS_TICK) + 2.0
        {
            out.insert(1, (0.0, z, Anchor::Middle));
        }
    }
    out
}
