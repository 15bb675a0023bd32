//! Figure data: what each figure of the report shows, computed from the analysis outputs.
//! Kept separate from drawing so that tests can check the numbers behind every picture.

use crate::compare::basis::Basis;
use crate::compare::study::{AggregateReport, BasisReport, ShiftReport};
use crate::db::record::{LayerRecord, ModelRecord};
use crate::db::shard::read_filters;
use crate::db::{Db, DbError};
use convlens_show::BasisPanel;

/// Depth-group labels of the divergence and box figures (no `overall`).
pub fn depth_labels(shift: &ShiftReport) -> Vec<String> {
    shift.cells.iter().skip(1).cloned().collect()
}

/// Bar series of the divergence-by-depth figure: one per comparison (subset), values = the
/// weighted KL of each depth group; and the noise floor per depth group (replicate KL when the
/// zoo has replicates, else the within-group KL).
pub type DivergenceBars = (Vec<(String, Vec<Option<f64>>)>, Vec<Option<f64>>);

/// Data of the divergence-by-depth figure.
pub fn divergence_bars(shift: &ShiftReport) -> DivergenceBars {
    let series = shift
        .comparisons
        .iter()
        .map(|c| {
            let name = if c.subset == "all" {
                format!("{b}={} vs {b}={}", c.groups[0], c.groups[1], b = shift.by)
            } else {
                c.subset.clone()
            };
            (name, c.cells.iter().skip(1).map(|x| x.kl).collect())
        })
        .collect();
    let floor = shift.comparisons[0]
        .cells
        .iter()
        .skip(1)
        .map(|x| x.replicates.mean.or(x.within_group.mean))
        .collect();
    (series, floor)
}

/// Significance marks of the divergence-by-depth figure: per comparison and depth group,
/// whether the permutation test's Benjamini–Hochberg q-value is at most 0.05.
pub fn divergence_marks(shift: &ShiftReport) -> Vec<Vec<bool>> {
    shift
        .comparisons
        .iter()
        .map(|c| {
            c.cells
                .iter()
                .skip(1)
                .map(|x| x.significant == Some(true))
                .collect()
        })
        .collect()
}

/// Whether the group difference of box metric `m` (index into [`BOX_METRICS`]) in a subset
/// (`all` or a dataset) and depth group is significant (Benjamini–Hochberg q ≤ 0.05 of the permutation test over models).
pub fn box_significant(agg: &AggregateReport, m: usize, subset: &str, depth: &str) -> bool {
    let name = crate::compare::study::TESTED_METRICS[m.min(2)];
    agg.tests.iter().any(|t| {
        t.metric == name
            && t.subset == subset
            && t.depth_group == depth
            && t.significant == Some(true)
    })
}

/// A fingerprint of each database model (from its stored filter moments), or why not.
pub fn fingerprints(
    db: &Db,
    fm: &crate::fingerprint::FingerprintModel,
) -> Vec<(String, Result<crate::fingerprint::Fingerprint, String>)> {
    db.models
        .iter()
        .map(|m| {
            let layers = m
                .layers
                .iter()
                .filter(|l| l.kernel == [3, 3] && !l.transposed)
                .count();
            let moments = m
                .kernel([3, 3])
                .map(|k| k.moments.clone())
                .unwrap_or_else(|| crate::numeric::Moments::new(9));
            let r = crate::fingerprint::fingerprint_moments(
                fm,
                std::path::Path::new(&m.file),
                &m.name,
                &moments,
                layers,
            )
            .map_err(|e| e.to_string());
            (m.name.clone(), r)
        })
        .collect()
}

/// Reliability-diagram series of a fingerprint model's validation: the two cross-validations on
/// the published table and each transfer zoo (non-empty bins only).
pub fn reliability_series(
    fm: &crate::fingerprint::FingerprintModel,
) -> Vec<convlens_show::ReliabilitySeries> {
    use crate::fingerprint::{reliability, ReliabilityBin, RELIABILITY_BINS};
    let pts = |bins: &[ReliabilityBin]| -> Vec<(f64, f64, usize)> {
        bins.iter()
            .filter_map(|b| Some((b.mean_predicted?, b.observed?, b.n)))
            .collect()
    };
    let v = &fm.validation;
    let mut out = vec![
        convlens_show::ReliabilitySeries {
            name: format!("leave-one-paper-out ({} models)", v.leave_one_paper_out.n),
            points: pts(&v.leave_one_paper_out.reliability),
        },
        convlens_show::ReliabilitySeries {
            name: format!(
                "leave-one-architecture-out ({} models)",
                v.leave_one_architecture_out.n
            ),
            points: pts(&v.leave_one_architecture_out.reliability),
        },
    ];
    for t in &v.transfer {
        let (p, y): (Vec<f64>, Vec<bool>) = t
            .models
            .iter()
            .filter_map(|m| Some((m.probability?, m.robust)))
            .unzip();
        if !p.is_empty() {
            out.push(convlens_show::ReliabilitySeries {
                name: format!("transfer: {} ({} models)", t.zoo, p.len()),
                points: pts(&reliability(&p, &y, RELIABILITY_BINS)),
            });
        }
    }
    out
}

