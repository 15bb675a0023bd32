//! A tiny deterministic SVG writer: numbers with fixed decimals, escaped text, points as units.

use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::color::Rgb;
use crate::render::{font_data, FONT_FAMILY};
use crate::Figure;

/// Formats a coordinate with two fixed decimals, trailing zeros trimmed; non-finite → "0".
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "0".to_string();
    }
    let mut s = format!("{x:.2}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".to_string();
    }
    s
}

/// Escapes text for XML character data and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Horizontal advance widths of the embedded font, per em, for the ASCII range.
fn ascii_advances() -> &'static [f64; 128] {
    static ADV: OnceLock<[f64; 128]> = OnceLock::new();
    ADV.get_or_init(|| {
        let mut adv = [0.6; 128];
        if let Ok(face) = ttf_parser::Face::parse(font_data(), 0) {
            let upem = f64::from(face.units_per_em().max(1));
            for (i, a) in adv.iter_mut().enumerate() {
                let c = char::from(i as u8);
                if let Some(g) = face.glyph_index(c) {
                    if let Some(w) = face.glyph_hor_advance(g) {
                        *a = f64::from(w) / upem;
                    }
                }
            }
        }
        adv
    })
}

/// Width of `text` in points at font size `size` (advance widths of the embedded font).
pub(crate) fn text_width(text: &str, size: f64) -> f64 {
    let adv = ascii_advances();
    let mut face = None;
    let mut total = 0.0;
    for c in text.chars() {
        let w = match adv.get(c as usize) {
            Some(w) if (c as u32) < 128 => *w,
            _ => {
                let f = face.get_or_insert_with(|| ttf_parser::Face::parse(font_data(), 0).ok());
                f.as_ref()
                    .and_then(|f| {
                        let upem = f64::from(f.units_per_em().max(1));
                        f.glyph_index(c)
                            .and_then(|g| f.glyph_hor_advance(g))
                            .map(|w| f64::from(w) / upem)
                    })
                    .unwrap_or(0.6)
            }
        };
        total += w;
    }
    total * size
}

/// Height of digits and capitals above the baseline, per em, of DejaVu Sans.
pub(crate) const CAP_HEIGHT: f64 = 0.73;

/// Fill and stroke of a shape.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Paint {
    pub fill: Option<Rgb>,
    pub fill_opacity: Option<f64>,
    pub stroke: Option<Rgb>,
    pub stroke_width: f64,
    pub dash: Option<(f64, f64)>,
}

impl Paint {
    pub fn fill(c: Rgb) -> Self {
        Paint {
            fill: Some(c),
            ..Paint::default()
        }
    }
    pub fn stroke(c: Rgb, w: f64) -> Self {
        Paint {
            stroke: Some(c),
            stroke_width: w,
            ..Paint::default()
        }
    }
    pub fn with_stroke(mut self, c: Rgb, w: f64) -> Self {
        self.stroke = Some(c);
        self.stroke_width = w;
        self
    }
    pub fn opacity(mut self, a: f64) -> Self {
        self.fill_opacity = Some(a);
        self
    }
    pub fn dash(mut self, on: f64, off: f64) -> Self {
        self.dash = Some((on, off));
        self
    }

    fn write(&self, out: &mut String) {
        match self.fill {
            Some(c) => {
                let _ = write!(out, " fill=\"{}\"", c.hex());
            }
            None => out.push_str(" fill=\"none\""),
        }
        if let Some(a) = self.fill_opacity {
            let _ = write!(out, " fill-opacity=\"{}\"", num(a));
        }
        if let Some(c) = self.stroke {
            let _ = write!(
                out,
                " stroke=\"{}\" stroke-width=\"{}\"",
                c.hex(),
                num(self.stroke_width)
            );
            if let Some((on, off)) = self.dash {
                let _ = write!(out, " stroke-dasharray=\"{} {}\"", num(on), num(off));
            }
        }
    }
}

/// Horizontal text anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Start,
    Middle,
    End,
}

/// Vertical placement of text relative to the given y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VAlign {
    /// y is the baseline.
    Baseline,
    /// y is the middle of the digit height.
    Middle,
    /// y is the top of the digits.
    Top,
}

