//! The figure functions and their shared helpers.

pub(crate) mod activations;
pub(crate) mod boxes;
pub(crate) mod calibration;
pub(crate) mod density;
pub(crate) mod divergence;
pub(crate) mod filters;
pub(crate) mod pca;

use crate::color::Rgb;
use crate::svg::{Paint, Svg};
use crate::ShowError;

/// Largest kernel side accepted.
pub const MAX_KERNEL: usize = 64;

pub(crate) fn invalid(msg: impl Into<String>) -> ShowError {
    ShowError::InvalidInput(msg.into())
}

/// Largest |v| over the finite values; 1 when there is none or it is 0 (so scaling is safe).
pub(crate) fn max_abs(values: impl IntoIterator<Item = f64>) -> f64 {
    let m = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// Min and max over the finite values, or `None`.
pub(crate) fn finite_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Checks a kernel size.
pub(crate) fn check_kernel(what: &str, kh: usize, kw: usize) -> Result<(), ShowError> {
    if kh == 0 || kw == 0 || kh > MAX_KERNEL || kw > MAX_KERNEL {
        return Err(invalid(format!(
            "{what}: kernel {kh}x{kw} is outside 1..={MAX_KERNEL} per side"
        )));
    }
    Ok(())
}

/// Product of dimensions with overflow check.
pub(crate) fn product(what: &str, dims: &[usize]) -> Result<usize, ShowError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            invalid(format!(
                "{what}: shape {dims:?} has more elements than fit in memory"
            ))
        })
}

/// Draws an `h`×`w` pixel image with its top-left corner at (`x`, `y`) and square pixels of
/// side `px`; `color(row, col)` gives each pixel's colour. Neighbouring pixels overlap slightly
/// so no hairline seams appear in anti-aliased output; with `merge`, runs of equal colour in a
/// row are drawn as one rectangle.
#[allow(clippy::too_many_arguments)]
pub(crate) fn draw_pixels(
    svg: &mut Svg,
    x: f64,
    y: f64,
    px: f64,
    h: usize,
    w: usize,
    color: &dyn Fn(usize, usize) -> Rgb,
    merge: bool,
) {
    let o = (px * 0.15).min(0.25);
    for r in 0..h {
        let mut c = 0;
        while c < w {
            let col = color(r, c);
            let mut end = c + 1;
            if merge {
                while end < w && color(r, end) == col {
                    end += 1;
                }
            }
            let ww = px * (end - c) as f64 + if end < w { o } else { 0.0 };
            let hh = px + if r + 1 < h { o } else { 0.0 };
            svg.rect(
                x + px * c as f64,
                y + px * r as f64,
                ww,
                hh,
                &Paint::fill(col),
            );
            c = end;
        }
    }
}

/// Smallest step from 1, 2, 4, 5, 8, 10, … such that `step * pitch >= needed`.
pub(crate) fn label_step(pitch: f64, needed: f64) -> usize {
    const STEPS: [usize; 14] = [1, 2, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100, 128, 256];
    for s in STEPS {
        if s as f64 * pitch >= needed {
            return s;
        }
    }
    512
}

/// Block-averages a `h`×`w` plane (NaN ignored) so that neither side exceeds `max_side`;
/// returns the new plane and its size.
pub(crate) fn downsample(
    data: &[f64],
    h: usize,
    w: usize,
    max_side: usize,
) -> (Vec<f64>, usize, usize) {
    let f = h.max(w).div_ceil(max_side.max(1)).max(1);
    if f == 1 {
        return (data.to_vec(), h, w);
    }
    let nh = h.div_ceil(f);
    let nw = w.div_ceil(f);
    let mut out = Vec::with_capacity(nh * nw);
    for br in 0..nh {
        for bc in 0..nw {
            let mut s = 0.0;
            let mut n = 0usize;
            for r in br * f..((br + 1) * f).min(h) {
                for c in bc * f..((bc + 1) * f).min(w) {
                    if let Some(v) = data.get(r * w + c) {
                        if v.is_finite() {
                            s += v;
                            n += 1;
                        }
                    }
                }
            }
            out.push(if n > 0 { s / n as f64 } else { f64::NAN });
        }
    }
    (out, nh, nw)
}

/// Escaped attribute value.
pub(crate) fn attr(s: &str) -> String {
    crate::svg::esc(s)
}
