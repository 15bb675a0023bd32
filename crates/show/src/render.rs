//! SVG → PNG (resvg) and SVG → PDF (svg2pdf) with the embedded font only.

use std::sync::{Arc, OnceLock};

use resvg::tiny_skia;
use resvg::usvg;

use crate::ShowError;

/// Family name of the embedded font; every figure's text uses it.
pub const FONT_FAMILY: &str = "DejaVu Sans";

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Largest raster side in pixels.
const MAX_SIDE_PX: f32 = 16384.0;
/// Largest raster area in pixels (256 Mi pixels would be 1 GiB of RGBA).
const MAX_AREA_PX: f64 = 64.0 * 1024.0 * 1024.0;

/// The embedded TrueType font (DejaVu Sans, Bitstream Vera licence, see `fonts/`).
pub fn font_data() -> &'static [u8] {
    FONT
}

fn fontdb() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_source(usvg::fontdb::Source::Binary(Arc::new(FONT)));
        db.set_sans_serif_family(FONT_FAMILY);
        db.set_serif_family(FONT_FAMILY);
        db.set_monospace_family(FONT_FAMILY);
        db.set_cursive_family(FONT_FAMILY);
        db.set_fantasy_family(FONT_FAMILY);
        Arc::new(db)
    })
    .clone()
}

fn parse(svg: &str) -> Result<usvg::Tree, ShowError> {
    let opt = usvg::Options {
        // One SVG user unit (and one `pt`) is one PDF point.
        dpi: 72.0,
        font_family: FONT_FAMILY.to_string(),
        fontdb: fontdb(),
        ..usvg::Options::default()
    };
    usvg::Tree::from_str(svg, &opt).map_err(|e| ShowError::Svg(e.to_string()))
}

/// RGBA pixels of a rendered figure (row-major, 4 bytes per pixel, opaque white background).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes, RGBA.
    pub rgba: Vec<u8>,
}

impl Raster {
    /// The RGBA value at (`x`, `y`), or `None` outside the raster.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        let p = self.rgba.get(i..i + 4)?;
        Some([p[0], p[1], p[2], p[3]])
    }

    /// Number of pixels whose colour differs from `background` (RGB; alpha ignored).
    pub fn count_not(&self, background: [u8; 3]) -> usize {
        self.rgba
            .chunks_exact(4)
            .filter(|p| p[0] != background[0] || p[1] != background[1] || p[2] != background[2])
            .count()
    }
}

fn pixmap(svg: &str, scale: f32) -> Result<tiny_skia::Pixmap, ShowError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ShowError::Png(format!(
            "scale must be a positive number of pixels per point, got {scale}"
        )));
    }
    let tree = parse(svg)?;
    let size = tree.size();
    let w = (size.width() * scale).ceil();
    let h = (size.height() * scale).ceil();
    if !(w >= 1.0 && h >= 1.0 && w <= MAX_SIDE_PX && h <= MAX_SIDE_PX)
        || f64::from(w) * f64::from(h) > MAX_AREA_PX
    {
        return Err(ShowError::Png(format!(
            "raster of {w}x{h} pixels is outside 1..={MAX_SIDE_PX} per side or above {MAX_AREA_PX} pixels"
        )));
    }
    // Bounds checked above, so the casts are exact.
    let mut pm = tiny_skia::Pixmap::new(w as u32, h as u32)
        .ok_or_else(|| ShowError::Png(format!("cannot allocate a {w}x{h} pixmap")))?;
    pm.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pm.as_mut(),
    );
    Ok(pm)
}

pub(crate) fn rasterize(svg: &str, scale: f32) -> Result<Raster, ShowError> {
    let pm = pixmap(svg, scale)?;
    Ok(Raster {
        width: pm.width(),
        height: pm.height(),
        // The background is opaque, so premultiplied and straight RGBA coincide.
        rgba: pm.data().to_vec(),
    })
}

pub(crate) fn to_png(svg: &str, scale: f32) -> Result<Vec<u8>, ShowError> {
    pixmap(svg, scale)?
        .encode_png()
        .map_err(|e| ShowError::Png(e.to_string()))
}

pub(crate) fn to_pdf(svg: &str) -> Result<Vec<u8>, ShowError> {
    let tree = parse(svg)?;
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions { dpi: 72.0 },
    )
    .map(sort_resource_dicts)
    .map_err(|e| ShowError::Pdf(e.to_string()))
}

/// Puts the entries of every resource dictionary (`/ExtGState <<`, `/XObject <<`, …) of a PDF
/// written by svg2pdf in sorted order, so that the same figure gives the same bytes on every run.
///
/// svg2pdf 0.13 collects a page's resources in a `HashMap` and writes them in its (randomly
/// seeded) iteration order. Each entry is a line `/name N 0 R`; sorting the lines of a run keeps
/// its length, so every byte offset after it (the cross-reference table) stays valid.
fn sort_resource_dicts(pdf: Vec<u8>) -> Vec<u8> {
    const KEYS: [&[u8]; 6] = [
        b"/ExtGState <<",
        b"/XObject <<",
        b"/Pattern <<",
        b"/Shading <<",
        b"/Font <<",
        b"/ColorSpace <<",
    ];
    let opens = |line: &[u8]| KEYS.iter().any(|k| line.trim_ascii_start() == *k);
    // `/<letters><digits> <digits> 0 R`, after indentation
    let is_entry = |line: &[u8]| {
        let t = line.trim_ascii_start();
        let Some(rest) = t.strip_prefix(b"/") else {
            return false;
        };
        let letters = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let rest = &rest[letters..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let Some(rest) = rest[digits..].strip_prefix(b" ") else {
            return false;
        };
        let digits2 = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        letters > 0 && digits > 0 && digits2 > 0 && &rest[digits2..] == b" 0 R"
    };
    let lines: Vec<&[u8]> = pdf.split(|&b| b == b'\n').collect();
    let mut out = Vec::with_capacity(pdf.len());
    let mut i = 0;
    while i < lines.len() {
        let open = opens(lines[i]);
        out.extend_from_slice(lines[i]);
        i += 1;
        if open {
            let start = i;
            while i < lines.len() && is_entry(lines[i]) {
                i += 1;
            }
            let mut run = lines[start..i].to_vec();
            run.sort_unstable();
            for l in run {
                out.push(b'\n');
                out.extend_from_slice(l);
            }
        }
        if i < lines.len() {
            out.push(b'\n');
        }
    }
    debug_assert_eq!(out.len(), pdf.len());
    out
}