/// Text style.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Font {
    pub size: f64,
    pub anchor: Anchor,
    pub valign: VAlign,
    /// Rotation in degrees around the anchor point (negative = counter-clockwise).
    pub rotate: f64,
    pub fill: Rgb,
}

impl Font {
    pub fn new(size: f64) -> Self {
        Font {
            size,
            anchor: Anchor::Start,
            valign: VAlign::Baseline,
            rotate: 0.0,
            fill: Rgb::BLACK,
        }
    }
    pub fn anchor(mut self, a: Anchor) -> Self {
        self.anchor = a;
        self
    }
    pub fn valign(mut self, v: VAlign) -> Self {
        self.valign = v;
        self
    }
    pub fn rotate(mut self, deg: f64) -> Self {
        self.rotate = deg;
        self
    }
    pub fn fill(mut self, c: Rgb) -> Self {
        self.fill = c;
        self
    }
}

/// An SVG document being written.
pub(crate) struct Svg {
    out: String,
    w: f64,
    h: f64,
    next_id: usize,
}

impl Svg {
    /// Starts a document of `w`×`h` points (rounded up to whole points) with a white background.
    pub fn new(w: f64, h: f64, title: &str) -> Self {
        let w = if w.is_finite() {
            w.ceil().max(1.0)
        } else {
            1.0
        };
        let h = if h.is_finite() {
            h.ceil().max(1.0)
        } else {
            1.0
        };
        let mut out = String::with_capacity(16 * 1024);
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{w}pt\" height=\"{h}pt\" viewBox=\"0 0 {w} {h}\" font-family=\"{FONT_FAMILY}\" font-size=\"8\">",
            w = num(w),
            h = num(h),
        );
        if !title.is_empty() {
            let _ = writeln!(out, "<title>{}</title>", esc(title));
        }
        let _ = writeln!(
            out,
            "<rect class=\"background\" x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
            num(w),
            num(h)
        );
        Svg {
            out,
            w,
            h,
            next_id: 0,
        }
    }

    pub fn finish(mut self) -> Figure {
        self.out.push_str("</svg>\n");
        Figure {
            svg: self.out,
            width_pt: self.w,
            height_pt: self.h,
        }
    }

    /// A fresh id for gradients and clip paths.
    pub fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Opens a group; `attrs` are raw attributes such as `class="cell"`.
    pub fn open(&mut self, attrs: &str) {
        if attrs.is_empty() {
            self.out.push_str("<g>\n");
        } else {
            let _ = writeln!(self.out, "<g {attrs}>");
        }
    }

    pub fn close(&mut self) {
        self.out.push_str("</g>\n");
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, p: &Paint) {
        self.rect_attr(x, y, w, h, p, "");
    }

    pub fn rect_attr(&mut self, x: f64, y: f64, w: f64, h: f64, p: &Paint, attrs: &str) {
        self.out.push_str("<rect");
        if !attrs.is_empty() {
            self.out.push(' ');
            self.out.push_str(attrs);
        }
        let _ = write!(
            self.out,
            " x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"",
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0))
        );
        p.write(&mut self.out);
        self.out.push_str("/>\n");
    }

    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, p: &Paint) {
        self.line_attr(x1, y1, x2, y2, p, "");
    }

    pub fn line_attr(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, p: &Paint, attrs: &str) {
        self.out.push_str("<line");
        if !attrs.is_empty() {
            self.out.push(' ');
            self.out.push_str(attrs);
        }
        let _ = write!(
            self.out,
            " x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"",
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
        p.write(&mut self.out);
        self.out.push_str("/>\n");
    }

    /// A path through `pts`; `close` closes it.
    pub fn poly(&mut self, pts: &[(f64, f64)], close: bool, p: &Paint, attrs: &str) {
        if pts.is_empty() {
            return;
        }
        let mut d = String::with_capacity(pts.len() * 12);
        for (i, (x, y)) in pts.iter().enumerate() {
            d.push(if i == 0 { 'M' } else { 'L' });
            d.push_str(&num(*x));
            d.push(' ');
            d.push_str(&num(*y));
        }
        if close {
            d.push('Z');
        }
        self.path(&d, p, attrs);
    }

    pub fn path(&mut self, d: &str, p: &Paint, attrs: &str) {
        self.out.push_str("<path");
        if !attrs.is_empty() {
            self.out.push(' ');
            self.out.push_str(attrs);
        }
        let _ = write!(self.out, " d=\"{d}\"");
        p.write(&mut self.out);
        self.out.push_str(" stroke-linejoin=\"round\"/>\n");
    }

    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, p: &Paint, attrs: &str) {
        self.out.push_str("<circle");
        if !attrs.is_empty() {
            self.out.push(' ');
            self.out.push_str(attrs);
        }
        let _ = write!(
            self.out,
            " cx=\"{}\" cy=\"{}\" r=\"{}\"",
            num(cx),
            num(cy),
            num(r)
        );
        p.write(&mut self.out);
        self.out.push_str("/>\n");
    }

    pub fn text(&mut self, x: f64, y: f64, s: &str, f: &Font) {
        self.text_attr(x, y, s, f, "");
    }

    pub fn text_attr(&mut self, x: f64, y: f64, s: &str, f: &Font, attrs: &str) {
        let dy = match f.valign {
            VAlign::Baseline => 0.0,
            VAlign::Middle => CAP_HEIGHT * 0.5 * f.size,
            VAlign::Top => CAP_HEIGHT * f.size,
        };
        self.out.push_str("<text");
        if !attrs.is_empty() {
            self.out.push(' ');
            self.out.push_str(attrs);
        }
        if f.rotate != 0.0 {
            // Rotate around the anchor point; the vertical shift is applied in the rotated frame.
            let _ = write!(
                self.out,
                " transform=\"translate({} {}) rotate({})\" x=\"0\" y=\"{}\"",
                num(x),
                num(y),
                num(f.rotate),
                num(dy)
            );
        } else {
            let _ = write!(self.out, " x=\"{}\" y=\"{}\"", num(x), num(y + dy));
        }
        let _ = write!(self.out, " font-size=\"{}\"", num(f.size));
        match f.anchor {
            Anchor::Start => {}
            Anchor::Middle => self.out.push_str(" text-anchor=\"middle\""),
            Anchor::End => self.out.push_str(" text-anchor=\"end\""),
        }
        if f.fill != Rgb::BLACK {
            let _ = write!(self.out, " fill=\"{}\"", f.fill.hex());
        }
        let _ = writeln!(self.out, ">{}</text>", esc(s));
    }

    /// A vertical or horizontal linear gradient through `stops` (offset 0..1, colour); returns
    /// the paint reference `url(#id)`.
    pub fn gradient(&mut self, stops: &[(f64, Rgb)], vertical_up: bool) -> String {
        let id = self.id("grad");
        let (x2, y1, y2) = if vertical_up {
            ("0", "1", "0")
        } else {
            ("1", "0", "0")
        };
        let _ = writeln!(
            self.out,
            "<defs><linearGradient id=\"{id}\" x1=\"0\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\">"
        );
        for (o, c) in stops {
            let _ = writeln!(
                self.out,
                "<stop offset=\"{}\" stop-color=\"{}\"/>",
                num(*o),
                c.hex()
            );
        }
        self.out.push_str("</linearGradient></defs>\n");
        format!("url(#{id})")
    }

    /// A rectangle filled with a paint server reference (e.g. a gradient).
    pub fn rect_url(&mut self, x: f64, y: f64, w: f64, h: f64, url: &str, attrs: &str) {
        let _ = writeln!(
            self.out,
            "<rect {attrs} x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{url}\"/>",
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_fixed_and_trimmed() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(-2.1), "-2.1");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(1e6), "1000000");
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&apos;");
        assert_eq!(esc("x\u{1}y"), "x y");
    }

    #[test]
    fn widths_come_from_the_font() {
        // DejaVu Sans: '0' advance = 1303 / 2048 em.
        let w = text_width("0", 10.0);
        assert!((w - 1303.0 / 2048.0 * 10.0).abs() < 1e-9, "{w}");
        assert!(text_width("\u{2212}1", 10.0) > text_width("1", 10.0));
    }
}
