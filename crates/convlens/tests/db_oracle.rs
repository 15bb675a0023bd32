//! The zoo study through the filter database agrees with the oracle (`reference.py`):
//! basis, explained variance, coefficient range, histograms, per-component and weighted KL
//! (overall, first, deciles) and the per-model depth aggregates.

mod common;

use common::*;
use convlens::compare::study::{aggregate, basis, shift, Scope, ShiftOptions, ShiftReport};
use convlens::db::build::{build, BuildOptions};
use convlens::db::select::Condition;
use convlens::db::Db;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convlens-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Builds a database of `zoo` restricted to one format and returns it.
fn build_db(zoo: &Path, format: &str, tag: &str) -> Db {
    let out = temp_dir(tag);
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        formats: vec![format.to_string()],
        ..Default::default()
    };
    let report = build(zoo, &out, &opts, &|_, _, _| {}).unwrap();
    assert_eq!(report.with(convlens::db::build::Outcome::Failed).count(), 0);
    Db::open(&out).unwrap()
}

fn vec_f64(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close_vec(what: &str, a: &[f64], e: &Value) {
    let e = vec_f64(e);
    assert_eq!(a.len(), e.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        assert_close(&format!("{what}[{i}]"), *x, &Value::from(*y));
    }
}

fn label(group: &str) -> &'static str {
    match group {
        "True" => "robust",
        "False" => "normal",
        g => panic!("unexpected group {g}"),
    }
}

fn check_shift(r: &ShiftReport, e: &Value) -> usize {
    let full = &e["pca"]["full"];
    assert_eq!(r.basis.n_samples, full["n_samples"].as_u64().unwrap());
    close_vec("mean", &r.basis.mean, &full["mean"]);
    for (j, c) in r.basis.components.iter().enumerate() {
        close_vec(&format!("component {j}"), c, &full["components"][j]);
    }
    close_vec(
        "variance",
        &r.basis.explained_variance,
        &full["explained_variance"],
    );
    close_vec(
        "ratio",
        &r.basis.explained_variance_ratio,
        &full["explained_variance_ratio"],
    );
    close_vec(
        "singular values",
        &r.basis.singular_values,
        &full["singular_values"],
    );
    close_vec("coef_range", &r.coef_range, &e["coef_range"]);
    let div = &e["divergence"];
    close_vec(
        "weights",
        &r.basis.explained_variance_ratio,
        &div["weights"],
    );
    let c = &r.comparisons[0];
    let mut expected_cells = vec![&div["overall"]];
    expected_cells.extend(div["by_depth"].as_array().unwrap());
    let mut compared = 0;
    for (cell, ec) in c.cells.iter().zip(expected_cells) {
        assert_eq!(cell.bin, ec["bin"].as_str().unwrap());
        for (g, n) in c.groups.iter().zip(cell.n) {
            assert_eq!(
                n,
                ec["n"][label(g)].as_u64().unwrap(),
                "{}: n of {g}",
                cell.bin
            );
        }
        match ec["kl"].as_f64() {
            Some(kl) if ec["status"] == "ok" => {
                assert_close(
                    &format!("{} kl", cell.bin),
                    cell.kl.unwrap(),
                    &Value::from(kl),
                );
                close_vec(
                    &format!("{} kl per component", cell.bin),
                    cell.kl_per_component.as_ref().unwrap(),
                    &ec["kl_per_component"],
                );
                compared += 1;
            }
            _ => assert!(cell.kl.is_none(), "{}: expected no KL", cell.bin),
        }
    }
    // histograms (discrete distributions) of every group and cell
    let hists = e["histograms"].as_object().unwrap();
    assert_eq!(r.distributions.len(), hists.len());
    for (key, d) in &r.distributions {
        let (g, cell) = key.split_once('|').unwrap();
        let ek = format!("{}|{cell}", label(g));
        let eh = &hists[&ek];
        for (j, comp) in d.iter().enumerate() {
            close_vec(&format!("histogram {ek} c{j}"), comp, &eh[j]);
        }
    }
    compared
}

