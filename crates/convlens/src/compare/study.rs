//! The analyses of a filter database: basis, shift, KL matrix and per-model aggregates.

use super::basis::{Basis, BasisError};
use super::divergence::{Bins, BINS};
use super::shift::{
    cell_kl, merge, shift_cells, BasisSummary, Density, ShiftCell, ShiftInputs, KDE_GRID,
};
use super::stats::{benjamini_hochberg, permutation_test, Design, Permutation};
use super::stream::{cell_labels, coefficient_range, model_histograms, ModelHists};
use crate::db::select::{canonical, group_by, read_pairs, select, Condition, Pair, Selection};
use crate::db::{Db, DbError};
use crate::depth::{AggregateAcc, DepthAggregate, ALL_BINS};
use serde::Serialize;
use std::path::PathBuf;

/// Which models an analysis uses.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `--where` conditions.
    pub conditions: Vec<Condition>,
    /// `--pairs` table: keep only models in complete robust ↔ normal pairs.
    pub pairs: Option<PathBuf>,
    /// Kernel size (default 3×3).
    pub kernel: Option<[usize; 2]>,
}

impl Scope {
    fn resolve(&self, db: &Db) -> Result<(Selection, [usize; 2]), DbError> {
        let pairs: Option<Vec<Pair>> = match &self.pairs {
            Some(p) => Some(read_pairs(p)?),
            None => None,
        };
        let sel = select(db, &self.conditions, pairs.as_deref())?;
        if sel.models.is_empty() {
            return Err(DbError::Selection(
                "no model of the database matches the selection".into(),
            ));
        }
        Ok((sel, self.kernel.unwrap_or([3, 3])))
    }
}

fn basis_err(what: &str, e: BasisError) -> DbError {
    DbError::Selection(format!("{what}: {e}"))
}

/// A fitted basis or why it could not be fitted.
#[derive(Debug, Clone, Serialize)]
pub struct NamedBasis {
    /// Group value or model name.
    pub name: String,
    /// Models it covers.
    pub models: usize,
    /// The basis.
    pub basis: Option<Basis>,
    /// Why there is no basis.
    pub error: Option<String>,
}

/// Output of `convlens basis`.
#[derive(Debug, Clone, Serialize)]
pub struct BasisReport {
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Models used.
    pub models: Vec<String>,
    /// Basis of all selected models.
    pub full: Basis,
    /// Column the groups come from.
    pub by: Option<String>,
    /// One basis per group.
    pub groups: Vec<NamedBasis>,
    /// One basis per model.
    pub per_model: Vec<NamedBasis>,
    /// Models left out, with reasons.
    pub excluded: Vec<(String, String)>,
}

fn named(db: &Db, name: String, members: &[usize], kernel: [usize; 2]) -> NamedBasis {
    match Basis::fit(&db.moments(members, kernel)) {
        Ok(b) => NamedBasis {
            name,
            models: members.len(),
            basis: Some(b),
            error: None,
        },
        Err(e) => NamedBasis {
            name,
            models: members.len(),
            basis: None,
            error: Some(e.to_string()),
        },
    }
}

/// PCA basis of the l∞-scaled non-sparse filters: whole selection, per group and per model.
/// Needs no pass over the filters (the database stores their moments).
pub fn basis(db: &Db, scope: &Scope, by: Option<&str>) -> Result<BasisReport, DbError> {
    let (sel, kernel) = scope.resolve(db)?;
    let full = Basis::fit(&db.moments(&sel.models, kernel)).map_err(|e| basis_err("all", e))?;
    let mut groups = Vec::new();
    let mut excluded = sel.excluded.clone();
    if let Some(col) = by {
        let (gs, missing) = group_by(db, &sel.models, col)?;
        for m in missing {
            excluded.push((m, format!("no value in column {col}")));
        }
        for (label, members) in gs {
            groups.push(named(db, label, &members, kernel));
        }
    }
    let per_model = sel
        .models
        .iter()
        .map(|&i| named(db, db.models[i].name.clone(), &[i], kernel))
        .collect();
    Ok(BasisReport {
        kernel,
        models: sel
            .models
            .iter()
            .map(|&i| db.models[i].name.clone())
            .collect(),
        full,
        by: by.map(str::to_string),
        groups,
        per_model,
        excluded,
    })
}

