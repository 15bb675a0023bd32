//! The analyses of a filter database: basis, shift, KL matrix and per-model aggregates.

use super::basis::{Basis, BasisError};
use super::divergence::{Bins, BINS};
use super::shift::{
    cell_kl, merge, shift_cells, BasisSummary, Density, ShiftCell, ShiftInputs, KDE_GRID,
};
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
        },
    })
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
}

/// Per-model sparsity / entropy / orthogonality by depth group (the paper's box plots).
pub fn aggregate(db: &Db, scope: &Scope, by: Option<&str>) -> Result<AggregateReport, DbError> {
    let (sel, kernel) = scope.resolve(db)?;
    if let Some(col) = by {
        // validate the column
        group_by(db, &sel.models, col)?;
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
    Ok(AggregateReport {
        kernel,
        by: by.map(str::to_string),
        rows,
        excluded: sel.excluded,
    })
}
