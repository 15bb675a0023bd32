//! Filter displays: a layer's filter grid, RGB stem filters and one filter per layer.

use crate::color::{self, Rgb};
use crate::figures::{attr, check_kernel, draw_pixels, invalid, label_step, max_abs, product};
use crate::layout::{
    colorbar, colorbar_h, colorbar_h_height, colorbar_width, fmt_sig, COLUMN_WIDTH, FS_LABEL,
    FS_TICK, FS_TITLE, MUTED,
};
use crate::svg::{text_width, Anchor, Font, Paint, Svg, VAlign};
use crate::{Figure, ShowError};

/// Most rows or columns of filters drawn in one grid.
pub const MAX_GRID_SIDE: usize = 256;
/// Most filters in an RGB grid or a per-layer strip.
pub const MAX_PATCHES: usize = 1024;

const PAD: f64 = 6.0;

/// Grid of one layer's filters: weights `w` in OIHW order with `shape` = (out, in, kh, kw);
/// rows are the first `max_rows` input channels, columns the first `max_cols` output channels
/// (at most [`MAX_GRID_SIDE`](crate::limits::MAX_GRID_SIDE) each), each cell a kh×kw image on the diverging map scaled to
/// ±max|w| of the whole layer, with a colour bar. Each cell is an SVG group `class="cell"` with
/// `data-out` and `data-in`.
pub fn filter_grid(
    title: &str,
    w: &[f32],
    shape: [usize; 4],
    max_rows: usize,
    max_cols: usize,
) -> Result<Figure, ShowError> {
    let [o, i, kh, kw] = shape;
    if o == 0 || i == 0 {
        return Err(invalid(format!(
            "filter grid: shape {shape:?} has no filters"
        )));
    }
    check_kernel("filter grid", kh, kw)?;
    let n = product("filter grid", &shape)?;
    if n != w.len() {
        return Err(invalid(format!(
            "filter grid: shape {shape:?} needs {n} weights, got {}",
            w.len()
        )));
    }
    if max_rows == 0 || max_cols == 0 {
        return Err(invalid(
            "filter grid: max_rows and max_cols must be at least 1",
        ));
    }
    let rows = i.min(max_rows).min(MAX_GRID_SIDE);
    let cols = o.min(max_cols).min(MAX_GRID_SIDE);
    let m = max_abs(w.iter().map(|&v| f64::from(v)));

    let cb_ticks = vec![
        (0.0, fmt_sig(-m, 2)),
        (0.5, "0".to_string()),
        (1.0, fmt_sig(m, 2)),
    ];
    let cb_label = "weight";
    let cb_w = colorbar_width(6.0, &cb_ticks, cb_label);

    let row_lab_w = text_width(&(rows - 1).to_string(), FS_TICK);
    let col_lab_w = text_width(&(cols - 1).to_string(), FS_TICK);
    let left = PAD + FS_LABEL + 3.0 + row_lab_w + 3.0;
    let right = 8.0 + cb_w + PAD;
    let avail = COLUMN_WIDTH - left - right;
    let pitch = (avail / cols as f64).clamp(3.0, 24.0);
    let gap = (pitch * 0.12).clamp(0.3, 1.5);
    let cell = pitch - gap;
    let grid_w = cols as f64 * pitch - gap;
    let grid_h = rows as f64 * pitch - gap;

    let title_h = if title.is_empty() {
        0.0
    } else {
        FS_TITLE + 5.0
    };
    let top = PAD + title_h + FS_LABEL + 3.0 + FS_TICK + 3.0;
    let body_h = grid_h.max(56.0);
    let width = (left + grid_w + right).max(if title.is_empty() {
        0.0
    } else {
        text_width(title, FS_TITLE) + 2.0 * PAD
    });
    let note = (rows < i || cols < o).then(|| {
        format!(
            "showing input channels 0\u{2013}{} of {i}, output channels 0\u{2013}{} of {o}",
            rows - 1,
            cols - 1
        )
    });
    let note_h = if note.is_some() { 4.0 + FS_TICK } else { 0.0 };
    let width = width.max(
        note.as_deref()
            .map_or(0.0, |n| text_width(n, FS_TICK) + 2.0 * PAD),
    );
    let height = top + body_h + note_h + PAD;
    let mut svg = Svg::new(width, height, title);
    if let Some(n) = &note {
        svg.text(
            width / 2.0,
            height - PAD,
            n,
            &Font::new(FS_TICK).anchor(Anchor::Middle).fill(MUTED),
        );
    }

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
    let gx = left;
    let gy = top + (body_h - grid_h) / 2.0;

    // Column axis (output channels) above the grid.
    svg.text(
        gx + grid_w / 2.0,
        PAD + title_h,
        "output channel",
        &Font::new(FS_LABEL)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top),
    );
    let cstep = label_step(pitch, col_lab_w + 2.0);
    for c in (0..cols).step_by(cstep) {
        svg.text(
            gx + c as f64 * pitch + cell / 2.0,
            gy - 2.5,
            &c.to_string(),
            &Font::new(FS_TICK).anchor(Anchor::Middle).fill(MUTED),
        );
    }
    // Row axis (input channels) left of the grid.
    svg.text(
        PAD,
        top + body_h / 2.0,
        "input channel",
        &Font::new(FS_LABEL)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top)
            .rotate(-90.0),
    );
    let rstep = label_step(pitch, FS_TICK * 1.05);
    for r in (0..rows).step_by(rstep) {
        svg.text(
            gx - 2.5,
            gy + r as f64 * pitch + cell / 2.0,
            &r.to_string(),
            &Font::new(FS_TICK)
                .anchor(Anchor::End)
                .valign(VAlign::Middle)
                .fill(MUTED),
        );
    }

    let k = kh.max(kw) as f64;
    let px = cell / k;
    let ox = (cell - px * kw as f64) / 2.0;
    let oy = (cell - px * kh as f64) / 2.0;
    svg.open("class=\"grid\"");
    for r in 0..rows {
        for c in 0..cols {
            let base = (c * i + r) * kh * kw;
            svg.open(&format!("class=\"cell\" data-out=\"{c}\" data-in=\"{r}\""));
            let x0 = gx + c as f64 * pitch;
            let y0 = gy + r as f64 * pitch;
            let color = |y: usize, x: usize| {
                let v = w
                    .get(base + y * kw + x)
                    .copied()
                    .map_or(f64::NAN, f64::from);
                color::diverging(v / m)
            };
            draw_pixels(&mut svg, x0 + ox, y0 + oy, px, kh, kw, &color, false);
            svg.close();
        }
    }
    svg.close();

    let cb_h = body_h.min(120.0);
    colorbar(
        &mut svg,
        gx + grid_w + 8.0,
        top + (body_h - cb_h) / 2.0,
        6.0,
        cb_h,
        &|t| color::diverging(2.0 * t - 1.0),
        &cb_ticks,
        cb_label,
    );
    Ok(svg.finish())
}

