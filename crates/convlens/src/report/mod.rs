//! Stage 5 — show: the HTML report of a model zoo with every figure of the two papers.
//!
//! `report` builds (or opens) a filter database, runs the analyses (basis, shift, KL matrix,
//! aggregates), draws the figures with `convlens-show` as SVG, PNG and PDF, and writes one
//! self-contained `index.html` (figures embedded) next to the figure files.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`report`], [`ReportOptions`], [`FIGURE_KINDS`], [`ReportOutput`], [`ReportError`]: loading or building the database and running the analyses |
//! | `draw.rs` | the figures: which are drawn, titles and captions, saving them |
//! | `figures.rs` | the numbers behind each figure, computed from the analysis outputs |
//! | `html.rs` | the page: head and style, models, build status, shift and quality tables, figures |
//! | `fingerprint.rs` | the robustness-fingerprint section ([`FingerprintRow`]) |
//! | `stem.rs` | the first-layer (stem) section ([`StemSection`]) |

mod draw;
pub mod figures;
mod fingerprint;
mod html;
mod stem;

pub use fingerprint::FingerprintRow;
pub use stem::StemSection;

use crate::compare::shift::Density;
use crate::compare::study::{
    aggregate_with, basis, kl_matrix, shift, AggregateOptions, Scope, ShiftOptions,
};
use crate::db::build::{build, BuildOptions, BuildReport};
use crate::db::{Db, DbError};
use draw::{draw_all, drawn_models, safe_id, Collected};
use html::render_html;
use std::path::{Path, PathBuf};
use stem::stem_section;

/// Options of the report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Meta column whose values are compared (default `Robust`).
    pub compare: String,
    /// Meta table, when building from a zoo folder (default: `meta.csv` in the folder).
    pub meta: Option<PathBuf>,
    /// Pairings table (default: `pairings.csv` in the zoo folder, when building).
    pub pairs: Option<PathBuf>,
    /// Kernel size analysed.
    pub kernel: [usize; 2],
    /// Models per group whose filters are drawn.
    pub models_drawn_per_group: usize,
    /// Bootstrap resamples of the shift.
    pub bootstrap: usize,
    /// Clean and perturbed images for the stem section (default: `adv_examples.npz` in the
    /// zoo folder); the section needs the model files, i.e. a zoo folder as input.
    pub images: Option<PathBuf>,
    /// Only these figures (see [`FIGURE_KINDS`]); empty = all.
    pub figures: Vec<String>,
    /// The checkpoint entry to read when building from model files, for models whose meta row
    /// has no `Entry` cell; `None`: each file's default entry.
    pub entry: Option<String>,
}

/// The figure kinds of the report, with the file-name prefix of their figures.
pub const FIGURE_KINDS: &[(&str, &str)] = &[
    ("filters", "filters_"),
    ("rgb", "rgb_"),
    ("strip", "strip_"),
    ("basis", "basis"),
    ("variance", "cumulative_variance"),
    ("ridge", "ridge"),
    ("kl", "kl_heatmap"),
    ("depth", "divergence_by_depth"),
    ("boxes", "metric_boxes"),
    ("density", "density_c0_c1"),
    ("stem", "stem_"),
    ("fingerprint", "fingerprint_reliability"),
];

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            compare: "Robust".into(),
            meta: None,
            pairs: None,
            kernel: [3, 3],
            models_drawn_per_group: 1,
            bootstrap: 200,
            images: None,
            figures: Vec::new(),
            entry: None,
        }
    }
}

/// A figure of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FigureEntry {
    /// File stem under `figures/`.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it shows.
    pub caption: String,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    /// The HTML file.
    pub index: PathBuf,
    /// The figures.
    pub figures: Vec<FigureEntry>,
    /// Analyses or figures that could not be made, with the reason.
    pub warnings: Vec<String>,
    /// The database build, when the input was a zoo folder.
    pub build: Option<BuildReport>,
}

/// Why a report could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Database problem.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Writing failed.
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
}