/// Options of `convlens shift`.
#[derive(Debug, Clone)]
pub struct ShiftOptions {
    /// Column whose two values define the groups (e.g. `Robust`).
    pub by: String,
    /// Optional column: repeat the comparison within each of its values (e.g. dataset).
    pub within: Option<String>,
    /// Density estimate.
    pub density: Density,
    /// Random half-splits per group for the within-group noise floor.
    pub splits: usize,
    /// Bootstrap resamples over models.
    pub bootstrap: usize,
    /// Seed for splits and resamples.
    pub seed: u64,
    /// Column that distinguishes replicate runs (default `Seed` when present).
    pub replicate_column: Option<String>,
    /// Columns replicates must share (default: `Network` when present, plus `by`/`within`).
    pub match_columns: Vec<String>,
    /// Label permutations per cell for the permutation test (0: none); every distinct
    /// labelling is evaluated when there are at most this many.
    pub permutations: usize,
    /// Evaluate every labelling when there are at most `permutations` (an exact test); false:
    /// always `permutations` random labellings.
    pub exact_permutations: bool,
}

impl Default for ShiftOptions {
    fn default() -> Self {
        ShiftOptions {
            by: "Robust".into(),
            within: None,
            density: Density::Histogram,
            splits: 50,
            bootstrap: 200,
            seed: 0x5EED,
            replicate_column: None,
            match_columns: Vec::new(),
            permutations: super::stats::PERMUTATIONS,
            exact_permutations: true,
        }
    }
}

/// One two-group comparison (all models, or the models of one `--within` value).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `all` or the `--within` value.
    pub subset: String,
    /// The two group labels (values of `by`).
    pub groups: [String; 2],
    /// Models of each group.
    pub models: [Vec<String>; 2],
    /// Replicate pairs used for the seed-noise floor.
    pub replicate_pairs: Vec<[String; 2]>,
    /// Overall, first and decile cells.
    pub cells: Vec<ShiftCell>,
}

/// KL between one robust ↔ normal pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairShift {
    /// The pair.
    pub pair: Pair,
    /// Weighted KL per cell (`overall`, `first`, deciles), `None` where a side is empty.
    pub kl: Vec<Option<f64>>,
}

/// Output of `convlens shift`.
#[derive(Debug, Clone, Serialize)]
pub struct ShiftReport {
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Density estimate.
    pub density: Density,
    /// Column defining the groups.
    pub by: String,
    /// Column the comparison is repeated within.
    pub within: Option<String>,
    /// Basis over all selected models (its ratios are the KL weights).
    pub basis: Basis,
    /// Global coefficient range of all selected filters (sparse ones included).
    pub coef_range: [f64; 2],
    /// Histogram bins.
    pub bins: usize,
    /// Cell labels.
    pub cells: Vec<String>,
    /// The comparisons.
    pub comparisons: Vec<Comparison>,
    /// Per-pair KLs (with `--pairs`).
    pub pairs: Vec<PairShift>,
    /// Discrete distributions per group and cell (`group|cell` → components × bins) of the
    /// first comparison.
    pub distributions: Vec<(String, Vec<Vec<f64>>)>,
    /// Models left out, with reasons.
    pub excluded: Vec<(String, String)>,
    /// Noise-floor settings.
    pub noise: NoiseSettings,
}

/// Noise-floor settings used.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseSettings {
    /// Random half-splits per group.
    pub splits: usize,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Seed.
    pub seed: u64,
    /// Replicate column.
    pub replicate_column: Option<String>,
    /// Columns replicates share.
    pub match_columns: Vec<String>,
    /// Label permutations per cell.
    pub permutations: usize,
    /// Whether permutations swap labels only within robust ↔ normal pairs (`--pairs`).
    pub permutations_within_pairs: bool,
    /// False discovery rate of `significant` (Benjamini–Hochberg).
    pub fdr: f64,
}

