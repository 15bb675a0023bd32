//! 2-D histogram of two PCA coefficients on a logarithmic colour scale.

use crate::color;
use crate::figures::{draw_pixels, invalid};
use crate::layout::{
    colorbar, colorbar_width, nice_ticks, x_axis, y_axis, Lin, AXIS_C, COLUMN_WIDTH, FS_LABEL,
    FS_TICK, FS_TITLE,
};
use crate::svg::{text_width, Anchor, Font, Paint, Svg, VAlign};
use crate::{Figure, ShowError};

const PAD: f64 = 6.0;
/// Most bins per axis drawn; finer histograms are summed into blocks.
pub const MAX_BINS_DRAWN: usize = 128;
/// Most bins per axis accepted.
pub const MAX_BINS: usize = 4096;

/// Superscript form of an integer exponent.
fn superscript(e: i32) -> String {
    const DIGITS: [char; 10] = [
        '\u{2070}', '\u{b9}', '\u{b2}', '\u{b3}', '\u{2074}', '\u{2075}', '\u{2076}', '\u{2077}',
        '\u{2078}', '\u{2079}',
    ];
    let mut s = String::new();
    if e < 0 {
        s.push('\u{207b}');
    }
    for c in e.unsigned_abs().to_string().chars() {
        let d = c.to_digit(10).unwrap_or(0) as usize;
        s.push(DIGITS[d.min(9)]);
    }
    s
}

