//! Every report as a table of typed columns: the CSV / Parquet files of the CLI and the
//! DataFrames of the Python package are made from these, so they always have the same columns.

use crate::compare::study::{AggregateReport, BasisReport, KlMatrix, ShiftReport};
use crate::quality::{InspectReport, ModelReport};
use crate::stem::StemReport;
use convlens_table::{Column, Table, TableError};
use std::collections::BTreeMap;

fn s(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

fn as_i64(v: usize) -> Option<i64> {
    i64::try_from(v).ok()
}

fn list(v: &Option<Vec<i64>>) -> Option<String> {
    v.as_ref().map(|v| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// A column builder: named columns filled row by row.
struct Rows {
    cols: Vec<(&'static str, Column)>,
}

impl Rows {
    fn new(spec: &[(&'static str, char)]) -> Self {
        Rows {
            cols: spec
                .iter()
                .map(|(n, t)| {
                    (
                        *n,
                        match t {
                            's' => Column::Str(Vec::new()),
                            'i' => Column::I64(Vec::new()),
                            'b' => Column::Bool(Vec::new()),
                            _ => Column::F64(Vec::new()),
                        },
                    )
                })
                .collect(),
        }
    }

    fn push(&mut self, values: Vec<Cell>) {
        for ((_, c), v) in self.cols.iter_mut().zip(values) {
            match (c, v) {
                (Column::Str(c), Cell::S(v)) => c.push(v),
                (Column::I64(c), Cell::I(v)) => c.push(v),
                (Column::F64(c), Cell::F(v)) => c.push(v),
                (Column::Bool(c), Cell::B(v)) => c.push(v),
                (c, v) => unreachable!("column type {} given {v:?}", c.type_name()),
            }
        }
    }

    fn finish(self) -> Result<Table, TableError> {
        let mut t = Table::new();
        for (n, c) in self.cols {
            t.push_column(n, c)?;
        }
        Ok(t)
    }
}

#[derive(Debug)]
enum Cell {
    S(Option<String>),
    I(Option<i64>),
    F(Option<f64>),
    B(Option<bool>),
}

fn f(v: f64) -> Cell {
    Cell::F(v.is_finite().then_some(v))
}

fn i(v: usize) -> Cell {
    Cell::I(as_i64(v))
}

/// `convlens inspect`: one row per conv layer of every report.
pub fn inspect_layers(reports: &[&InspectReport]) -> Result<Table, TableError> {
    let mut t = Rows::new(&[
        ("file", 's'),
        ("format", 's'),
        ("layer", 's'),
        ("weight_name", 's'),
        ("op", 's'),
        ("transposed", 'b'),
        ("shape", 's'),
        ("out_channels", 'i'),
        ("in_channels", 'i'),
        ("groups", 'i'),
        ("kh", 'i'),
        ("kw", 'i'),
        ("filters", 'i'),
        ("strides", 's'),
        ("pads", 's'),
        ("dilations", 's'),
        ("depth", 'i'),
        ("conv_depth", 'i'),
        ("conv_depth_norm", 'f'),
    ]);
    for r in reports {
        for l in &r.layers {
            t.push(vec![
                Cell::S(s(r.file.clone())),
                Cell::S(s(r.format.to_string())),
                Cell::S(s(l.name.clone())),
                Cell::S(s(l.weight_name.clone())),
                Cell::S(s(l.op.to_string())),
                Cell::B(Some(l.transposed)),
                Cell::S(s(format!(
                    "{} {} {} {}",
                    l.shape[0], l.shape[1], l.shape[2], l.shape[3]
                ))),
                i(l.out_channels),
                i(l.in_per_group),
                Cell::I(l.groups.and_then(as_i64)),
                i(l.kh),
                i(l.kw),
                i(l.n_filters),
                Cell::S(list(&l.strides)),
                Cell::S(list(&l.pads)),
                Cell::S(list(&l.dilations)),
                i(l.depth),
                Cell::I(l.conv_depth.and_then(as_i64)),
                Cell::F(l.conv_depth_norm),
            ]);
        }
    }
    t.finish()
}

/// `convlens quality`: one row per analysed layer of every report.
pub fn quality_layers(reports: &[&ModelReport]) -> Result<Table, TableError> {
    let mut t = Rows::new(&[
        ("file", 's'),
        ("format", 's'),
        ("layer", 's'),
        ("weight_name", 's'),
        ("op", 's'),
        ("transposed", 'b'),
        ("kh", 'i'),
        ("kw", 'i'),
        ("out_channels", 'i'),
        ("in_channels", 'i'),
        ("groups", 'i'),
        ("filters", 'i'),
        ("depth", 'i'),
        ("conv_depth", 'i'),
        ("conv_depth_norm", 'f'),
        ("depth_group", 's'),
        ("layer_norm", 'f'),
        ("sparsity", 'f'),
        ("sparse_filters", 'i'),
        ("nonsparse_filters", 'i'),
        ("variance_entropy", 'f'),
        ("orthogonality", 'f'),
        ("orthogonality_per_group", 'f'),
        ("l1_norm", 'f'),
        ("l2_norm", 'f'),
        ("mean_filter_l2", 'f'),
        ("tcq_sparsity", 'f'),
        ("tcq_variance_entropy", 'f'),
        ("tcq_variance_entropy_norm", 'f'),
        ("tcq_variance_entropy_clean", 'f'),
        ("tcq_variance_entropy_clean_norm", 'f'),
        ("tcq_orthogonality", 'f'),
    ]);
    for r in reports {
        for l in &r.layers {
            t.push(vec![
                Cell::S(s(r.file.clone())),
                Cell::S(s(r.format.to_string())),
                Cell::S(s(l.name.clone())),
                Cell::S(s(l.weight_name.clone())),
                Cell::S(s(l.op.to_string())),
                Cell::B(Some(l.transposed)),
                i(l.kernel[0]),
                i(l.kernel[1]),
                i(l.out_channels),
                i(l.in_channels),
                Cell::I(l.groups.and_then(as_i64)),
                i(l.filters),
                i(l.depth),
                Cell::I(l.conv_depth.and_then(as_i64)),
                Cell::F(l.conv_depth_norm),
                Cell::S(l.depth_group.map(|b| b.label())),
                f(l.layer_norm),
                f(l.sparsity),
                i(l.sparse_filters),
                i(l.nonsparse_filters),
                f(l.variance_entropy),
                f(l.orthogonality),
                Cell::F(l.orthogonality_per_group.filter(|v| v.is_finite())),
                f(l.l1_norm),
                f(l.l2_norm),
                f(l.mean_filter_l2),
                f(l.tcq.sparsity),
                f(l.tcq.variance_entropy),
                f(l.tcq.variance_entropy_norm),
                f(l.tcq.variance_entropy_clean),
                f(l.tcq.variance_entropy_clean_norm),
                f(l.tcq.orthogonality),
            ]);
        }
    }
    t.finish()
}

/// `convlens quality --groups`: one row per (model, kernel, depth group).
pub fn quality_groups(reports: &[&ModelReport]) -> Result<Table, TableError> {
    let mut t = Rows::new(&[
        ("file", 's'),
        ("format", 's'),
        ("kh", 'i'),
        ("kw", 'i'),
        ("depth_group", 's'),
        ("layers", 'i'),
        ("filters", 'i'),
        ("sparse_filters", 'i'),
        ("nonsparse_filters", 'i'),
        ("sparsity", 'f'),
        ("variance_entropy", 'f'),
        ("orthogonality", 'f'),
    ]);
    for r in reports {
        for g in &r.depth_groups {
            t.push(vec![
                Cell::S(s(r.file.clone())),
                Cell::S(s(r.format.to_string())),
                i(g.kernel[0]),
                i(g.kernel[1]),
                Cell::S(s(g.group.label())),
                i(g.agg.layers),
                i(g.agg.filters),
                i(g.agg.sparse_filters),
                i(g.agg.nonsparse_filters),
                f(g.agg.sparsity),
                Cell::F(g.agg.variance_entropy.filter(|v| v.is_finite())),
                f(g.agg.orthogonality),
            ]);
        }
    }
    t.finish()
}

/// Tables of `convlens basis`.
pub fn basis(r: &BasisReport) -> Result<Table, TableError> {
    let mut set = Vec::new();
    let mut comp = Vec::new();
    let mut var = Vec::new();
    let mut ratio = Vec::new();
    let mut cum = Vec::new();
    let k = r.full.dim();
    let mut loadings: Vec<Vec<Option<f64>>> = vec![Vec::new(); k];
    let mut means: Vec<Vec<Option<f64>>> = vec![Vec::new(); k];
    let mut push = |name: &str, b: &crate::compare::basis::Basis| {
        let c = b.cumulative_ratio();
        for (j, cj) in c.iter().enumerate() {
            set.push(s(name));
            comp.push(Some(j as i64));
            var.push(Some(b.explained_variance[j]));
            ratio.push(Some(b.explained_variance_ratio[j]));
            cum.push(Some(*cj));
            for (t, (l, m)) in loadings.iter_mut().zip(means.iter_mut()).enumerate() {
                l.push(Some(b.components[j][t]));
                m.push(Some(b.mean[t]));
            }
        }
    };
    push("all", &r.full);
    for g in &r.groups {
        if let Some(b) = &g.basis {
            push(&format!("{}={}", r.by.as_deref().unwrap_or(""), g.name), b);
        }
    }
    for g in &r.per_model {
        if let Some(b) = &g.basis {
            push(&format!("model={}", g.name), b);
        }
    }
    let mut t = Table::new();
    t.push_column("basis", Column::Str(set))?;
    t.push_column("component", Column::I64(comp))?;
    t.push_column("explained_variance", Column::F64(var))?;
    t.push_column("explained_variance_ratio", Column::F64(ratio))?;
    t.push_column("cumulative_ratio", Column::F64(cum))?;
    for (i, l) in loadings.into_iter().enumerate() {
        t.push_column(&format!("v{i}"), Column::F64(l))?;
    }
    for (i, m) in means.into_iter().enumerate() {
        t.push_column(&format!("mean{i}"), Column::F64(m))?;
    }
    Ok(t)
}

/// Tables of `convlens shift`: cells, pairs.
pub fn shift(r: &ShiftReport) -> Result<(Table, Table), TableError> {
    let comps = r.basis.components.len();
    let mut cols: Vec<(String, Column)> = Vec::new();
    let mut subset = Vec::new();
    let mut cell = Vec::new();
    let mut ga = Vec::new();
    let mut gb = Vec::new();
    let mut na = Vec::new();
    let mut nb = Vec::new();
    let mut kl = Vec::new();
    let mut per: Vec<Vec<Option<f64>>> = vec![Vec::new(); comps];
    let mut wm = Vec::new();
    let mut wp = Vec::new();
    let mut rm = Vec::new();
    let mut rmax = Vec::new();
    let mut blo = Vec::new();
    let mut bhi = Vec::new();
    let mut status = Vec::new();
    let mut sm = Vec::new();
    let mut pv = Vec::new();
    let mut qv = Vec::new();
    let mut sig = Vec::new();
    let mut eff = Vec::new();
    let mut ratio = Vec::new();
    let mut nperm = Vec::new();
    for c in &r.comparisons {
        for x in &c.cells {
            subset.push(s(c.subset.clone()));
            cell.push(s(x.bin.clone()));
            ga.push(s(c.groups[0].clone()));
            gb.push(s(c.groups[1].clone()));
            na.push(Some(x.n[0] as i64));
            nb.push(Some(x.n[1] as i64));
            kl.push(x.kl);
            for (j, p) in per.iter_mut().enumerate() {
                p.push(x.kl_per_component.as_ref().map(|v| v[j]));
            }
            wm.push(x.within_group.mean);
            wp.push(x.within_group.p95);
            rm.push(x.replicates.mean);
            rmax.push(x.replicates.max);
            blo.push(x.bootstrap_ci.map(|c| c[0]));
            bhi.push(x.bootstrap_ci.map(|c| c[1]));
            status.push(s(x.status.clone()));
            sm.push(x.kl_smoothed);
            pv.push(x.permutation.as_ref().map(|p| p.p_value));
            qv.push(x.q_value);
            sig.push(x.significant);
            eff.push(x.permutation.as_ref().and_then(|p| p.effect_size));
            ratio.push(x.kl_over_floor);
            nperm.push(x.permutation.as_ref().map(|p| p.permutations as i64));
        }
    }
    cols.push(("subset".into(), Column::Str(subset)));
    cols.push(("cell".into(), Column::Str(cell)));
    cols.push(("group_a".into(), Column::Str(ga)));
    cols.push(("group_b".into(), Column::Str(gb)));
    cols.push(("n_a".into(), Column::I64(na)));
    cols.push(("n_b".into(), Column::I64(nb)));
    cols.push(("kl".into(), Column::F64(kl)));
    for (j, p) in per.into_iter().enumerate() {
        cols.push((format!("kl_c{j}"), Column::F64(p)));
    }
    cols.push(("within_group_mean".into(), Column::F64(wm)));
    cols.push(("within_group_p95".into(), Column::F64(wp)));
    cols.push(("replicates_mean".into(), Column::F64(rm)));
    cols.push(("replicates_max".into(), Column::F64(rmax)));
    cols.push(("bootstrap_lo".into(), Column::F64(blo)));
    cols.push(("bootstrap_hi".into(), Column::F64(bhi)));
    cols.push(("status".into(), Column::Str(status)));
    cols.push(("kl_smoothed".into(), Column::F64(sm)));
    cols.push(("p_value".into(), Column::F64(pv)));
    cols.push(("q_value".into(), Column::F64(qv)));
    cols.push(("significant".into(), Column::Bool(sig)));
    cols.push(("effect_size".into(), Column::F64(eff)));
    cols.push(("kl_over_floor".into(), Column::F64(ratio)));
    cols.push(("permutations".into(), Column::I64(nperm)));
    let mut t = Table::new();
    for (n, c) in cols {
        t.push_column(&n, c)?;
    }
    let mut robust = Vec::new();
    let mut normal = Vec::new();
    let mut cellp = Vec::new();
    let mut klp = Vec::new();
    for p in &r.pairs {
        for (c, v) in r.cells.iter().zip(&p.kl) {
            robust.push(s(p.pair.robust.clone()));
            normal.push(s(p.pair.normal.clone()));
            cellp.push(s(c.clone()));
            klp.push(*v);
        }
    }
    let mut tp = Table::new();
    tp.push_column("robust", Column::Str(robust))?;
    tp.push_column("normal", Column::Str(normal))?;
    tp.push_column("cell", Column::Str(cellp))?;
    tp.push_column("kl", Column::F64(klp))?;
    Ok((t, tp))
}

/// Long table of `convlens kl-matrix`.
pub fn kl_matrix(r: &KlMatrix) -> Result<Table, TableError> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut v = Vec::new();
    for (i, la) in r.labels.iter().enumerate() {
        for (j, lb) in r.labels.iter().enumerate() {
            a.push(s(la.clone()));
            b.push(s(lb.clone()));
            v.push(r.kl[i][j]);
        }
    }
    let mut t = Table::new();
    t.push_column("a", Column::Str(a))?;
    t.push_column("b", Column::Str(b))?;
    t.push_column("kl", Column::F64(v))?;
    Ok(t)
}

/// Table of `convlens aggregate`.
pub fn aggregate(r: &AggregateReport) -> Result<Table, TableError> {
    let mut t = Table::new();
    let rows = &r.rows;
    t.push_column(
        "model",
        Column::Str(rows.iter().map(|x| s(x.model.clone())).collect()),
    )?;
    t.push_column(
        r.by.as_deref().unwrap_or("group"),
        Column::Str(rows.iter().map(|x| x.group.clone()).collect()),
    )?;
    t.push_column(
        "depth_group",
        Column::Str(rows.iter().map(|x| s(x.depth_group.clone())).collect()),
    )?;
    t.push_column(
        "layers",
        Column::I64(rows.iter().map(|x| Some(x.agg.layers as i64)).collect()),
    )?;
    t.push_column(
        "filters",
        Column::I64(rows.iter().map(|x| Some(x.agg.filters as i64)).collect()),
    )?;
    t.push_column(
        "sparse_filters",
        Column::I64(
            rows.iter()
                .map(|x| Some(x.agg.sparse_filters as i64))
                .collect(),
        ),
    )?;
    t.push_column(
        "sparsity",
        Column::F64(rows.iter().map(|x| Some(x.agg.sparsity)).collect()),
    )?;
    t.push_column(
        "variance_entropy",
        Column::F64(rows.iter().map(|x| x.agg.variance_entropy).collect()),
    )?;
    t.push_column(
        "orthogonality",
        Column::F64(rows.iter().map(|x| Some(x.agg.orthogonality)).collect()),
    )?;
    Ok(t)
}

/// Table of the group tests of `convlens aggregate`.
pub fn aggregate_tests(r: &AggregateReport) -> Result<Table, TableError> {
    let t_ = &r.tests;
    let g = r.groups.clone().unwrap_or_default();
    let mut t = Table::new();
    t.push_column(
        "subset",
        Column::Str(t_.iter().map(|x| s(x.subset.clone())).collect()),
    )?;
    t.push_column(
        "depth_group",
        Column::Str(t_.iter().map(|x| s(x.depth_group.clone())).collect()),
    )?;
    t.push_column(
        "metric",
        Column::Str(t_.iter().map(|x| s(x.metric.clone())).collect()),
    )?;
    t.push_column(
        "group_a",
        Column::Str(t_.iter().map(|_| s(g[0].clone())).collect()),
    )?;
    t.push_column(
        "group_b",
        Column::Str(t_.iter().map(|_| s(g[1].clone())).collect()),
    )?;
    t.push_column(
        "n_a",
        Column::I64(t_.iter().map(|x| Some(x.n[0] as i64)).collect()),
    )?;
    t.push_column(
        "n_b",
        Column::I64(t_.iter().map(|x| Some(x.n[1] as i64)).collect()),
    )?;
    t.push_column(
        "mean_a",
        Column::F64(t_.iter().map(|x| x.mean[0]).collect()),
    )?;
    t.push_column(
        "mean_b",
        Column::F64(t_.iter().map(|x| x.mean[1]).collect()),
    )?;
    t.push_column(
        "difference",
        Column::F64(t_.iter().map(|x| x.difference).collect()),
    )?;
    t.push_column(
        "p_value",
        Column::F64(
            t_.iter()
                .map(|x| x.permutation.as_ref().map(|p| p.p_value))
                .collect(),
        ),
    )?;
    t.push_column(
        "q_value",
        Column::F64(t_.iter().map(|x| x.q_value).collect()),
    )?;
    t.push_column(
        "significant",
        Column::Bool(t_.iter().map(|x| x.significant).collect()),
    )?;
    Ok(t)
}

/// The per-filter and per-model tables (`stem_filters`, `stem_models`).
pub fn stem(reports: &[StemReport]) -> Result<(Table, Table), TableError> {
    // per filter
    let mut model = Vec::new();
    let mut robust = Vec::new();
    let mut cols_i: BTreeMap<&str, Vec<Option<i64>>> = BTreeMap::new();
    let mut cols_f: Vec<(&str, Vec<Option<f64>>)> = [
        "norm",
        "centre_share",
        "max_similarity",
        "active_share",
        "pre_change",
        "post_change",
        "relu_removed",
        "worst_pre_change",
        "worst_post_change",
        "worst_relu_removed",
    ]
    .iter()
    .map(|n| (*n, Vec::new()))
    .collect();
    for r in reports {
        for f in &r.filters {
            model.push(s(&r.model));
            robust.push(r.robust);
            cols_i.entry("channel").or_default().push(as_i64(f.channel));
            cols_i
                .entry("most_similar")
                .or_default()
                .push(f.shape.most_similar.and_then(as_i64));
            cols_i
                .entry("near_duplicates")
                .or_default()
                .push(as_i64(f.shape.near_duplicates));
            let active = f.perturbed.or(f.worst).and_then(|c| c.active_share);
            let vals = [
                Some(f.shape.norm),
                f.shape.centre_share,
                f.shape.max_similarity,
                active,
                f.perturbed.and_then(|c| c.pre_change),
                f.perturbed.and_then(|c| c.post_change),
                f.perturbed.and_then(|c| c.relu_removed),
                f.worst.and_then(|c| c.pre_change),
                f.worst.and_then(|c| c.post_change),
                f.worst.and_then(|c| c.relu_removed),
            ];
            for ((_, col), v) in cols_f.iter_mut().zip(vals) {
                col.push(v);
            }
        }
    }
    let mut filters = Table::new();
    filters.push_column("model", Column::Str(model))?;
    filters.push_column("robust", Column::Bool(robust))?;
    for k in ["channel", "most_similar", "near_duplicates"] {
        filters.push_column(k, Column::I64(cols_i.remove(k).unwrap_or_default()))?;
    }
    for (k, v) in cols_f {
        filters.push_column(k, Column::F64(v))?;
    }

    // per model
    let rows: Vec<_> = reports.iter().map(|r| (&r.summary, &r.stem, r)).collect();
    let str_col = |f: &dyn Fn(&StemReport) -> Option<String>| {
        Column::Str(rows.iter().map(|(_, _, r)| f(r)).collect())
    };
    let int_col = |f: &dyn Fn(&StemReport) -> Option<i64>| {
        Column::I64(rows.iter().map(|(_, _, r)| f(r)).collect())
    };
    let f64_col = |f: &dyn Fn(&StemReport) -> Option<f64>| {
        Column::F64(rows.iter().map(|(_, _, r)| f(r)).collect())
    };
    let mut models = Table::new();
    models.push_column("model", str_col(&|r| s(&r.model)))?;
    models.push_column("file", str_col(&|r| s(&r.file)))?;
    models.push_column(
        "robust",
        Column::Bool(rows.iter().map(|(m, _, _)| m.robust).collect()),
    )?;
    models.push_column("layer", str_col(&|r| s(&r.stem.layer)))?;
    models.push_column("filters", int_col(&|r| as_i64(r.summary.filters)))?;
    models.push_column("in_channels", int_col(&|r| as_i64(r.summary.in_channels)))?;
    models.push_column("kernel", str_col(&|r| s(&r.summary.kernel)))?;
    models.push_column("stride", int_col(&|r| as_i64(r.summary.stride)))?;
    models.push_column("padding", int_col(&|r| r.summary.padding.and_then(as_i64)))?;
    models.push_column("geometry", str_col(&|r| s(&r.stem.geometry)))?;
    models.push_column("batch_norm", str_col(&|r| r.stem.batch_norm.clone()))?;
    models.push_column("batch_norm_rule", str_col(&|r| s(&r.stem.batch_norm_rule)))?;
    models.push_column("followed_by", str_col(&|r| r.stem.followed_by.clone()))?;
    models.push_column("normalization", str_col(&|r| s(&r.normalization.source)))?;
    models.push_column("n_images", int_col(&|r| as_i64(r.n_images)))?;
    models.push_column("centre_share", f64_col(&|r| r.summary.centre_share))?;
    models.push_column(
        "centred_filters",
        int_col(&|r| as_i64(r.summary.centred_filters)),
    )?;
    models.push_column(
        "mean_max_similarity",
        f64_col(&|r| r.summary.mean_max_similarity),
    )?;
    models.push_column(
        "near_duplicate_pairs",
        int_col(&|r| as_i64(r.summary.near_duplicate_pairs)),
    )?;
    models.push_column(
        "filters_with_duplicate",
        int_col(&|r| as_i64(r.summary.filters_with_duplicate)),
    )?;
    models.push_column("dead_filters", int_col(&|r| as_i64(r.summary.dead_filters)))?;
    models.push_column(
        "perturbed_key",
        str_col(&|r| r.summary.perturbed_key.clone()),
    )?;
    models.push_column(
        "perturbation_linf",
        f64_col(&|r| r.summary.perturbation_linf),
    )?;
    models.push_column("pre_change", f64_col(&|r| r.summary.pre_change))?;
    models.push_column("post_change", f64_col(&|r| r.summary.post_change))?;
    models.push_column("relu_removed", f64_col(&|r| r.summary.relu_removed))?;
    models.push_column("eps", f64_col(&|r| r.summary.eps))?;
    models.push_column("stem_gain", f64_col(&|r| r.summary.stem_gain))?;
    models.push_column("worst_pre_change", f64_col(&|r| r.summary.worst_pre_change))?;
    models.push_column(
        "worst_relu_removed",
        f64_col(&|r| r.summary.worst_relu_removed),
    )?;
    Ok((filters, models))
}