/// Everything the streaming passes produce for a selection.
pub struct Streamed {
    /// Selected models.
    pub selection: Selection,
    /// Kernel.
    pub kernel: [usize; 2],
    /// Basis of all selected models.
    pub basis: Basis,
    /// Coefficient range.
    pub range: (f64, f64),
    /// Bins.
    pub bins: Bins,
    /// Fine grid (KDE).
    pub fine: Option<Bins>,
    /// Per-model histograms, aligned with `selection.models`.
    pub hists: Vec<ModelHists>,
}

/// Runs the two streaming passes (range, histograms) over the selected models.
pub fn stream(db: &Db, scope: &Scope, density: Density) -> Result<Streamed, DbError> {
    let (selection, kernel) = scope.resolve(db)?;
    let basis =
        Basis::fit(&db.moments(&selection.models, kernel)).map_err(|e| basis_err("all", e))?;
    let range = coefficient_range(db, &selection.models, kernel, &basis)?
        .ok_or_else(|| DbError::Selection("the selected models hold no filters".into()))?;
    let bins = Bins::new(range.0, range.1, BINS);
    let fine = (density == Density::Kde).then(|| Bins::new(range.0, range.1, KDE_GRID));
    let hists = model_histograms(db, &selection.models, kernel, &basis, &bins, fine.as_ref())?;
    Ok(Streamed {
        selection,
        kernel,
        basis,
        range,
        bins,
        fine,
        hists,
    })
}

fn replicate_pairs(
    db: &Db,
    models: &[usize],
    members: &[usize],
    rep_col: &str,
    match_cols: &[String],
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (x, &i) in members.iter().enumerate() {
        for &j in &members[x + 1..] {
            let (a, b) = (&db.models[models[i]], &db.models[models[j]]);
            let same = match_cols
                .iter()
                .all(|c| a.meta(c).map(canonical) == b.meta(c).map(canonical));
            let differ = a.meta(rep_col).map(canonical) != b.meta(rep_col).map(canonical);
            if same && differ && a.meta(rep_col).is_some() && b.meta(rep_col).is_some() {
                out.push((i, j));
            }
        }
    }
    out
}