/// First-layer filters with 3 input channels shown as colour patches: each RGB channel is
/// 0.5 + 0.5·w / max|w| of the layer; one patch per output channel (`shape` = (out, 3, kh, kw)),
/// in a near-square grid. Each patch is a group `class="patch"` with `data-out`.
pub fn rgb_filters(title: &str, w: &[f32], shape: [usize; 4]) -> Result<Figure, ShowError> {
    let [o, i, kh, kw] = shape;
    if i != 3 {
        return Err(invalid(format!(
            "RGB filters need 3 input channels, shape {shape:?} has {i}"
        )));
    }
    if o == 0 || o > MAX_PATCHES {
        return Err(invalid(format!(
            "RGB filters: {o} output channels is outside 1..={MAX_PATCHES}"
        )));
    }
    check_kernel("RGB filters", kh, kw)?;
    let n = product("RGB filters", &shape)?;
    if n != w.len() {
        return Err(invalid(format!(
            "RGB filters: shape {shape:?} needs {n} weights, got {}",
            w.len()
        )));
    }
    let m = max_abs(w.iter().map(|&v| f64::from(v)));
    let ncols = ((o as f64).sqrt().ceil() as usize).max(1);
    let nrows = o.div_ceil(ncols);
    let pitch = ((COLUMN_WIDTH - 2.0 * PAD) / ncols as f64).min(28.0);
    let gap = (pitch * 0.1).clamp(0.4, 2.0);
    let cell = pitch - gap;
    let grid_w = ncols as f64 * pitch - gap;
    let title_h = if title.is_empty() {
        0.0
    } else {
        FS_TITLE + 5.0
    };
    let note = "colour = 0.5 + 0.5\u{b7}w / max|w| per channel (R, G, B)";
    let width = (grid_w + 2.0 * PAD)
        .max(text_width(note, FS_TICK) + 2.0 * PAD)
        .max(text_width(title, FS_TITLE) + 2.0 * PAD);
    let gx = (width - grid_w) / 2.0;
    let gy = PAD + title_h;
    let height = gy + nrows as f64 * pitch - gap + 4.0 + FS_TICK + PAD;
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
    let k = kh.max(kw) as f64;
    let px = cell / k;
    let ox = (cell - px * kw as f64) / 2.0;
    let oy = (cell - px * kh as f64) / 2.0;
    let plane = kh * kw;
    let chan = |v: Option<&f32>| -> f64 {
        match v {
            Some(v) if v.is_finite() => (0.5 + 0.5 * f64::from(*v) / m).clamp(0.0, 1.0),
            _ => 0.5,
        }
    };
    for f in 0..o {
        let (r, c) = (f / ncols, f % ncols);
        svg.open(&format!("class=\"patch\" data-out=\"{f}\""));
        let color = |y: usize, x: usize| {
            let at = |ch: usize| chan(w.get((f * 3 + ch) * plane + y * kw + x));
            let q = |v: f64| (v * 255.0).round().clamp(0.0, 255.0) as u8;
            Rgb(q(at(0)), q(at(1)), q(at(2)))
        };
        draw_pixels(
            &mut svg,
            gx + c as f64 * pitch + ox,
            gy + r as f64 * pitch + oy,
            px,
            kh,
            kw,
            &color,
            false,
        );
        svg.close();
    }
    svg.text(
        width / 2.0,
        height - PAD,
        note,
        &Font::new(FS_TICK).anchor(Anchor::Middle).fill(MUTED),
    );
    Ok(svg.finish())
}