/// Ridge-plot data: per group, per component the discrete distribution of the overall cell.
pub fn ridge_groups(shift: &ShiftReport) -> Vec<(String, Vec<Vec<f64>>)> {
    shift
        .distributions
        .iter()
        .filter_map(|(k, d)| {
            let (g, cell) = k.split_once('|')?;
            (cell == "overall").then(|| (format!("{}={g}", shift.by), d.clone()))
        })
        .collect()
}

/// Basis panels: all filters, then one per group.
pub fn basis_panels(b: &BasisReport) -> Vec<BasisPanel> {
    let panel = |name: String, basis: &Basis| BasisPanel {
        name,
        components: basis.components.clone(),
        ratios: basis.explained_variance_ratio.clone(),
        kh: b.kernel[0],
        kw: b.kernel[1],
    };
    let mut v = vec![panel("all".into(), &b.full)];
    for g in &b.groups {
        if let Some(basis) = &g.basis {
            v.push(panel(
                format!("{}={}", b.by.as_deref().unwrap_or(""), g.name),
                basis,
            ));
        }
    }
    v
}

/// Cumulative explained-variance curves: all, then per group.
pub fn cumulative_curves(b: &BasisReport) -> Vec<(String, Vec<f64>)> {
    let mut v = vec![("all".to_string(), b.full.cumulative_ratio())];
    for g in &b.groups {
        if let Some(basis) = &g.basis {
            v.push((
                format!("{}={}", b.by.as_deref().unwrap_or(""), g.name),
                basis.cumulative_ratio(),
            ));
        }
    }
    v
}

/// The metrics of the box-plot figure, in row order.
pub const BOX_METRICS: [&str; 3] = ["sparsity", "variance entropy", "orthogonality"];

/// Sample of one box: metric `m` (index into [`BOX_METRICS`]) of the models whose grouping
/// value is `group` and whose `column_key` meta value is `column` (any when `None`), in one
/// depth group.
pub fn box_values(
    db: &Db,
    agg: &AggregateReport,
    m: usize,
    column_key: Option<&str>,
    column: &str,
    depth: &str,
    group: &str,
) -> Vec<f64> {
    agg.rows
        .iter()
        .filter(|r| r.depth_group == depth && r.group.as_deref() == Some(group))
        .filter(|r| match column_key {
            None => true,
            Some(key) => db
                .model(&r.model)
                .and_then(|i| db.models[i].meta(key))
                .is_some_and(|v| v == column),
        })
        .map(|r| match m {
            0 => r.agg.sparsity,
            1 => r.agg.variance_entropy.unwrap_or(f64::NAN),
            _ => r.agg.orthogonality,
        })
        .collect()
}

/// The stored layers of a model with this kernel size that are forward convolutions, in
/// depth order.
pub fn conv_layers(m: &ModelRecord, kernel: [usize; 2]) -> Vec<&LayerRecord> {
    let mut v: Vec<&LayerRecord> = m
        .layers
        .iter()
        .filter(|l| l.kernel == kernel && !l.transposed)
        .collect();
    v.sort_by_key(|l| (l.depth, l.shard_start));
    v
}

/// The weights of one stored layer, OIHW, with their shape.
pub fn layer_weights(
    db: &Db,
    m: &ModelRecord,
    l: &LayerRecord,
) -> Result<(Vec<f32>, [usize; 4]), DbError> {
    let shard = m
        .kernel(l.kernel)
        .ok_or_else(|| DbError::Selection(format!("{}: no {:?} shard", m.name, l.kernel)))?;
    let path = db.dir.join(&shard.shard);
    let w = read_filters(
        &path,
        shard.n_filters,
        l.kernel[0],
        l.kernel[1],
        l.shard_start,
        (l.shard_end - l.shard_start) as usize,
    )
    .map_err(|e| DbError::Io(path.clone(), e))?;
    Ok((w, [l.out_channels, l.in_channels, l.kernel[0], l.kernel[1]]))
}

/// One filter of a strip: (layer name, kh×kw weights, kh, kw).
pub type StripFilter = (String, Vec<f32>, usize, usize);

/// First filter (first output, first input channel) of every conv layer of a model.
pub fn first_filters(
    db: &Db,
    m: &ModelRecord,
    kernel: [usize; 2],
) -> Result<Vec<StripFilter>, DbError> {
    let shard = match m.kernel(kernel) {
        Some(s) => s,
        None => return Ok(Vec::new()),
    };
    let path = db.dir.join(&shard.shard);
    conv_layers(m, kernel)
        .into_iter()
        .map(|l| {
            let f = read_filters(
                &path,
                shard.n_filters,
                kernel[0],
                kernel[1],
                l.shard_start,
                1,
            )
            .map_err(|e| DbError::Io(path.clone(), e))?;
            Ok((l.name.clone(), f, kernel[0], kernel[1]))
        })
        .collect()
}