fn check_groups_and_aggregates(db: &Db, scope: &Scope, e: &Value) {
    let b = basis(db, scope, Some("Robust")).unwrap();
    for g in &b.groups {
        let eg = &e["pca"][label(&g.name)];
        let gb = g.basis.as_ref().unwrap();
        close_vec(
            &format!("{} ratio", g.name),
            &gb.explained_variance_ratio,
            &eg["explained_variance_ratio"],
        );
        close_vec(&format!("{} mean", g.name), &gb.mean, &eg["mean"]);
        for (j, c) in gb.components.iter().enumerate() {
            close_vec(
                &format!("{} component {j}", g.name),
                c,
                &eg["components"][j],
            );
        }
    }
    let agg = aggregate(db, scope, Some("Robust")).unwrap();
    let mut n = 0;
    for m in e["models"].as_array().unwrap() {
        let path = m["path"].as_str().unwrap();
        let name = convlens::read::model_name(Path::new(path));
        let bins = m["depth_bins"].as_object().unwrap();
        let rows: Vec<_> = agg.rows.iter().filter(|r| r.model == name).collect();
        assert_eq!(rows.len(), bins.len(), "{name}: depth groups");
        for r in rows {
            let eb = &bins[&r.depth_group];
            let w = format!("{name} {}", r.depth_group);
            assert_close(&format!("{w} sparsity"), r.agg.sparsity, &eb["sparsity"]);
            assert_close(
                &format!("{w} entropy"),
                r.agg.variance_entropy.unwrap_or(f64::NAN),
                &eb["entropy"],
            );
            assert_close(&format!("{w} ortho"), r.agg.orthogonality, &eb["ortho"]);
            n += 1;
        }
    }
    assert!(n > 0);
}

fn run_study(zoo: &Path, format: &str, expected_name: &str, scope: Scope, tag: &str) {
    let db = build_db(zoo, format, tag);
    let e = expected(expected_name);
    let opts = ShiftOptions {
        splits: 4,
        bootstrap: 4,
        ..Default::default()
    };
    let r = shift(&db, &scope, &opts).unwrap();
    let n = check_shift(&r, &e);
    assert!(n >= 10, "only {n} cells compared");
    check_groups_and_aggregates(&db, &scope, &e);
    let _ = std::fs::remove_dir_all(&db.dir);
}

fn resnet20_only() -> Scope {
    Scope {
        conditions: vec![Condition {
            column: "Network".into(),
            value: "resnet20".into(),
        }],
        ..Default::default()
    }
}

#[test]
fn resnet20_onnx_study_matches_the_oracle() {
    run_study(
        &fixture("zoo/cifar10-mini"),
        "onnx",
        "zoo_resnet20_onnx_robust_vs_normal.json",
        resnet20_only(),
        "r20-onnx",
    );
}

#[test]
fn resnet20_safetensors_study_matches_the_oracle() {
    run_study(
        &fixture("zoo/cifar10-mini"),
        "safetensors",
        "zoo_resnet20_safetensors_robust_vs_normal.json",
        resnet20_only(),
        "r20-st",
    );
}

#[test]
fn whole_onnx_zoo_matches_the_oracle() {
    let Some(shared) = shared() else { return };
    let zoo = shared.join("zoo/cifar10-mini");
    let scope = Scope {
        pairs: Some(zoo.join("pairings.csv")),
        ..Default::default()
    };
    run_study(
        &zoo,
        "onnx",
        "zoo_onnx_robust_vs_normal.json",
        scope,
        "zoo-onnx",
    );
}

#[test]
fn whole_safetensors_zoo_matches_the_oracle() {
    let Some(shared) = shared() else { return };
    let zoo = shared.join("zoo/cifar10-mini");
    // the oracle used the 10 safetensors files of the 5 complete pairs
    let scope = Scope {
        pairs: Some(zoo.join("pairings.csv")),
        ..Default::default()
    };
    run_study(
        &zoo,
        "safetensors",
        "zoo_safetensors_robust_vs_normal.json",
        scope,
        "zoo-st",
    );
}
