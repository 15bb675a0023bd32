//! Stem activations under a perturbation: filter, clean and perturbed activation, difference.

use crate::color::{self, Rgb};
use crate::figures::{
    attr, check_kernel, downsample, draw_pixels, finite_range, invalid, max_abs, product,
};
use crate::layout::{fit_text, COLUMN_WIDTH, FS_LABEL, FS_TICK, FS_TITLE, MUTED};
use crate::svg::{text_width, Anchor, Font, Paint, Svg, VAlign};
use crate::{Figure, ShowError};

const PAD: f64 = 6.0;
/// Most columns (channels) in one figure.
pub const MAX_COLUMNS: usize = 32;
/// Largest activation side accepted.
pub const MAX_ACTIVATION_SIDE: usize = 4096;
/// Largest activation side drawn; larger maps are block-averaged.
pub const MAX_SIDE_DRAWN: usize = 64;

/// A 2-D array in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// `h * w` values, row-major.
    pub data: Vec<f32>,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// One column of [`stem_activations`]: an output channel of the first layer.
#[derive(Debug, Clone, PartialEq)]
pub struct StemColumn {
    /// Column label, e.g. "ch 12".
    pub label: String,
    /// The channel's filter, `in_ch * kh * kw` values (CHW order).
    pub filter: Vec<f32>,
    /// Input channels of the filter (3 = drawn as an RGB patch).
    pub in_ch: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Activation for the clean input.
    pub clean: Plane,
    /// Activation for the perturbed (e.g. adversarial) input; same size as `clean`.
    pub perturbed: Plane,
}