/// The distribution shift between the two groups of `opts.by`.
pub fn shift(db: &Db, scope: &Scope, opts: &ShiftOptions) -> Result<ShiftReport, DbError> {
    let st = stream(db, scope, opts.density)?;
    let models = &st.selection.models;
    let mut excluded = st.selection.excluded.clone();
    let cols = db.meta_columns();
    let rep_col = opts
        .replicate_column
        .clone()
        .or_else(|| cols.iter().any(|c| c == "Seed").then(|| "Seed".to_string()));
    let mut match_cols = opts.match_columns.clone();
    if match_cols.is_empty() && cols.iter().any(|c| c == "Network") {
        match_cols.push("Network".into());
    }
    for c in std::iter::once(&opts.by).chain(opts.within.as_ref()) {
        if !match_cols.contains(c) {
            match_cols.push(c.clone());
        }
    }
    let subsets: Vec<(String, Vec<usize>)> = match &opts.within {
        None => vec![("all".to_string(), (0..models.len()).collect())],
        Some(col) => {
            let (gs, missing) = group_by(db, models, col)?;
            for m in missing {
                excluded.push((m, format!("no value in column {col}")));
            }
            gs.into_iter()
                .map(|(label, members)| {
                    let pos = members
                        .iter()
                        .map(|m| models.iter().position(|x| x == m).unwrap_or(0))
                        .collect();
                    (label, pos)
                })
                .collect()
        }
    };
    let weights = st.basis.explained_variance_ratio.clone();
    let links: Vec<(usize, usize)> = st
        .selection
        .pairs
        .iter()
        .filter_map(|p| {
            let ix = |n: &str| models.iter().position(|&m| db.models[m].name == n);
            Some((ix(&p.robust)?, ix(&p.normal)?))
        })
        .collect();
    let mut comparisons = Vec::new();
    let mut distributions = Vec::new();
    for (label, members) in subsets {
        let sub_models: Vec<usize> = members.iter().map(|&p| models[p]).collect();
        let (gs, missing) = group_by(db, &sub_models, &opts.by)?;
        for m in missing {
            excluded.push((m, format!("no value in column {}", opts.by)));
        }
        if gs.len() != 2 {
            let names: Vec<String> = gs
                .iter()
                .map(|(l, m)| format!("{l} ({} models)", m.len()))
                .collect();
            let msg = format!(
                "--by {}: {} has {} group(s) [{}]; a shift compares exactly two",
                opts.by,
                if label == "all" {
                    "the selection".to_string()
                } else {
                    format!("subset {label}")
                },
                gs.len(),
                names.join(", ")
            );
            if opts.within.is_some() {
                excluded.push((label.clone(), msg));
                continue;
            }
            return Err(DbError::Selection(msg));
        }
        let pos = |g: &[usize]| -> Vec<usize> {
            g.iter()
                .map(|m| models.iter().position(|x| x == m).unwrap_or(0))
                .collect()
        };
        let (ga, gb) = (pos(&gs[0].1), pos(&gs[1].1));
        let mut reps = Vec::new();
        if let Some(rc) = &rep_col {
            for g in [&ga, &gb] {
                reps.extend(replicate_pairs(db, models, g, rc, &match_cols));
            }
        }
        let cells = shift_cells(&ShiftInputs {
            hists: &st.hists,
            groups: [&ga, &gb],
            replicates: &reps,
            weights: &weights,
            bins: &st.bins,
            fine: st.fine.as_ref(),
            density: opts.density,
            splits: opts.splits,
            bootstrap: opts.bootstrap,
            seed: opts.seed,
            permutations: opts.permutations,
            links: &links,
            exact: opts.exact_permutations,
        });
        if distributions.is_empty() {
            for (g, members) in [(&gs[0].0, &ga), (&gs[1].0, &gb)] {
                let h = merge(&st.hists, members);
                for (cell, cl) in cell_labels().iter().enumerate() {
                    let d: Option<Vec<Vec<f64>>> = (0..h.comps)
                        .map(|j| {
                            super::shift::distribution(
                                &h,
                                cell,
                                j,
                                &st.bins,
                                st.fine.as_ref(),
                                opts.density,
                            )
                        })
                        .collect();
                    if let Some(d) = d {
                        distributions.push((format!("{g}|{cl}"), d));
                    }
                }
            }
        }
        let name = |g: &[usize]| {
            g.iter()
                .map(|&p| db.models[models[p]].name.clone())
                .collect()
        };
        comparisons.push(Comparison {
            subset: label,
            groups: [gs[0].0.clone(), gs[1].0.clone()],
            models: [name(&ga), name(&gb)],
            replicate_pairs: reps
                .iter()
                .map(|&(x, y)| {
                    [
                        db.models[models[x]].name.clone(),
                        db.models[models[y]].name.clone(),
                    ]
                })
                .collect(),
            cells,
        });
    }
    control_fdr(&mut comparisons);
    if comparisons.is_empty() {
        return Err(DbError::Selection(format!(
            "no subset of --within {} has exactly two groups of --by {}",
            opts.within.clone().unwrap_or_default(),
            opts.by
        )));
    }
    let pairs = st
        .selection
        .pairs
        .iter()
        .filter_map(|p| {
            let ix = |n: &str| models.iter().position(|&m| db.models[m].name == n);
            let (a, b) = (ix(&p.robust)?, ix(&p.normal)?);
            let (ha, hb) = (merge(&st.hists, &[a]), merge(&st.hists, &[b]));
            let kl = (0..super::stream::CELLS)
                .map(|c| {
                    cell_kl(
                        &ha,
                        &hb,
                        c,
                        &weights,
                        &st.bins,
                        st.fine.as_ref(),
                        opts.density,
                    )
                    .map(|v| v.0)
                })
                .collect();
            Some(PairShift {
                pair: p.clone(),
                kl,
            })
        })
        .collect();
    Ok(ShiftReport {
        kernel: st.kernel,
        density: opts.density,
        by: opts.by.clone(),
        within: opts.within.clone(),
        coef_range: [st.range.0, st.range.1],
        bins: st.bins.len(),
        cells: cell_labels(),
        basis: st.basis,
        comparisons,
        pairs,
        distributions,
        excluded,
        noise: NoiseSettings {
            splits: opts.splits,
            bootstrap: opts.bootstrap,
            seed: opts.seed,
            replicate_column: rep_col,
            match_columns: match_cols,
            permutations: opts.permutations,
            permutations_within_pairs: !links.is_empty(),
            fdr: super::stats::FDR,
        },
    })
}

