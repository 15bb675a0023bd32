//! The shift's and aggregate's statistics on real zoos: byte-identical for 1 and 2 threads, the
//! permutation design respects `--pairs`, and the q-values are Benjamini–Hochberg of the
//! p-values.

mod common;

use common::*;
use convlens::compare::stats::benjamini_hochberg;
use convlens::compare::study::{
    aggregate, aggregate_with, shift, AggregateOptions, Scope, ShiftOptions,
};
use convlens::db::build::{build, BuildOptions};
use convlens::db::Db;
use std::path::{Path, PathBuf};

fn build_db(zoo: &Path, tag: &str) -> Db {
    let out: PathBuf =
        std::env::temp_dir().join(format!("convlens-stats-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        ..Default::default()
    };
    build(zoo, &out, &opts, &|_, _, _| {}).unwrap();
    Db::open(&out).unwrap()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn demo_zoo_statistics_are_identical_for_any_thread_count() {
    let zoo = root().join("examples/demo-zoo");
    let db = build_db(&zoo, "demo");
    for pairs in [None, Some(zoo.join("pairings.csv"))] {
        let scope = Scope {
            pairs: pairs.clone(),
            ..Default::default()
        };
        let opts = ShiftOptions {
            bootstrap: 20,
            permutations: 500,
            ..Default::default()
        };
        let one = in_pool(1, || {
            serde_json::to_string(&shift(&db, &scope, &opts).unwrap()).unwrap()
        });
        let two = in_pool(2, || {
            serde_json::to_string(&shift(&db, &scope, &opts).unwrap()).unwrap()
        });
        assert_eq!(
            one, two,
            "shift JSON differs between 1 and 2 threads (pairs: {pairs:?})"
        );
        let a1 = in_pool(1, || {
            serde_json::to_string(&aggregate(&db, &scope, Some("Robust")).unwrap()).unwrap()
        });
        let a2 = in_pool(2, || {
            serde_json::to_string(&aggregate(&db, &scope, Some("Robust")).unwrap()).unwrap()
        });
        assert_eq!(a1, a2);

        let s = shift(&db, &scope, &opts).unwrap();
        let c = &s.comparisons[0];
        // 2 robust vs 2 normal resnet20s
        for cell in &c.cells {
            let p = cell.permutation.as_ref().expect("every cell is tested");
            assert!(p.exact, "{}: few labellings are enumerated", cell.bin);
            if pairs.is_some() {
                // labels swapped within the 2 pairs only: 4 labellings, the symmetric KL pairs
                // them up, so p is 1/2 or 1
                assert_eq!(p.permutations, 4, "{}", cell.bin);
                assert!(
                    p.p_value == 0.5 || p.p_value == 1.0,
                    "{}: {}",
                    cell.bin,
                    p.p_value
                );
            } else {
                // C(4, 2) = 6 labellings
                assert_eq!(p.permutations, 6, "{}", cell.bin);
                assert!(
                    p.p_value >= 1.0 / 3.0 - 1e-12,
                    "{}: {}",
                    cell.bin,
                    p.p_value
                );
            }
            assert_eq!(
                cell.significant,
                Some(false),
                "2 vs 2 models cannot be significant"
            );
            // the smoothed divergence is defined wherever the plug-in one is
            assert_eq!(cell.kl_smoothed.is_some(), cell.kl.is_some());
            if let (Some(k), Some(r)) = (cell.kl, cell.kl_over_floor) {
                assert_eq!(cell.floor_source.as_deref(), Some("replicates"));
                assert!((r - k / cell.replicates.mean.unwrap()).abs() < 1e-15);
            }
        }
        // q-values: BH over the 11 depth cells; the overall cell is its own family
        let p: Vec<Option<f64>> = c.cells[1..]
            .iter()
            .map(|x| x.permutation.as_ref().map(|t| t.p_value))
            .collect();
        let q: Vec<Option<f64>> = c.cells[1..].iter().map(|x| x.q_value).collect();
        assert_eq!(q, benjamini_hochberg(&p));
        assert_eq!(
            c.cells[0].q_value,
            c.cells[0].permutation.as_ref().map(|t| t.p_value)
        );
        // the first layer: the plug-in KL is below the replicate floor (small-sample bias)
        let first = &c.cells[1];
        assert_eq!(first.bin, "first");
        assert!(first.kl.unwrap() < first.replicates.mean.unwrap());
        assert!(first.kl_smoothed.unwrap() < first.kl.unwrap());
        eprintln!(
            "demo zoo first layer: plug-in KL {:.3}, smoothed {:.3}, replicate floor {:.3}, p {:.3}",
            first.kl.unwrap(),
            first.kl_smoothed.unwrap(),
            first.replicates.mean.unwrap(),
            first.permutation.as_ref().unwrap().p_value
        );
    }
}

#[test]
fn aggregate_tests_follow_pairs_and_within() {
    let zoo = root().join("examples/demo-zoo");
    let db = build_db(&zoo, "agg");
    let scope = Scope {
        pairs: Some(zoo.join("pairings.csv")),
        ..Default::default()
    };
    let all = aggregate(&db, &scope, Some("Robust")).unwrap();
    assert_eq!(all.groups, Some(["False".to_string(), "True".to_string()]));
    assert_eq!(all.tests.len(), 3 * 11);
    let within = aggregate_with(
        &db,
        &scope,
        Some("Robust"),
        &AggregateOptions {
            within: Some("Training-Dataset".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(within.tests.iter().all(|t| t.subset == "cifar10"));
    assert!(all.tests.iter().all(|t| t.subset == "all"));
    for (a, w) in all.tests.iter().zip(&within.tests) {
        // one dataset: the same models, the same differences
        assert_eq!(a.difference, w.difference);
        assert_eq!(a.n, [2, 2]);
        let p = a.permutation.as_ref().unwrap();
        // 2 pairs: 4 labellings, |difference| is symmetric under swapping all labels
        assert!(p.exact && p.permutations == 4, "{p:?}");
        assert!(p.p_value >= 0.5);
        // the difference is the mean of the group's per-model values
        let vals = |g: &str| -> Vec<f64> {
            all.rows
                .iter()
                .filter(|r| r.depth_group == a.depth_group && r.group.as_deref() == Some(g))
                .map(|r| match a.metric.as_str() {
                    "sparsity" => r.agg.sparsity,
                    "variance_entropy" => r.agg.variance_entropy.unwrap(),
                    _ => r.agg.orthogonality,
                })
                .collect()
        };
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        let want = mean(vals("False")) - mean(vals("True"));
        assert!((a.difference.unwrap() - want).abs() < 1e-12);
    }
    // an unknown within column is an error naming it
    let e = aggregate_with(
        &db,
        &scope,
        Some("Robust"),
        &AggregateOptions {
            within: Some("Nope".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("Nope"), "{e}");
}

#[test]
fn seed_changes_only_random_relabellings() {
    // the demo zoo's tests are exact: the seed does not change them
    let zoo = root().join("examples/demo-zoo");
    let db = build_db(&zoo, "seed");
    let scope = Scope::default();
    let run = |seed| {
        let s = shift(
            &db,
            &scope,
            &ShiftOptions {
                bootstrap: 0,
                splits: 0,
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        s.comparisons[0]
            .cells
            .iter()
            .map(|c| c.permutation.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(2));
    // Monte Carlo (fewer permutations than labellings): same seed, same p
    let mc = |seed| {
        shift(
            &db,
            &scope,
            &ShiftOptions {
                bootstrap: 0,
                splits: 0,
                seed,
                permutations: 5,
                ..Default::default()
            },
        )
        .unwrap()
        .comparisons[0]
            .cells
            .iter()
            .map(|c| c.permutation.clone().unwrap())
            .collect::<Vec<_>>()
    };
    let (a, b) = (mc(7), mc(7));
    assert_eq!(a, b);
    assert!(a.iter().all(|p| !p.exact && p.permutations == 5));
}

#[test]
fn cifar10_mini_shift_is_tested_exactly_within_pairs() {
    let Some(shared) = shared() else { return };
    let zoo = shared.join("zoo/cifar10-mini");
    let out = std::env::temp_dir().join(format!("convlens-stats-mini-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    build(
        &zoo,
        &out,
        &BuildOptions {
            meta: Some(zoo.join("meta.csv")),
            formats: vec!["onnx".into()],
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .unwrap();
    let db = Db::open(&out).unwrap();
    let scope = Scope {
        pairs: Some(zoo.join("pairings.csv")),
        ..Default::default()
    };
    let s = shift(
        &db,
        &scope,
        &ShiftOptions {
            bootstrap: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let c = &s.comparisons[0];
    let n_pairs = s.pairs.len();
    for cell in c.cells.iter().filter(|x| x.kl.is_some()) {
        let p = cell.permutation.as_ref().unwrap();
        assert!(p.exact);
        assert!(p.permutations <= 1 << n_pairs);
        eprintln!(
            "cifar10-mini {}: KL {:.3} smoothed {:.3} p {:.3} q {:?}",
            cell.bin,
            cell.kl.unwrap(),
            cell.kl_smoothed.unwrap(),
            p.p_value,
            cell.q_value
        );
    }
    let agg = aggregate(&db, &scope, Some("Robust")).unwrap();
    assert_eq!(agg.tests.len(), 3 * 11);
    assert!(agg.tests.iter().any(|t| t.permutation.is_some()));
}