/// 2-D density of (c0, c1): `counts[ix][iy]` is the number of filters in x bin `ix` and y bin
/// `iy` (numpy `histogram2d` layout; bins split `x_range` and `y_range` evenly), drawn with
/// viridis on a log10 scale between the smallest and largest positive count; empty bins stay
/// white. Histograms above [`MAX_BINS_DRAWN`](crate::limits::MAX_BINS_DRAWN) bins per axis are summed into blocks. Bins are
/// drawn inside a group `class="bins"`.
pub fn density_2d(
    title: &str,
    counts: &[Vec<f64>],
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Result<Figure, ShowError> {
    let nx = counts.len();
    let ny = counts.first().map_or(0, Vec::len);
    if nx == 0 || ny == 0 || nx > MAX_BINS || ny > MAX_BINS {
        return Err(invalid(format!(
            "2-D density: {nx}x{ny} bins is outside 1..={MAX_BINS} per axis"
        )));
    }
    if let Some((i, r)) = counts.iter().enumerate().find(|(_, r)| r.len() != ny) {
        return Err(invalid(format!(
            "2-D density: x bin {i} has {} y bins, x bin 0 has {ny}",
            r.len()
        )));
    }
    for (name, (lo, hi)) in [("x", x_range), ("y", y_range)] {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(invalid(format!(
                "2-D density: {name} range ({lo}, {hi}) must be finite and increasing"
            )));
        }
    }
    // Sum into blocks so at most MAX_BINS_DRAWN bins per axis remain.
    let fx = nx.div_ceil(MAX_BINS_DRAWN).max(1);
    let fy = ny.div_ceil(MAX_BINS_DRAWN).max(1);
    let (bx, by) = (nx.div_ceil(fx), ny.div_ceil(fy));
    let mut grid = vec![0.0f64; bx * by];
    for (ix, row) in counts.iter().enumerate() {
        for (iy, v) in row.iter().enumerate() {
            if v.is_finite() && *v > 0.0 {
                if let Some(g) = grid.get_mut((ix / fx) * by + iy / fy) {
                    *g += v;
                }
            }
        }
    }
    let pos = grid.iter().copied().filter(|v| *v > 0.0);
    let (cmin, cmax) = pos.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (lmin, lmax) = if cmax > 0.0 {
        let (a, b) = (cmin.log10(), cmax.log10());
        if b > a {
            (a, b)
        } else {
            (a - 0.5, a + 0.5)
        }
    } else {
        (0.0, 1.0)
    };
    let tcol = |v: f64| color::viridis((v.log10() - lmin) / (lmax - lmin));

    // Colour bar ticks at the decades inside the range, else at the ends.
    let mut cb_ticks: Vec<(f64, String)> = Vec::new();
    let mut e = lmin.ceil() as i32;
    while f64::from(e) <= lmax + 1e-9 && cb_ticks.len() < 12 {
        cb_ticks.push((
            (f64::from(e) - lmin) / (lmax - lmin),
            format!("10{}", superscript(e)),
        ));
        e += 1;
    }
    if cb_ticks.len() < 2 {
        cb_ticks = vec![
            (0.0, crate::layout::fmt_sig(10f64.powf(lmin), 2)),
            (1.0, crate::layout::fmt_sig(10f64.powf(lmax), 2)),
        ];
    }
    let cb_label = "filters per bin";
    let cb_w = colorbar_width(6.0, &cb_ticks, cb_label);

    let xt = nice_ticks(x_range.0, x_range.1, 5);
    let yt = nice_ticks(y_range.0, y_range.1, 5);
    let ytw = yt
        .values
        .iter()
        .map(|v| text_width(&yt.label(*v), FS_TICK))
        .fold(0.0, f64::max);
    let left = PAD + FS_LABEL + 4.0 + ytw + 4.0;
    let right = 8.0 + cb_w + PAD;
    let side = (COLUMN_WIDTH - left - right).min(170.0);
    let title_h = if title.is_empty() {
        0.0
    } else {
        FS_TITLE + 6.0
    };
    let top = PAD + title_h;
    let width = left + side + right;
    let height = top + side + 3.0 + FS_TICK + 4.0 + FS_LABEL + PAD;
    let mut svg = Svg::new(width, height, title);
    if !title.is_empty() {
        svg.text(
            left + side / 2.0,
            PAD,
            title,
            &Font::new(FS_TITLE)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top),
        );
    }
    let xs = Lin::new(x_range.0, x_range.1, left, left + side);
    let ys = Lin::new(y_range.0, y_range.1, top + side, top);
    // Bins: rows of the picture are y bins from the top (largest y) down.
    let cw = side / bx as f64;
    let chh = side / by as f64;
    svg.open("class=\"bins\"");
    if (cw - chh).abs() < 1e-9 {
        let color = |r: usize, c: usize| {
            let iy = by - 1 - r;
            let v = grid.get(c * by + iy).copied().unwrap_or(0.0);
            if v > 0.0 {
                tcol(v)
            } else {
                color::Rgb::WHITE
            }
        };
        draw_pixels(&mut svg, left, top, cw, by, bx, &color, true);
    } else {
        for iy in 0..by {
            for ix in 0..bx {
                let v = grid.get(ix * by + iy).copied().unwrap_or(0.0);
                if v > 0.0 {
                    let r = by - 1 - iy;
                    svg.rect(
                        left + ix as f64 * cw,
                        top + r as f64 * chh,
                        cw + if ix + 1 < bx { 0.2 } else { 0.0 },
                        chh + if r + 1 < by { 0.2 } else { 0.0 },
                        &Paint::fill(tcol(v)),
                    );
                }
            }
        }
    }
    svg.close();
    svg.rect(left, top, side, side, &Paint::stroke(AXIS_C, 0.6));
    y_axis(&mut svg, left, &ys, &yt, true, None);
    x_axis(&mut svg, top + side, &xs, &xt, true);
    svg.text(
        PAD,
        top + side / 2.0,
        "coefficient c1",
        &Font::new(FS_LABEL)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top)
            .rotate(-90.0),
    );
    svg.text(
        left + side / 2.0,
        height - PAD,
        "coefficient c0",
        &Font::new(FS_LABEL).anchor(Anchor::Middle),
    );
    colorbar(
        &mut svg,
        left + side + 8.0,
        top,
        6.0,
        side,
        &color::viridis,
        &cb_ticks,
        cb_label,
    );
    Ok(svg.finish())
}