/// Benjamini–Hochberg over two families: the depth cells (first layer and deciles) of every
/// comparison, and the `overall` cells of every comparison.
fn control_fdr(comparisons: &mut [Comparison]) {
    for depth_family in [false, true] {
        let mut at = Vec::new();
        let mut p = Vec::new();
        for (ci, c) in comparisons.iter().enumerate() {
            for (k, cell) in c.cells.iter().enumerate() {
                if (k > 0) == depth_family {
                    at.push((ci, k));
                    p.push(cell.permutation.as_ref().map(|t| t.p_value));
                }
            }
        }
        let q = super::stats::benjamini_hochberg(&p);
        for ((ci, k), q) in at.into_iter().zip(q) {
            let cell = &mut comparisons[ci].cells[k];
            cell.q_value = q;
            cell.significant = q.map(|q| q <= super::stats::FDR);
        }
    }
}

/// Output of `convlens kl-matrix`.
#[derive(Debug, Clone, Serialize)]
pub struct KlMatrix {
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Column the groups come from.
    pub by: String,
    /// Cell compared (`overall`, `first`, a decile).
    pub cell: String,
    /// Group labels.
    pub labels: Vec<String>,
    /// Models per group.
    pub sizes: Vec<usize>,
    /// Symmetric weighted KL, `None` where a side is empty.
    pub kl: Vec<Vec<Option<f64>>>,
    /// Basis used (KL weights).
    pub basis: BasisSummary,
    /// Coefficient range.
    pub coef_range: [f64; 2],
    /// Models left out, with reasons.
    pub excluded: Vec<(String, String)>,
}

/// KL between every pair of groups of `by` (use `model` for one group per model).
pub fn kl_matrix(
    db: &Db,
    scope: &Scope,
    by: &str,
    cell: &str,
    density: Density,
) -> Result<KlMatrix, DbError> {
    let labels_all = cell_labels();
    let ci = labels_all.iter().position(|c| c == cell).ok_or_else(|| {
        DbError::Selection(format!(
            "unknown cell {cell:?}: use one of {}",
            labels_all.join(", ")
        ))
    })?;
    let st = stream(db, scope, density)?;
    let models = &st.selection.models;
    let (gs, missing) = group_by(db, models, by)?;
    let mut excluded = st.selection.excluded.clone();
    for m in missing {
        excluded.push((m, format!("no value in column {by}")));
    }
    let merged: Vec<ModelHists> = gs
        .iter()
        .map(|(_, g)| {
            let pos: Vec<usize> = g
                .iter()
                .map(|m| models.iter().position(|x| x == m).unwrap_or(0))
                .collect();
            merge(&st.hists, &pos)
        })
        .collect();
    let w = &st.basis.explained_variance_ratio;
    let n = gs.len();
    let mut kl = vec![vec![None; n]; n];
    for i in 0..n {
        for j in i..n {
            let v = if i == j {
                (merged[i].n[ci] > 0).then_some(0.0)
            } else {
                cell_kl(
                    &merged[i],
                    &merged[j],
                    ci,
                    w,
                    &st.bins,
                    st.fine.as_ref(),
                    density,
                )
                .map(|v| v.0)
            };
            kl[i][j] = v;
            kl[j][i] = v;
        }
    }
    Ok(KlMatrix {
        kernel: st.kernel,
        by: by.to_string(),
        cell: cell.to_string(),
        labels: gs.iter().map(|(l, _)| l.clone()).collect(),
        sizes: gs.iter().map(|(_, g)| g.len()).collect(),
        kl,
        basis: BasisSummary::from(&st.basis),
        coef_range: [st.range.0, st.range.1],
        excluded,
    })
}

/// One model's aggregate in one depth group.
#[derive(Debug, Clone, Serialize)]
pub struct ModelAggregate {
    /// Model.
    pub model: String,
    /// Its value of the grouping column.
    pub group: Option<String>,
    /// Depth group label.
    pub depth_group: String,
    /// Aggregates.
    #[serde(flatten)]
    pub agg: DepthAggregate,
}