/// Builds the report of `input` (a database folder or a zoo folder) into `out`.
pub fn report(input: &Path, out: &Path, opts: &ReportOptions) -> Result<ReportOutput, ReportError> {
    std::fs::create_dir_all(out).map_err(|e| ReportError::Io(out.to_path_buf(), e))?;
    let mut warnings = Vec::new();
    for f in &opts.figures {
        if !FIGURE_KINDS.iter().any(|(k, _)| k == f) {
            return Err(ReportError::Db(DbError::Selection(format!(
                "unknown figure {f:?}; figures: {}",
                FIGURE_KINDS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))));
        }
    }
    // a single checkpoint: a zoo of one file in its folder
    let (input, files) = if input.is_file() {
        let dir = input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = input.file_name().map(PathBuf::from).unwrap_or_default();
        (dir, vec![name])
    } else {
        (input, Vec::new())
    };
    let (db, build_report, pairs) = if input.join(crate::db::MODELS_DIR).is_dir() {
        (Db::open(input)?, None, opts.pairs.clone())
    } else {
        let meta = opts.meta.clone().or_else(|| {
            let p = input.join("meta.csv");
            p.exists().then_some(p)
        });
        // the zoo's pairings restrict the study to complete pairs: not for a single file
        let pairs = opts.pairs.clone().or_else(|| {
            let p = input.join("pairings.csv");
            (p.exists() && files.is_empty()).then_some(p)
        });
        let db_dir = out.join("db");
        let r = build(
            input,
            &db_dir,
            &BuildOptions {
                meta,
                files,
                entry: opts.entry.clone(),
                ..Default::default()
            },
            &|_, _, _| {},
        )?;
        (Db::open(&db_dir)?, Some(r), pairs)
    };
    let scope = Scope {
        pairs: pairs.clone(),
        kernel: Some(opts.kernel),
        ..Default::default()
    };
    let has_col = db.meta_columns().iter().any(|c| c == &opts.compare);
    let by = has_col.then_some(opts.compare.as_str());
    if !has_col {
        warnings.push(format!(
            "no meta column {:?}: groups are not compared (give a meta table with that column)",
            opts.compare
        ));
    }
    let basis_r = basis(&db, &scope, by)?;
    let single = db.models.len() < 2;
    let shift_r = match by.filter(|_| !single) {
        Some(col) => match shift(
            &db,
            &scope,
            &ShiftOptions {
                by: col.to_string(),
                bootstrap: opts.bootstrap,
                ..Default::default()
            },
        ) {
            Ok(r) => Some(r),
            Err(e) => {
                warnings.push(format!("shift: {e}"));
                None
            }
        },
        None => None,
    };
    let klm = match single {
        true => None,
        false => match kl_matrix(&db, &scope, "model", "overall", Density::Histogram) {
            Ok(k) => Some(k),
            Err(e) => {
                warnings.push(format!("KL matrix: {e}"));
                None
            }
        },
    };
    // the box plots' columns are datasets: test within each
    let dataset_key = db
        .meta_columns()
        .into_iter()
        .find(|c| c == "Training-Dataset" || c == "Dataset");
    let agg = aggregate_with(
        &db,
        &scope,
        by,
        &AggregateOptions {
            within: dataset_key,
            ..Default::default()
        },
    )?;
    let fp_model = match crate::fingerprint::FingerprintModel::bundled() {
        Ok(m) => Some(m),
        Err(e) => {
            warnings.push(format!("fingerprint: {e}"));
            None
        }
    };
    let fps = fp_model
        .as_ref()
        .map(|m| figures::fingerprints(&db, m))
        .unwrap_or_default();
    let zoo_dir = build_report.is_some().then_some(input);
    let stem = stem_section(&db, zoo_dir, opts, by, &mut warnings);
    let figdir = out.join("figures");
    std::fs::create_dir_all(&figdir).map_err(|e| ReportError::Io(figdir.clone(), e))?;
    let mut col = Collected {
        only: FIGURE_KINDS
            .iter()
            .filter(|(k, _)| opts.figures.iter().any(|f| f == k))
            .map(|(_, p)| *p)
            .collect(),
        entries: Vec::new(),
        svgs: Vec::new(),
        warnings: Vec::new(),
    };
    draw_all(
        &db,
        opts,
        by,
        &basis_r,
        shift_r.as_ref(),
        klm.as_ref(),
        &agg,
        fp_model.as_ref(),
        &figdir,
        &mut col,
    );
    if let Some(st) = &stem {
        let drawn: Vec<&str> = drawn_models(&db, by, opts.models_drawn_per_group)
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        for r in st
            .reports
            .iter()
            .filter(|r| drawn.contains(&r.model.as_str()))
        {
            col.add(
                &figdir,
                &format!("stem_{}", safe_id(&r.model)),
                &format!("Stem of {}: clean vs perturbed activations", r.model),
                "Rows: stem filter, post-ReLU activation of a clean image, of its adversarial version, and their difference (diverging colours), for the first output channels.",
                crate::stem::figure(r).map_err(|e| e.to_string()),
            );
        }
    }
    warnings.extend(col.warnings.iter().cloned());
    let html = render_html(
        &db,
        opts,
        by,
        &basis_r,
        shift_r.as_ref(),
        &agg,
        build_report.as_ref(),
        stem.as_ref(),
        fp_model.as_ref().map(|m| (m, fps.as_slice())),
        &col,
        &warnings,
    );
    let index = out.join("index.html");
    std::fs::write(&index, html).map_err(|e| ReportError::Io(index.clone(), e))?;
    Ok(ReportOutput {
        index,
        figures: col.entries,
        warnings,
        build: build_report,
    })
}