/// Stem activations: rows = filter, clean activation, perturbed activation and their difference
/// (perturbed − clean); one column per selected output channel. The filter is an RGB patch
/// (0.5 + 0.5·w/max|w|) when it has 3 input channels, else its first input channel on the
/// diverging map; both activations of a column share one viridis range; the difference uses the
/// diverging map scaled to its own ±max. Images are groups `class="act"` with `data-col` and
/// `data-row` (0 filter, 1 clean, 2 perturbed, 3 difference).
pub fn stem_activations(title: &str, columns: &[StemColumn]) -> Result<Figure, ShowError> {
    let nc = columns.len();
    if nc == 0 || nc > MAX_COLUMNS {
        return Err(invalid(format!(
            "stem activations: {nc} columns is outside 1..={MAX_COLUMNS}"
        )));
    }
    for (k, c) in columns.iter().enumerate() {
        let what = format!("stem activations, column {k} ({})", c.label);
        check_kernel(&what, c.kh, c.kw)?;
        if c.in_ch == 0 || c.in_ch > 4096 {
            return Err(invalid(format!(
                "{what}: {} input channels is outside 1..=4096",
                c.in_ch
            )));
        }
        let n = product(&what, &[c.in_ch, c.kh, c.kw])?;
        if c.filter.len() != n {
            return Err(invalid(format!(
                "{what}: filter of {}x{}x{} needs {n} values, got {}",
                c.in_ch,
                c.kh,
                c.kw,
                c.filter.len()
            )));
        }
        for (name, p) in [("clean", &c.clean), ("perturbed", &c.perturbed)] {
            if p.h == 0 || p.w == 0 || p.h > MAX_ACTIVATION_SIDE || p.w > MAX_ACTIVATION_SIDE {
                return Err(invalid(format!(
                    "{what}: {name} activation {}x{} is outside 1..={MAX_ACTIVATION_SIDE} per side",
                    p.h, p.w
                )));
            }
            if p.data.len() != p.h * p.w {
                return Err(invalid(format!(
                    "{what}: {name} activation {}x{} needs {} values, got {}",
                    p.h,
                    p.w,
                    p.h * p.w,
                    p.data.len()
                )));
            }
        }
        if (c.clean.h, c.clean.w) != (c.perturbed.h, c.perturbed.w) {
            return Err(invalid(format!(
                "{what}: clean activation is {}x{} but perturbed is {}x{}",
                c.clean.h, c.clean.w, c.perturbed.h, c.perturbed.w
            )));
        }
    }
    let row_names = ["filter", "clean", "perturbed", "difference"];
    let left = PAD
        + row_names
            .iter()
            .map(|n| text_width(n, FS_LABEL))
            .fold(0.0, f64::max)
        + 5.0;
    let pitch = ((COLUMN_WIDTH - left - PAD) / nc as f64).min(52.0);
    let img = pitch * 0.88;
    let title_h = if title.is_empty() {
        0.0
    } else {
        FS_TITLE + 5.0
    };
    let head = PAD + title_h + FS_TICK + 3.0;
    let notes = [
        "activations: viridis, min\u{2013}max of each channel",
        "difference (perturbed \u{2212} clean): blue \u{2212}, red +, \u{b1}max",
    ];
    let width = (left + nc as f64 * pitch + PAD).max(
        notes
            .iter()
            .map(|n| text_width(n, FS_TICK))
            .fold(0.0, f64::max)
            + 2.0 * PAD,
    );
    let height = head + 4.0 * pitch + 3.0 + 2.0 * (FS_TICK + 2.0) + PAD;
    let mut svg = Svg::new(width, height, title);
    if !title.is_empty() {
        svg.text(
            width / 2.0,
            PAD,
            title,
            &Font::new(FS_TITLE)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top),
        );
    }
    for (r, name) in row_names.iter().enumerate() {
        svg.text(
            left - 5.0,
            head + r as f64 * pitch + img / 2.0,
            name,
            &Font::new(FS_LABEL)
                .anchor(Anchor::End)
                .valign(VAlign::Middle),
        );
    }
    for (k, c) in columns.iter().enumerate() {
        let x0 = left + k as f64 * pitch;
        svg.text(
            x0 + img / 2.0,
            head - 3.0,
            &fit_text(&c.label, pitch, FS_TICK),
            &Font::new(FS_TICK).anchor(Anchor::Middle),
        );
        // Row 0: filter.
        let m = max_abs(c.filter.iter().map(|&v| f64::from(v)));
        let plane = c.kh * c.kw;
        let px = img / c.kh.max(c.kw) as f64;
        let fx = x0 + (img - px * c.kw as f64) / 2.0;
        let fy = head + (img - px * c.kh as f64) / 2.0;
        svg.open(&format!(
            "class=\"act\" data-col=\"{k}\" data-row=\"0\" data-label=\"{}\"",
            attr(&c.label)
        ));
        if c.in_ch == 3 {
            let color = |y: usize, x: usize| {
                let ch = |i: usize| {
                    let v = c
                        .filter
                        .get(i * plane + y * c.kw + x)
                        .copied()
                        .map_or(0.0, f64::from);
                    let v = if v.is_finite() { v } else { 0.0 };
                    ((0.5 + 0.5 * v / m).clamp(0.0, 1.0) * 255.0).round() as u8
                };
                Rgb(ch(0), ch(1), ch(2))
            };
            draw_pixels(&mut svg, fx, fy, px, c.kh, c.kw, &color, false);
        } else {
            let color = |y: usize, x: usize| {
                color::diverging(
                    c.filter
                        .get(y * c.kw + x)
                        .copied()
                        .map_or(f64::NAN, f64::from)
                        / m,
                )
            };
            draw_pixels(&mut svg, fx, fy, px, c.kh, c.kw, &color, false);
        }
        svg.close();
        // Rows 1-3: activations.
        let to64 = |p: &Plane| p.data.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let (clean, h, w) = downsample(&to64(&c.clean), c.clean.h, c.clean.w, MAX_SIDE_DRAWN);
        let (pert, _, _) = downsample(&to64(&c.perturbed), c.clean.h, c.clean.w, MAX_SIDE_DRAWN);
        let diff: Vec<f64> = clean.iter().zip(&pert).map(|(a, b)| b - a).collect();
        let (lo, hi) = finite_range(clean.iter().chain(&pert).copied()).unwrap_or((0.0, 1.0));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let dm = max_abs(diff.iter().copied());
        let apx = img / h.max(w) as f64;
        let ax = x0 + (img - apx * w as f64) / 2.0;
        for (r, (data, diverging)) in [(&clean, false), (&pert, false), (&diff, true)]
            .into_iter()
            .enumerate()
        {
            let ay = head + (r + 1) as f64 * pitch + (img - apx * h as f64) / 2.0;
            svg.open(&format!(
                "class=\"act\" shape-rendering=\"crispEdges\" data-col=\"{k}\" data-row=\"{}\"",
                r + 1
            ));
            let q = |v: f64| (v * 64.0).round() / 64.0;
            let color = |y: usize, x: usize| {
                let v = data.get(y * w + x).copied().unwrap_or(f64::NAN);
                if diverging {
                    color::diverging(q(v / dm))
                } else {
                    color::viridis(q((v - lo) / span))
                }
            };
            draw_pixels(&mut svg, ax, ay, apx, h, w, &color, true);
            svg.rect(
                ax,
                ay,
                apx * w as f64,
                apx * h as f64,
                &Paint::stroke(Rgb(0xAA, 0xAA, 0xAA), 0.3),
            );
            svg.close();
        }
    }
    for (i, n) in notes.iter().enumerate() {
        svg.text(
            PAD,
            head + 4.0 * pitch + 3.0 + i as f64 * (FS_TICK + 2.0),
            n,
            &Font::new(FS_TICK).valign(VAlign::Top).fill(MUTED),
        );
    }
    Ok(svg.finish())
}
