//! The zoo-database commands: `db build`, `db status`, `basis`, `shift`, `kl-matrix`,
//! `aggregate`.

use anyhow::Context;
use convlens::compare::study::{AggregateReport, BasisReport, KlMatrix, Scope, ShiftReport};
use convlens::db::build::{BuildReport, Outcome};
use convlens_table::{Column, Table};
use serde::Serialize;
use std::path::Path;

/// Writes `value` as pretty JSON to `OUT/<stem>.json`, or to stdout without `out`.
pub fn write_json<T: Serialize>(out: Option<&Path>, stem: &str, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let p = dir.join(format!("{stem}.json"));
            std::fs::write(&p, text + "\n")
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// Writes a table as `OUT/<stem>.csv` and `OUT/<stem>.parquet`.
pub fn write_table(out: &Path, stem: &str, t: &Table) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    t.write_csv(&out.join(format!("{stem}.csv")))?;
    t.write_parquet(&out.join(format!("{stem}.parquet")))?;
    Ok(())
}

fn s(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

/// Prints the build summary; returns the number of failed models.
pub fn print_build(report: &BuildReport) -> usize {
    let mut failed = 0;
    for e in &report.status {
        match e.outcome {
            Outcome::Failed => {
                failed += 1;
                eprintln!("failed: {} ({}): {}", e.model, e.file, e.detail);
            }
            Outcome::Added | Outcome::Unchanged => {}
            _ => eprintln!(
                "{}: {} {}: {}",
                e.outcome.label(),
                e.model,
                e.file,
                e.detail
            ),
        }
    }
    let count = |o: Outcome| report.with(o).count();
    eprintln!(
        "database: {} models ({} added, {} unchanged, {} failed, {} duplicates, {} meta rows without file, {} without meta row, {} removed, {} skipped as not models)",
        report.models_in_db,
        count(Outcome::Added),
        count(Outcome::Unchanged),
        failed,
        count(Outcome::Duplicate),
        count(Outcome::MissingFile),
        count(Outcome::NoMetaRow),
        count(Outcome::Removed),
        count(Outcome::Skipped),
    );
    for (k, n) in &report.filters {
        eprintln!("  {}x{} filters: {n}", k[0], k[1]);
    }
    failed
}

/// Tables of `convlens basis`.
pub fn basis_tables(r: &BasisReport) -> anyhow::Result<Table> {
    let mut set = Vec::new();
    let mut comp = Vec::new();
    let mut var = Vec::new();
    let mut ratio = Vec::new();
    let mut cum = Vec::new();
    let k = r.full.dim();
    let mut loadings: Vec<Vec<Option<f64>>> = vec![Vec::new(); k];
    let mut means: Vec<Vec<Option<f64>>> = vec![Vec::new(); k];
    let mut push = |name: &str, b: &convlens::compare::basis::Basis| {
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
pub fn shift_tables(r: &ShiftReport) -> anyhow::Result<(Table, Table)> {
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
pub fn kl_table(r: &KlMatrix) -> anyhow::Result<Table> {
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
pub fn aggregate_table(r: &AggregateReport) -> anyhow::Result<Table> {
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
pub fn metric_tests_table(r: &AggregateReport) -> anyhow::Result<Table> {
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

/// Parses `KxK` into a kernel size.
pub fn parse_kernel(s: &str) -> Result<[usize; 2], String> {
    match s.parse::<convlens::extract::KernelSelect>()? {
        convlens::extract::KernelSelect::Size(a, b) => Ok([a, b]),
        convlens::extract::KernelSelect::All => {
            Err("a single kernel size such as 3x3 is needed here".into())
        }
    }
}

/// Builds a [`Scope`].
pub fn scope(
    conditions: Vec<convlens::db::select::Condition>,
    pairs: Option<std::path::PathBuf>,
    kernel: [usize; 2],
) -> Scope {
    Scope {
        conditions,
        pairs,
        kernel: Some(kernel),
    }
}
