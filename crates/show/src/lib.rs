//! Figures of the CNN-filter papers (Gavrikov & Keuper, "CNN Filter DB", CVPR 2022, and
//! "Adversarial Robustness Through the Lens of Convolutional Filters", CVPRW 2022), drawn from
//! plain data as vector SVG and rendered to PNG and PDF with an embedded font (DejaVu Sans), so the
//! output is byte-identical on every machine.
//!
//! Every figure function validates its input and returns a [`Figure`] (SVG text plus its size in
//! points) or a [`ShowError`] that says what is wrong with the data. Sizes are chosen for a paper
//! column (about 240 pt wide, 7–9 pt text); figures with many panels grow to double-column width.
//!
//! Colours: Okabe–Ito for categories ([`color::category`]), a blue–white–red diverging map centred
//! on 0 for weights and differences ([`color::diverging`]), viridis for densities and heat maps
//! ([`color::viridis`]).

pub mod color;
mod figures;
mod layout;
mod render;
mod stats;
mod svg;

pub use figures::activations::{stem_activations, Plane, StemColumn};
pub use figures::boxes::{metric_boxes, metric_boxes_marked};
pub use figures::calibration::{reliability_diagram, ReliabilitySeries};
pub use figures::density::density_2d;
pub use figures::divergence::{divergence_by_depth, divergence_by_depth_marked, kl_heatmap};
pub use figures::filters::{filter_grid, filter_strip, rgb_filters};
pub use figures::pca::{basis_images, cumulative_variance, ridge_plot, BasisPanel};
pub use render::{font_data, Raster, FONT_FAMILY};
pub use stats::{box_stats, BoxStats};

/// Caps on figure inputs: larger inputs are rejected, or thinned where a figure says so.
pub mod limits {
    pub use crate::figures::activations::{MAX_ACTIVATION_SIDE, MAX_COLUMNS, MAX_SIDE_DRAWN};
    pub use crate::figures::boxes::{MAX_AXIS, MAX_OUTLIERS_DRAWN};
    pub use crate::figures::density::{MAX_BINS, MAX_BINS_DRAWN};
    pub use crate::figures::divergence::{MAX_ANNOTATED, MAX_BARS, MAX_HEATMAP};
    pub use crate::figures::filters::{MAX_GRID_SIDE, MAX_PATCHES};
    pub use crate::figures::pca::{MAX_CURVE_POINTS, MAX_SERIES};
    pub use crate::figures::MAX_KERNEL;
}

/// Errors of figure construction and rendering.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// The plain data handed to a figure function is inconsistent or out of range.
    #[error("invalid figure data: {0}")]
    InvalidInput(String),
    /// The figure's SVG could not be parsed by usvg.
    #[error("figure SVG could not be parsed: {0}")]
    Svg(String),
    /// Rasterisation to PNG failed (size or encoding).
    #[error("PNG rendering failed: {0}")]
    Png(String),
    /// Conversion to PDF failed.
    #[error("PDF conversion failed: {0}")]
    Pdf(String),
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file that could not be written.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// A finished figure: standalone SVG text and its size in points (1/72 in).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Standalone SVG document; user units are points.
    pub svg: String,
    /// Width in points.
    pub width_pt: f64,
    /// Height in points.
    pub height_pt: f64,
}

impl Figure {
    /// Rasterises the figure to RGBA pixels with `scale` pixels per point (4.1667 = 300 dpi).
    pub fn rasterize(&self, scale: f32) -> Result<Raster, ShowError> {
        render::rasterize(&self.svg, scale)
    }

    /// Renders the figure to PNG bytes with `scale` pixels per point (4.1667 = 300 dpi).
    pub fn to_png(&self, scale: f32) -> Result<Vec<u8>, ShowError> {
        render::to_png(&self.svg, scale)
    }

    /// Converts the figure to a one-page vector PDF of the figure's size with the font embedded.
    pub fn to_pdf(&self) -> Result<Vec<u8>, ShowError> {
        render::to_pdf(&self.svg)
    }

    /// Writes `stem.svg`, `stem.png` (300 dpi) and `stem.pdf`.
    pub fn save_all(&self, stem: &std::path::Path) -> Result<(), ShowError> {
        let png = self.to_png(PNG_SCALE_300_DPI)?;
        let pdf = self.to_pdf()?;
        write_file(&with_suffix(stem, ".svg"), self.svg.as_bytes())?;
        write_file(&with_suffix(stem, ".png"), &png)?;
        write_file(&with_suffix(stem, ".pdf"), &pdf)
    }
}

/// Pixels per point for a 300 dpi raster.
pub const PNG_SCALE_300_DPI: f32 = 300.0 / 72.0;

/// `stem` with `suffix` appended (unlike `with_extension`, keeps dots inside the stem).
fn with_suffix(stem: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(suffix);
    std::path::PathBuf::from(s)
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), ShowError> {
    std::fs::write(path, bytes).map_err(|source| ShowError::Io {
        path: path.to_path_buf(),
        source,
    })
}
