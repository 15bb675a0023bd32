//! The figures of the report: which models are drawn, every figure with its title and caption,
//! saved under `figures/` (SVG, PNG, PDF) and kept for embedding in the page.

use super::figures;
use super::{FigureEntry, ReportOptions};
use crate::compare::density2d::coefficient_density;
use crate::compare::study::{AggregateReport, BasisReport, KlMatrix, ShiftReport};
use crate::db::Db;
use convlens_show::Figure;
use std::path::Path;

pub(super) struct Collected {
    pub(super) only: Vec<&'static str>,
    pub(super) entries: Vec<FigureEntry>,
    pub(super) svgs: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl Collected {
    pub(super) fn add(
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

pub(super) fn safe_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Models whose filters are drawn: the first `n` (by name) of each group, or of the database.
pub(super) fn drawn_models<'a>(
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
pub(super) fn draw_all(
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