/// One filter per conv layer: `filters` = (layer name, kh×kw weights, kh, kw), typically the
/// first input / first output channel of every layer; each image is scaled to its own ±max|w|
/// and labelled by its depth index (position in the list). Groups `class="strip-cell"` carry
/// `data-depth` and `data-layer`.
pub fn filter_strip(
    title: &str,
    filters: &[(String, Vec<f32>, usize, usize)],
) -> Result<Figure, ShowError> {
    let n = filters.len();
    if n == 0 || n > MAX_PATCHES {
        return Err(invalid(format!(
            "filter strip: {n} filters is outside 1..={MAX_PATCHES}"
        )));
    }
    for (d, (name, v, kh, kw)) in filters.iter().enumerate() {
        check_kernel(&format!("filter strip, layer {d} ({name})"), *kh, *kw)?;
        if v.len() != kh * kw {
            return Err(invalid(format!(
                "filter strip, layer {d} ({name}): {kh}x{kw} kernel needs {} weights, got {}",
                kh * kw,
                v.len()
            )));
        }
    }
    let per_row = n.min(12);
    let nrows = n.div_ceil(per_row);
    let pitch = ((COLUMN_WIDTH - 2.0 * PAD) / per_row as f64).min(26.0);
    let cell = pitch * 0.84;
    let row_h = pitch + FS_TICK + 3.0;
    let title_h = if title.is_empty() {
        0.0
    } else {
        FS_TITLE + 5.0
    };
    let cb_label = "w / max|w| of each filter";
    let cb_h = colorbar_h_height(5.0, cb_label);
    let grid_w = per_row as f64 * pitch;
    let width = (grid_w + 2.0 * PAD).max(text_width(title, FS_TITLE) + 2.0 * PAD);
    let gx = (width - grid_w) / 2.0;
    let gy = PAD + title_h;
    let note = "numbers: conv layer index (depth order)";
    let note_h = FS_TICK + 4.0;
    let height = gy + nrows as f64 * row_h + note_h + 6.0 + cb_h + PAD;
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
    for (d, (name, v, kh, kw)) in filters.iter().enumerate() {
        let (r, c) = (d / per_row, d % per_row);
        let m = max_abs(v.iter().map(|&x| f64::from(x)));
        let px = cell / (*kh.max(kw)) as f64;
        let x0 = gx + c as f64 * pitch + (pitch - px * *kw as f64) / 2.0;
        let y0 = gy + r as f64 * row_h + (cell - px * *kh as f64) / 2.0;
        svg.open(&format!(
            "class=\"strip-cell\" data-depth=\"{d}\" data-layer=\"{}\"",
            attr(name)
        ));
        let color = |y: usize, x: usize| {
            let val = v.get(y * kw + x).copied().map_or(f64::NAN, f64::from);
            color::diverging(val / m)
        };
        draw_pixels(&mut svg, x0, y0, px, *kh, *kw, &color, false);
        svg.rect(
            x0,
            y0,
            px * *kw as f64,
            px * *kh as f64,
            &Paint::stroke(Rgb(0xAA, 0xAA, 0xAA), 0.3),
        );
        svg.text(
            gx + c as f64 * pitch + pitch / 2.0,
            gy + r as f64 * row_h + cell + 2.0,
            &d.to_string(),
            &Font::new(FS_TICK)
                .anchor(Anchor::Middle)
                .valign(VAlign::Top),
        );
        svg.close();
    }
    svg.text(
        width / 2.0,
        gy + nrows as f64 * row_h + 1.0,
        note,
        &Font::new(FS_TICK)
            .anchor(Anchor::Middle)
            .valign(VAlign::Top)
            .fill(MUTED),
    );
    colorbar_h(
        &mut svg,
        width / 2.0,
        gy + nrows as f64 * row_h + note_h + 6.0,
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
