//! Stage 5 — show: the HTML report of a model zoo with every figure of the two papers.
//!
//! `report` builds (or opens) a filter database, runs the analyses (basis, shift, KL matrix,
//! aggregates), draws the figures with `convlens-show` as SVG, PNG and PDF, and writes one
//! self-contained `index.html` (figures embedded) next to the figure files.

pub mod figures;

use crate::compare::density2d::coefficient_density;
use crate::compare::shift::Density;
use crate::compare::study::{
    aggregate_with, basis, kl_matrix, shift, AggregateOptions, AggregateReport, BasisReport,
    KlMatrix, Scope, ShiftOptions, ShiftReport,
};
use crate::db::build::{build, BuildOptions, BuildReport};
use crate::db::{Db, DbError};
use base64::Engine;
use convlens_show::Figure;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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

struct Collected {
    only: Vec<&'static str>,
    entries: Vec<FigureEntry>,
    svgs: Vec<String>,
    warnings: Vec<String>,
}

impl Collected {
    fn add(
        &mut self,
        dir: &Path,
        id: &str,
        title: &str,
        caption: &str,
        fig: Result<Figure, String>,
    ) {
        if !self.only.is_empty() && !self.only.iter().any(|p| id.starts_with(p)) {
            return;
        }
        match fig.and_then(|f| {
            f.save_all(&dir.join(id))
                .map_err(|e| e.to_string())
                .map(|_| f)
        }) {
            Ok(f) => {
                self.entries.push(FigureEntry {
                    id: id.into(),
                    title: title.into(),
                    caption: caption.into(),
                });
                self.svgs.push(f.svg);
            }
            Err(e) => self.warnings.push(format!("figure {id}: {e}")),
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt(v: Option<f64>, d: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.d$}"),
        _ => "–".into(),
    }
}

fn safe_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
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

/// Models whose filters are drawn: the first `n` (by name) of each group, or of the database.
fn drawn_models<'a>(
    db: &'a Db,
    by: Option<&str>,
    n: usize,
) -> Vec<&'a crate::db::record::ModelRecord> {
    match by {
        None => db.models.iter().take(n).collect(),
        Some(col) => {
            let mut groups: std::collections::BTreeMap<
                String,
                Vec<&crate::db::record::ModelRecord>,
            > = Default::default();
            for m in &db.models {
                if let Some(v) = m.meta(col) {
                    groups
                        .entry(crate::db::select::canonical(v))
                        .or_default()
                        .push(m);
                }
            }
            groups
                .into_values()
                .flat_map(|v| v.into_iter().take(n))
                .collect()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_all(
    db: &Db,
    opts: &ReportOptions,
    by: Option<&str>,
    basis_r: &BasisReport,
    shift_r: Option<&ShiftReport>,
    klm: Option<&KlMatrix>,
    agg: &AggregateReport,
    fp_model: Option<&crate::fingerprint::FingerprintModel>,
    dir: &Path,
    col: &mut Collected,
) {
    let k = opts.kernel;
    let e = |r: Result<Figure, convlens_show::ShowError>| r.map_err(|e| e.to_string());
    // 1-3: filters of selected models
    for m in drawn_models(db, by, opts.models_drawn_per_group) {
        let group = by
            .and_then(|c| m.meta(c))
            .map(|v| format!(" ({}={v})", by.unwrap_or("")));
        let group = group.unwrap_or_default();
        let layers = figures::conv_layers(m, k);
        let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
            continue;
        };
        for (which, l) in [("first", first), ("last", last)] {
            let fig = figures::layer_weights(db, m, l)
                .map_err(|e| e.to_string())
                .and_then(|(w, shape)| {
                    e(convlens_show::filter_grid(
                        &format!("{} — {which} layer {}", m.name, l.name),
                        &w,
                        shape,
                        8,
                        16,
                    ))
                });
            col.add(
                dir,
                &format!("filters_{which}_{}", safe_id(&m.name)),
                &format!("{which} {}×{} layer of {}{group}", k[0], k[1], m.name),
                "Rows: input channels, columns: output channels (first 8 × 16); diverging colours scaled to ±max|w| of the layer.",
                fig,
            );
        }
        if first.in_channels == 3 {
            let fig = figures::layer_weights(db, m, first)
                .map_err(|e| e.to_string())
                .and_then(|(w, shape)| {
                    e(convlens_show::rgb_filters(
                        &format!("{} stem", m.name),
                        &w,
                        shape,
                    ))
                });
            col.add(
                dir,
                &format!("rgb_{}", safe_id(&m.name)),
                &format!("RGB stem filters of {}{group}", m.name),
                "Each output channel of the first layer as a colour patch 0.5 + 0.5·f/max|w|.",
                fig,
            );
        }
        let fig = figures::first_filters(db, m, k)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                e(convlens_show::filter_strip(
                    &format!("{}: one filter per layer", m.name),
                    &f,
                ))
            });
        col.add(
            dir,
            &format!("strip_{}", safe_id(&m.name)),
            &format!("One filter per layer of {}{group}", m.name),
            "The first filter (first input, first output channel) of every conv layer, from the stem (left) to the last layer, each scaled to its own ±max.",
            fig,
        );
    }
    // 4-5: basis
    col.add(
        dir,
        "basis",
        "PCA basis of the filters",
        "Eigen-images v0… of the l∞-scaled non-sparse filters, with their explained-variance ratio; all models and per group.",
        e(convlens_show::basis_images(&figures::basis_panels(basis_r))),
    );
    col.add(
        dir,
        "cumulative_variance",
        "Cumulative explained variance",
        "Share of the filters' variance captured by the first n principal components, per group.",
        e(convlens_show::cumulative_variance(
            &figures::cumulative_curves(basis_r),
        )),
    );
    if let Some(s) = shift_r {
        // 6: ridge
        let groups = figures::ridge_groups(s);
        col.add(
            dir,
            "ridge",
            "Coefficient distributions",
            "Distribution of each PCA coefficient c0…c8 of the non-sparse filters per group (70-bin histograms over the shared coefficient range, as used for the KL).",
            e(convlens_show::ridge_plot(
                (s.coef_range[0], s.coef_range[1]),
                s.basis.components.len(),
                &groups,
            )),
        );
        // 8: divergence by depth
        let (series, floor) = figures::divergence_bars(s);
        col.add(
            dir,
            "divergence_by_depth",
            "Distribution shift by depth",
            "Variance-weighted symmetric KL between the groups' coefficient distributions for the first conv layer and each decile of normalised depth; grey: noise floor (KL between replicate models of the same group, or between random halves of a group); *: significant in a permutation test over models (labels shuffled, within pairs when given), Benjamini–Hochberg q ≤ 0.05 across depth cells and subsets.",
            e(convlens_show::divergence_by_depth_marked(
                &figures::depth_labels(s),
                &series,
                Some(&floor),
                Some(&figures::divergence_marks(s)),
            )),
        );
        // 10: 2-D density
        let fig = (|| {
            let models = db
                .models
                .iter()
                .enumerate()
                .filter(|(_, m)| {
                    s.comparisons[0]
                        .models
                        .iter()
                        .flatten()
                        .any(|n| n == &m.name)
                })
                .map(|(i, _)| i)
                .collect::<Vec<_>>();
            let counts = coefficient_density(
                db,
                &models,
                k,
                &s.basis,
                (s.coef_range[0], s.coef_range[1]),
                100,
            )
            .map_err(|e| e.to_string())?;
            e(convlens_show::density_2d(
                "c0 vs c1, all models",
                &counts,
                (s.coef_range[0], s.coef_range[1]),
                (s.coef_range[0], s.coef_range[1]),
            ))
        })();
        col.add(
            dir,
            "density_c0_c1",
            "2-D density of the first two coefficients",
            "Number of non-sparse filters per (c0, c1) cell, log colour scale.",
            fig,
        );
    }
    // 7: KL heat map between models
    if let Some(kl) = klm {
        let m: Vec<Vec<f64>> = kl
            .kl
            .iter()
            .map(|r| r.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            .collect();
        col.add(
            dir,
            "kl_heatmap",
            "KL divergence between models",
            "Variance-weighted symmetric KL between the coefficient distributions of every pair of models, sorted by mean divergence.",
            e(convlens_show::kl_heatmap(&kl.labels, &m, true)),
        );
    }
    // 9: metric boxes
    if let Some(col_by) = by {
        let groups: Vec<String> = {
            let mut g: Vec<String> = agg.rows.iter().filter_map(|r| r.group.clone()).collect();
            g.sort();
            g.dedup();
            g
        };
        let depth: Vec<String> = crate::depth::ALL_BINS
            .iter()
            .map(|b| b.label())
            .filter(|l| agg.rows.iter().any(|r| &r.depth_group == l))
            .collect();
        let dataset_key = db
            .meta_columns()
            .into_iter()
            .find(|c| c == "Training-Dataset" || c == "Dataset");
        let columns: Vec<String> = match &dataset_key {
            Some(key) => {
                let mut v: Vec<String> = db
                    .models
                    .iter()
                    .filter_map(|m| m.meta(key).map(str::to_string))
                    .collect();
                v.sort();
                v.dedup();
                v
            }
            None => vec!["all models".to_string()],
        };
        let metrics: Vec<String> = figures::BOX_METRICS.iter().map(|s| s.to_string()).collect();
        let values = |mi: usize, ci: usize, di: usize, gi: usize| {
            figures::box_values(
                db,
                agg,
                mi,
                dataset_key.as_deref(),
                &columns[ci],
                &depth[di],
                &groups[gi],
            )
        };
        let legend: Vec<String> = groups.iter().map(|g| format!("{col_by}={g}")).collect();
        // the tests run within each dataset (column); without a dataset column, over all models
        let subset = |ci: usize| -> String {
            match &dataset_key {
                Some(_) => columns[ci].clone(),
                None => "all".to_string(),
            }
        };
        let marks = |mi: usize, ci: usize, di: usize| {
            figures::box_significant(agg, mi, &subset(ci), &depth[di])
        };
        let marks: Option<&dyn Fn(usize, usize, usize) -> bool> =
            (!agg.tests.is_empty()).then_some(&marks as _);
        if !groups.is_empty() && !depth.is_empty() {
            col.add(
                dir,
                "metric_boxes",
                &format!("Filter quality by depth, by {col_by}"),
                "Per-model sparsity, variance entropy and orthogonality of each depth group (first layer, deciles of normalised depth); boxes: quartiles, whiskers 1.5 IQR, triangle: mean; *: group difference of the means significant in a permutation test over models, Benjamini–Hochberg q ≤ 0.05 across the depth groups and datasets of each metric.",
                e(convlens_show::metric_boxes_marked(
                    &metrics, &columns, &depth, &legend, &values, marks,
                )),
            );
        }
    }
    if let Some(fm) = fp_model {
        col.add(
            dir,
            "fingerprint_reliability",
            "Fingerprint calibration (reliability diagram)",
            "Observed share of adversarially trained models against the mean predicted probability, in ten probability bins (numbers: models per bin): out-of-fold predictions on the robustness study's published table (leave one paper / one architecture out), and the transfer to the zoos validated at training time.",
            e(convlens_show::reliability_diagram(
                &figures::reliability_series(fm),
                "predicted P(adversarially trained)",
            )),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn render_html(
    db: &Db,
    opts: &ReportOptions,
    by: Option<&str>,
    basis_r: &BasisReport,
    shift_r: Option<&ShiftReport>,
    agg: &AggregateReport,
    build_r: Option<&BuildReport>,
    stem: Option<&StemSection>,
    fingerprint: Option<(&crate::fingerprint::FingerprintModel, &[FingerprintRow])>,
    col: &Collected,
    warnings: &[String],
) -> String {
    let mut h = String::new();
    let n_filters: u64 = db
        .models
        .iter()
        .filter_map(|m| m.kernel(opts.kernel))
        .map(|k| k.n_filters)
        .sum();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>convlens report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}}
h1{{font-size:1.6em}} h2{{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}}
table{{border-collapse:collapse;font-size:.85em;margin:.5em 0}} th,td{{border:1px solid #ddd;padding:.2em .5em;text-align:right}}
th{{background:#f4f4f4}} td:first-child,th:first-child{{text-align:left}}
figure{{margin:1.5em 0}} figure img{{width:640px;max-width:100%;height:auto;border:1px solid #eee}}
table.text td{{text-align:left}}
figcaption{{font-size:.85em;color:#444}} .warn{{color:#a40}} code{{background:#f4f4f4;padding:0 .2em}}
</style>
<script>
window.__errors=[];
window.addEventListener('error',function(e){{window.__errors.push(String(e.message||(e.target&&e.target.src)||'error'));}},true);
(function(){{var ce=console.error;console.error=function(){{window.__errors.push(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);}};}})();
window.addEventListener('load',function(){{var imgs=document.images,ok=0;for(var i=0;i<imgs.length;i++){{if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}}
document.body.setAttribute('data-images',ok+'/'+imgs.length);document.body.setAttribute('data-errors',String(window.__errors.length));}});
</script></head><body>
<h1>convlens report</h1>
<p>{} models, {} filters of size {}×{}{}. Database: <code>{}</code>.</p>
"#,
        db.models.len(),
        n_filters,
        opts.kernel[0],
        opts.kernel[1],
        by.map(|c| format!(", compared by <code>{}</code>", esc(c)))
            .unwrap_or_default(),
        esc(&db.dir.display().to_string()),
    );
    if !warnings.is_empty() {
        h.push_str("<ul class=\"warn\">");
        for w in warnings {
            let _ = write!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul>");
    }
    // models
    h.push_str("<h2>Models</h2><table><tr><th>model</th>");
    let wanted = [
        opts.compare.as_str(),
        "Network",
        "Training-Dataset",
        "Clean Accuracy",
        "Robust Accuracy",
        "Seed",
    ];
    let cols: Vec<String> = db
        .meta_columns()
        .into_iter()
        .filter(|c| wanted.contains(&c.as_str()))
        .collect();
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str(
        "<th>file</th><th>format</th><th>conv layers</th><th>filters</th><th>sparse</th></tr>",
    );
    for m in &db.models {
        let _ = write!(h, "<tr><td>{}</td>", esc(&m.name));
        for c in &cols {
            let _ = write!(h, "<td>{}</td>", esc(m.meta(c).unwrap_or("")));
        }
        let (n, s) = m
            .kernel(opts.kernel)
            .map_or((0, 0), |k| (k.n_filters, k.n_sparse));
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{n}</td><td>{s}</td></tr>",
            esc(&m.file),
            esc(&m.format),
            m.n_conv_layers
        );
    }
    h.push_str("</table>");
    if let Some(b) = build_r {
        let problems: Vec<_> = b
            .status
            .iter()
            .filter(|s| {
                !matches!(
                    s.outcome,
                    crate::db::build::Outcome::Added | crate::db::build::Outcome::Unchanged
                )
            })
            .collect();
        if !problems.is_empty() {
            h.push_str("<p>Not in the database or worth a look:</p><table><tr><th>model</th><th>file</th><th>status</th><th>detail</th></tr>");
            for s in problems {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&s.model),
                    esc(&s.file),
                    s.outcome.label(),
                    esc(&s.detail)
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str(METRICS_HTML);
    // shift table
    if let Some(s) = shift_r {
        for c in &s.comparisons {
            let _ = write!(
                h,
                "<h2>Distribution shift: {} vs {}{}</h2><p>Models: {} = {}; {} = {}. Weighted by the explained-variance ratios of the basis of all {} filters; coefficient range [{:.4}, {:.4}].</p>",
                esc(&c.groups[0]),
                esc(&c.groups[1]),
                if c.subset == "all" { String::new() } else { format!(" within {}", esc(&c.subset)) },
                esc(&c.groups[0]),
                esc(&c.models[0].join(", ")),
                esc(&c.groups[1]),
                esc(&c.models[1].join(", ")),
                s.basis.n_samples,
                s.coef_range[0],
                s.coef_range[1],
            );
            h.push_str("<table class=\"shift\"><tr><th>depth group</th><th>filters A</th><th>filters B</th><th>KL</th><th>bootstrap 95 %</th><th>within-group floor (mean)</th><th>replicate floor (mean)</th><th>KL / floor</th><th>KL smoothed</th><th>permutation p</th><th>BH q</th><th>status</th></tr>");
            for x in &c.cells {
                let perm = x.permutation.as_ref();
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                    esc(&x.bin),
                    x.n[0],
                    x.n[1],
                    fmt(x.kl, 4),
                    x.bootstrap_ci.map_or("–".into(), |c| format!("{:.4}–{:.4}", c[0], c[1])),
                    fmt(x.within_group.mean, 4),
                    fmt(x.replicates.mean, 4),
                    fmt(x.kl_over_floor, 2),
                    fmt(x.kl_smoothed, 4),
                    perm.map_or("–".into(), |p| format!(
                        "{:.3} ({}{})",
                        p.p_value,
                        if p.exact { "exact, " } else { "" },
                        p.permutations
                    )),
                    fmt(x.q_value, 3),
                    if x.significant == Some(true) { " *" } else { "" },
                    esc(&x.status)
                );
            }
            h.push_str("</table>");
        }
        if !s.pairs.is_empty() {
            h.push_str("<p>Per robust ↔ normal pair (overall KL):</p><table><tr><th>robust</th><th>normal</th><th>KL overall</th><th>KL first layer</th></tr>");
            for p in &s.pairs {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.pair.robust),
                    esc(&p.pair.normal),
                    fmt(p.kl[0], 4),
                    fmt(p.kl[1], 4)
                );
            }
            h.push_str("</table>");
        }
    }
    // aggregates: group means by depth
    if by.is_some() {
        h.push_str("<h2>Filter quality by depth (group means of the per-model aggregates)</h2><table><tr><th>depth group</th><th>group</th><th>models</th><th>sparsity</th><th>variance entropy</th><th>orthogonality</th></tr>");
        for b in crate::depth::ALL_BINS {
            let label = b.label();
            let mut groups: Vec<String> = agg.rows.iter().filter_map(|r| r.group.clone()).collect();
            groups.sort();
            groups.dedup();
            for g in groups {
                let rows: Vec<_> = agg
                    .rows
                    .iter()
                    .filter(|r| r.depth_group == label && r.group.as_deref() == Some(g.as_str()))
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let mean = |f: &dyn Fn(&crate::compare::study::ModelAggregate) -> f64| {
                    let v: Vec<f64> = rows
                        .iter()
                        .map(|r| f(r))
                        .filter(|x| x.is_finite())
                        .collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&label),
                    esc(&g),
                    rows.len(),
                    fmt(mean(&|r| r.agg.sparsity), 4),
                    fmt(mean(&|r| r.agg.variance_entropy.unwrap_or(f64::NAN)), 4),
                    fmt(mean(&|r| r.agg.orthogonality), 4)
                );
            }
        }
        h.push_str("</table>");
        if let Some(g) = &agg.groups {
            let _ = write!(
                h,
                "<p>Group differences ({} − {}) of the per-model means, permutation test over models (labels swapped only within robust ↔ normal pairs when pairings are given), Benjamini–Hochberg q across the depth groups and datasets of each metric (* q ≤ 0.05):</p><table class=\"tests\"><tr><th>subset</th><th>depth group</th><th>metric</th><th>models</th><th>difference</th><th>permutation p</th><th>BH q</th></tr>",
                esc(&g[0]),
                esc(&g[1]),
            );
            for t in &agg.tests {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                    esc(&t.subset),
                    esc(&t.depth_group),
                    esc(&t.metric),
                    t.n[0],
                    t.n[1],
                    fmt(t.difference, 4),
                    fmt(t.permutation.as_ref().map(|p| p.p_value), 3),
                    fmt(t.q_value, 3),
                    if t.significant == Some(true) { " *" } else { "" },
                );
            }
            h.push_str("</table>");
        }
    }
    if let Some((fm, rows)) = fingerprint {
        fingerprint_html(&mut h, db, opts, fm, rows);
    }
    if let Some(st) = stem {
        stem_html(&mut h, st);
    }
    let _ = write!(
        h,
        "<h2>Basis</h2><p>Explained-variance ratio of the basis of all models: {}.</p>",
        basis_r
            .full
            .explained_variance_ratio
            .iter()
            .map(|r| format!("{:.1} %", 100.0 * r))
            .collect::<Vec<_>>()
            .join(", ")
    );
    h.push_str("<h2>Figures</h2>");
    for (f, svg) in col.entries.iter().zip(&col.svgs) {
        let data = base64::engine::general_purpose::STANDARD.encode(svg.as_bytes());
        let _ = writeln!(
            h,
            "<figure id=\"{id}\"><img alt=\"{t}\" src=\"data:image/svg+xml;base64,{data}\"><figcaption><b>{t}.</b> {c} Files: <a href=\"figures/{id}.svg\">SVG</a>, <a href=\"figures/{id}.png\">PNG</a>, <a href=\"figures/{id}.pdf\">PDF</a>.</figcaption></figure>",
            id = esc(&f.id),
            t = esc(&f.title),
            c = esc(&f.caption),
        );
    }
    h.push_str("<p>Made by convlens. Numbers follow the published code of Gavrikov &amp; Keuper (CVPR 2022, CVPRW 2022); see the project's docs/decisions.md for deliberate differences.</p></body></html>\n");
    h
}

const METRICS_HTML: &str = r#"<h2>What is measured</h2>
<table class="text">
<tr><th>metric</th><th>meaning</th></tr>
<tr><td>sparsity</td><td>Share of filters whose largest |weight| is at most 1/100 of the layer's largest |weight|: filters that do (almost) nothing. Adversarially robust models tend to have fewer sparse filters.</td></tr>
<tr><td>variance entropy</td><td>Base-10 entropy of the PCA spectrum of a layer's l∞-scaled non-sparse filters: low when the filters are alike (few patterns), high when they spread over all directions (up to log10(9) ≈ 0.95 for 3×3).</td></tr>
<tr><td>orthogonality</td><td>1 − mean |cosine| between the output channels of a layer: 1 when every output channel looks for something different, lower when channels are redundant.</td></tr>
<tr><td>PCA basis</td><td>Principal components ("eigen-filters") of all l∞-scaled non-sparse filters; every filter is described by its coefficients c0…c8 in this basis.</td></tr>
<tr><td>distribution shift (KL)</td><td>Symmetric Kullback–Leibler divergence between two groups' coefficient distributions (70-bin histograms over the shared range, empty bins filled with float32 ε), summed over the components weighted by their explained-variance ratio — for all filters, the first conv layer, and each decile of normalised depth.</td></tr>
<tr><td>noise floor</td><td>The same KL between models that should not differ: replicate runs (same architecture and group, another seed) and random halves of a group. A shift is only meaningful well above it; "KL / floor" says how many times the floor it is.</td></tr>
<tr><td>KL smoothed</td><td>The same divergence between Gaussian-smoothed histograms (Silverman bandwidth): far less inflated by small samples than the plug-in KL, whose empty bins (filled with ε) dominate when a cell holds only a few dozen filters, e.g. a first layer.</td></tr>
<tr><td>permutation p, BH q</td><td>The share of relabellings of the models (labels shuffled between the groups, only within robust ↔ normal pairs when pairings are given; exact when all relabellings are few enough) whose KL is at least the observed one; q: Benjamini–Hochberg adjusted over the depth cells of all comparisons. With few models the smallest possible p is large: 2 vs 2 models cannot be significant.</td></tr>
<tr><td>fingerprint</td><td>Probability that a model was adversarially trained, from the explained-variance spectrum of its l∞-scaled non-sparse 3×3 filters (ridge logistic regression fitted to the robustness study's 114 published per-model bases).</td></tr>
</table>
"#;

/// A model's fingerprint in the report, or why it was refused.
pub type FingerprintRow = (String, Result<crate::fingerprint::Fingerprint, String>);

fn fingerprint_html(
    h: &mut String,
    db: &Db,
    opts: &ReportOptions,
    fm: &crate::fingerprint::FingerprintModel,
    rows: &[FingerprintRow],
) {
    let v = &fm.validation;
    let _ = write!(
        h,
        "<h2>Robustness fingerprint</h2><p>P(adversarially trained) from each model's explained-variance spectrum (first three ratios evr0–evr2 of the PCA of its l∞-scaled non-sparse 3×3 filters), by a ridge logistic regression fitted to the {} robust and {} normal models of the robustness study's published per-model bases. Validation on that table: leave-one-paper-out accuracy {:.3} ({} folds), leave-one-architecture-out {:.3} ({} folds).",
        fm.training_models[0],
        fm.training_models[1],
        v.leave_one_paper_out.accuracy,
        v.leave_one_paper_out.folds,
        v.leave_one_architecture_out.accuracy,
        v.leave_one_architecture_out.folds,
    );
    for t in &v.transfer {
        let _ = write!(
            h,
            " Transfer to <code>{}</code> (another training regime): accuracy {} on {} models.",
            esc(&t.zoo),
            fmt(t.accuracy, 3),
            t.n
        );
    }
    h.push_str(" Medians of the reference models: ");
    let med: Vec<String> = rows
        .iter()
        .find_map(|(_, r)| r.as_ref().ok())
        .map(|f| {
            f.prediction
                .evidence
                .iter()
                .map(|e| {
                    format!(
                        "{} robust {:.3} / normal {:.3}",
                        e.feature, e.robust_median, e.normal_median
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    h.push_str(&esc(&med.join("; ")));
    h.push_str(".</p><table class=\"fingerprint\"><tr><th>model</th>");
    let truth_col = db.meta_columns().into_iter().find(|c| c == &opts.compare);
    if let Some(c) = &truth_col {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("<th>non-sparse 3×3 filters</th><th>evr0</th><th>evr1</th><th>evr2</th><th>P(adversarially trained)</th><th>verdict</th></tr>");
    for (name, r) in rows {
        let _ = write!(h, "<tr><td>{}</td>", esc(name));
        if let Some(c) = &truth_col {
            let v = db
                .model(name)
                .and_then(|i| db.models[i].meta(c))
                .unwrap_or("");
            let _ = write!(h, "<td>{}</td>", esc(v));
        }
        match r {
            Ok(f) => {
                let ev = |j: usize| {
                    f.prediction.evidence.get(j).map_or("–".to_string(), |e| {
                        format!(
                            "{:.3} (percentile {:.0} of robust, {:.0} of normal models)",
                            e.value,
                            100.0 * e.percentile_in_robust,
                            100.0 * e.percentile_in_normal
                        )
                    })
                };
                let _ = write!(
                    h,
                    "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}{}</td></tr>",
                    f.n_filters,
                    ev(0),
                    ev(1),
                    ev(2),
                    f.prediction.probability_robust,
                    esc(&f.prediction.verdict),
                    f.prediction
                        .warning
                        .as_ref()
                        .map(|w| format!(" ({})", esc(w)))
                        .unwrap_or_default()
                );
            }
            Err(e) => {
                let _ = write!(h, "<td colspan=\"6\">refused: {}</td></tr>", esc(e));
            }
        }
    }
    h.push_str("</table>");
}

/// The stem analysis of every model of a zoo.
pub struct StemSection {
    /// The image file.
    pub images: PathBuf,
    /// Models analysed.
    pub reports: Vec<crate::stem::StemReport>,
    /// Robust vs normal means.
    pub summary: crate::stem::ZooSummary,
    /// Models that could not be analysed, with the reason.
    pub failed: Vec<(String, String)>,
}

fn parse_triplet(v: Option<&str>) -> Option<Vec<f64>> {
    let v: Vec<f64> = v?
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    (!v.is_empty()).then_some(v)
}

fn stem_section(
    db: &Db,
    zoo: Option<&Path>,
    opts: &ReportOptions,
    by: Option<&str>,
    warnings: &mut Vec<String>,
) -> Option<StemSection> {
    let zoo = zoo?;
    let images = opts.images.clone().or_else(|| {
        let p = zoo.join("adv_examples.npz");
        p.exists().then_some(p)
    })?;
    let set = match crate::stem::ImageSet::load_npz(&images) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("stem analysis: {e}"));
            return None;
        }
    };
    let entries: Vec<crate::stem::ZooEntry> = db
        .models
        .iter()
        .map(|m| crate::stem::ZooEntry {
            name: m.name.clone(),
            path: zoo.join(&m.file),
            robust: by
                .and_then(|c| m.meta(c))
                .map(crate::db::select::canonical)
                .and_then(|v| match v.as_str() {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                }),
            norm: parse_triplet(m.meta("Input Mean")).zip(parse_triplet(m.meta("Input Std"))),
            entry: m.entry.clone().filter(|e| !e.is_empty()),
        })
        .collect();
    let results =
        crate::stem::analyse_zoo(&entries, &set, &crate::stem::AnalysisOptions::default());
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (e, r) in entries.iter().zip(results) {
        match r {
            Ok(r) => reports.push(r),
            Err(err) => {
                warnings.push(format!("stem analysis of {}: {err}", e.name));
                failed.push((e.name.clone(), err.to_string()));
            }
        }
    }
    let summary = crate::stem::zoo_summary(&reports);
    Some(StemSection {
        images,
        reports,
        summary,
        failed,
    })
}

fn stem_html(h: &mut String, st: &StemSection) {
    let _ = write!(
        h,
        "<h2>First layer: do robust stems remove perturbations?</h2><p>The stem (first conv, with its bias and BatchNorm folded) and a ReLU applied to the clean images of <code>{}</code> and to each model's own adversarial versions. <i>pre/post change</i>: ‖a(x+δ) − a(x)‖ / ‖a(x)‖ before and after the ReLU; <i>ReLU removed</i>: share of the perturbation's energy the ReLU removes; <i>centre share</i>: filter energy in the centre tap (1×1-likeness); <i>near-duplicates</i>: filters with a cosine-similar twin (≥ 0.9); <i>stem gain</i>: the largest post-ReLU change an L∞ perturbation can cause in the stem alone (projected gradient ascent).</p>",
        esc(&st.images.display().to_string())
    );
    h.push_str("<table><tr><th>model</th><th>robust</th><th>layer</th><th>centre share</th><th>near-duplicate filters</th><th>pre change</th><th>post change</th><th>ReLU removed</th><th>stem gain</th></tr>");
    for r in &st.reports {
        let m = &r.summary;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.model),
            m.robust.map_or("–".into(), |b| b.to_string()),
            esc(&m.layer),
            fmt(m.centre_share, 3),
            m.filters_with_duplicate,
            m.filters,
            fmt(m.pre_change, 3),
            fmt(m.post_change, 3),
            fmt(m.relu_removed, 3),
            fmt(m.stem_gain, 3)
        );
    }
    for (label, g) in [
        ("robust (mean)", &st.summary.robust),
        ("normal (mean)", &st.summary.normal),
    ] {
        if g.models == 0 {
            continue;
        }
        let _ = write!(
            h,
            "<tr><th>{label}</th><th>{} models</th><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            g.models,
            fmt(g.centre_share, 3),
            fmt(g.duplicate_share, 3),
            fmt(g.pre_change, 3),
            fmt(g.post_change, 3),
            fmt(g.relu_removed, 3),
            fmt(g.stem_gain, 3)
        );
    }
    h.push_str("</table>");
    for (m, e) in &st.failed {
        let _ = write!(h, "<p class=\"warn\">{}: {}</p>", esc(m), esc(e));
    }
}