/// A permutation test of one metric in one depth group between the two groups of `by`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricTest {
    /// `all` or the value of the `within` column.
    pub subset: String,
    /// Depth group label.
    pub depth_group: String,
    /// `sparsity`, `variance_entropy` or `orthogonality`.
    pub metric: String,
    /// Models of each group with a value.
    pub n: [usize; 2],
    /// Mean of the per-model values of each group.
    pub mean: [Option<f64>; 2],
    /// `mean[0] − mean[1]`.
    pub difference: Option<f64>,
    /// Permutation test of `|difference|` over models (within pairs when given).
    pub permutation: Option<Permutation>,
    /// Benjamini–Hochberg q-value across the depth groups (and subsets) of this metric.
    pub q_value: Option<f64>,
    /// `q_value ≤ 0.05`.
    pub significant: Option<bool>,
}

/// Output of `convlens aggregate`.
#[derive(Debug, Clone, Serialize)]
pub struct AggregateReport {
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Grouping column.
    pub by: Option<String>,
    /// Per model and depth group.
    pub rows: Vec<ModelAggregate>,
    /// Models left out, with reasons.
    pub excluded: Vec<(String, String)>,
    /// The two groups compared by `tests` (when `by` has exactly two values).
    pub groups: Option<[String; 2]>,
    /// Group differences per depth group and metric, with permutation p- and q-values.
    pub tests: Vec<MetricTest>,
}

/// Options of [`aggregate_with`].
#[derive(Debug, Clone)]
pub struct AggregateOptions {
    /// Label permutations per test (0: no tests).
    pub permutations: usize,
    /// Seed of the permutations.
    pub seed: u64,
    /// Optional column: test within each of its values (e.g. `Training-Dataset`).
    pub within: Option<String>,
}

impl Default for AggregateOptions {
    fn default() -> Self {
        AggregateOptions {
            permutations: super::stats::PERMUTATIONS,
            seed: 0x5EED,
            within: None,
        }
    }
}

/// Per-model sparsity / entropy / orthogonality by depth group (the paper's box plots).
pub fn aggregate(db: &Db, scope: &Scope, by: Option<&str>) -> Result<AggregateReport, DbError> {
    aggregate_with(db, scope, by, &AggregateOptions::default())
}

/// [`aggregate`] with the permutation tests' settings.
pub fn aggregate_with(
    db: &Db,
    scope: &Scope,
    by: Option<&str>,
    opts: &AggregateOptions,
) -> Result<AggregateReport, DbError> {
    let (sel, kernel) = scope.resolve(db)?;
    let mut two_groups = None;
    if let Some(col) = by {
        // validate the column
        let (gs, _) = group_by(db, &sel.models, col)?;
        if gs.len() == 2 {
            two_groups = Some([gs[0].0.clone(), gs[1].0.clone()]);
        }
    }
    let mut rows = Vec::new();
    for &i in &sel.models {
        let m = &db.models[i];
        for bin in ALL_BINS {
            let label = bin.label();
            let mut acc = AggregateAcc::default();
            let mut any = false;
            for l in m
                .layers
                .iter()
                .filter(|l| l.kernel == kernel && l.depth_group.as_deref() == Some(label.as_str()))
            {
                any = true;
                acc.add(
                    l.shard_end as usize - l.shard_start as usize,
                    l.sparse_filters,
                    l.nonsparse_filters,
                    l.variance_entropy,
                    l.orthogonality,
                    l.out_channels,
                );
            }
            if any {
                rows.push(ModelAggregate {
                    model: m.name.clone(),
                    group: by.and_then(|c| m.meta(c)).map(canonical),
                    depth_group: label,
                    agg: acc.finish(),
                });
            }
        }
    }
    let subset_of = |model: &str| -> Option<String> {
        match &opts.within {
            None => Some("all".to_string()),
            Some(col) => db
                .model(model)
                .and_then(|i| db.models[i].meta(col))
                .map(canonical),
        }
    };
    if let Some(col) = &opts.within {
        // validate the column
        group_by(db, &sel.models, col)?;
    }
    let tests = match &two_groups {
        Some(g) => metric_tests(&rows, g, &sel.pairs, opts, &subset_of),
        None => Vec::new(),
    };
    Ok(AggregateReport {
        kernel,
        by: by.map(str::to_string),
        rows,
        excluded: sel.excluded,
        groups: two_groups,
        tests,
    })
}

/// The metrics of the box plots, by name.
pub const TESTED_METRICS: [&str; 3] = ["sparsity", "variance_entropy", "orthogonality"];

fn metric_value(a: &DepthAggregate, metric: usize) -> Option<f64> {
    match metric {
        0 => Some(a.sparsity),
        1 => a.variance_entropy,
        _ => Some(a.orthogonality),
    }
    .filter(|v| v.is_finite())
}

fn metric_tests(
    rows: &[ModelAggregate],
    groups: &[String; 2],
    pairs: &[Pair],
    opts: &AggregateOptions,
    subset_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<MetricTest> {
    let mut subsets: Vec<String> = rows.iter().filter_map(|r| subset_of(&r.model)).collect();
    subsets.sort();
    subsets.dedup();
    let mut tests = Vec::new();
    for (mi, metric) in TESTED_METRICS.iter().enumerate() {
        let first = tests.len();
        for (si, subset) in subsets.iter().enumerate() {
            for (bi, bin) in ALL_BINS.iter().enumerate() {
                let label = bin.label();
                let mut units: Vec<(&str, bool, f64)> = Vec::new();
                for r in rows.iter().filter(|r| {
                    r.depth_group == label && subset_of(&r.model).as_ref() == Some(subset)
                }) {
                    let Some(v) = metric_value(&r.agg, mi) else {
                        continue;
                    };
                    match r.group.as_deref() {
                        Some(g) if g == groups[0] => units.push((&r.model, true, v)),
                        Some(g) if g == groups[1] => units.push((&r.model, false, v)),
                        _ => {}
                    }
                }
                let labels: Vec<bool> = units.iter().map(|u| u.1).collect();
                let vals: Vec<f64> = units.iter().map(|u| u.2).collect();
                let mean_of = |l: &[bool], side: bool| -> Option<f64> {
                    let v: Vec<f64> = vals
                        .iter()
                        .zip(l)
                        .filter(|(_, &a)| a == side)
                        .map(|(v, _)| *v)
                        .collect();
                    (!v.is_empty()).then(|| super::divergence::np_sum(&v) / v.len() as f64)
                };
                let n = [
                    labels.iter().filter(|&&a| a).count(),
                    labels.iter().filter(|&&a| !a).count(),
                ];
                let mean = [mean_of(&labels, true), mean_of(&labels, false)];
                let difference = match mean {
                    [Some(a), Some(b)] => Some(a - b),
                    _ => None,
                };
                let ix = |name: &str| units.iter().position(|u| u.0 == name);
                let links: Vec<(usize, usize)> = pairs
                    .iter()
                    .filter_map(|p| Some((ix(&p.robust)?, ix(&p.normal)?)))
                    .collect();
                let design = if pairs.is_empty() {
                    Design::unrestricted(labels.clone())
                } else {
                    Design::linked(labels.clone(), &links)
                };
                let seed = opts.seed
                    ^ ((mi * 16 + bi) as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)
                    ^ (si as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let permutation = difference.and_then(|_| {
                    permutation_test(&design, opts.permutations, seed, true, |l| {
                        Some((mean_of(l, true)? - mean_of(l, false)?).abs())
                    })
                });
                tests.push(MetricTest {
                    subset: subset.clone(),
                    depth_group: label,
                    metric: metric.to_string(),
                    n,
                    mean,
                    difference,
                    permutation,
                    q_value: None,
                    significant: None,
                });
            }
        }
        let p: Vec<Option<f64>> = tests[first..]
            .iter()
            .map(|t| t.permutation.as_ref().map(|x| x.p_value))
            .collect();
        for (t, q) in tests[first..].iter_mut().zip(benjamini_hochberg(&p)) {
            t.q_value = q;
            t.significant = q.map(|q| q <= super::stats::FDR);
        }
    }
    tests
}
