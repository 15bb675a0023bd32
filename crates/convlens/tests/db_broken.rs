//! A broken zoo: every model ends up in the database or in the status list with its reason,
//! the study still completes, and counts reconcile.

mod common;

use common::*;
use convlens::compare::study::{aggregate, shift, Scope, ShiftOptions};
use convlens::db::build::{build, BuildOptions, Outcome};
use convlens::db::select::Condition;
use convlens::db::Db;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convlens-broken-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 3-layer model whose middle layer is all zeros.
fn tiny_model(path: &Path) {
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let layer = |o: usize, i: usize, f: &mut dyn FnMut() -> f32| -> Vec<u8> {
        (0..o * i * 9).flat_map(|_| f().to_le_bytes()).collect()
    };
    let a = layer(8, 3, &mut next);
    let b = vec![0u8; 8 * 8 * 9 * 4];
    let c = layer(8, 8, &mut next);
    let views = [
        ("conv1.weight", vec![8usize, 3, 3, 3], a),
        ("conv2.weight", vec![8, 8, 3, 3], b),
        ("conv3.weight", vec![8, 8, 3, 3], c),
    ];
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = views
        .iter()
        .map(|(n, s, d)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn make_zoo() -> PathBuf {
    let zoo = temp_dir("zoo");
    let src = fixture("zoo/cifar10-mini");
    for f in [
        "resnet20_normal_s0.safetensors",
        "resnet20_normal_s1.safetensors",
        "resnet20_robust_s0.safetensors",
        "resnet20_robust_s1.safetensors",
        "resnet20_normal_s0.pt", // duplicate model name
    ] {
        std::fs::copy(src.join(f), zoo.join(f)).unwrap();
    }
    std::fs::create_dir_all(zoo.join("sub")).unwrap();
    std::fs::write(
        zoo.join("sub/vgg11_w16_robust_s0.safetensors"),
        b"garbage, not a model",
    )
    .unwrap();
    std::fs::copy(
        src.join("resnet20_normal_s0.safetensors"),
        zoo.join("stray_model.safetensors"),
    )
    .unwrap();
    tiny_model(&zoo.join("tiny_zero_layer.safetensors"));
    std::fs::write(
        zoo.join("meta.csv"),
        "Name,Robust,Network,Seed,Study\n\
         resnet20_normal_s0,False,resnet20,0,a\n\
         resnet20_normal_s1,False,resnet20,1,b\n\
         resnet20_robust_s0,True,resnet20,0,a\n\
         resnet20_robust_s1,True,resnet20,1,a\n\
         vgg11_w16_robust_s0,True,vgg11,0,a\n\
         wrn16_2_normal_s0,False,wrn16_2,0,a\n\
         tiny_zero_layer,True,tiny,0,b\n\
         resnet20_normal_s0,False,resnet20,0,dup\n",
    )
    .unwrap();
    zoo
}

#[test]
fn broken_zoo_is_reported_and_the_study_completes() {
    let zoo = make_zoo();
    let out = temp_dir("db");
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        ..Default::default()
    };
    let r = build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    let by: BTreeMap<(String, Outcome), String> = r
        .status
        .iter()
        .map(|s| ((s.model.clone(), s.outcome.clone()), s.detail.clone()))
        .collect();
    let get = |m: &str, o: Outcome| by.get(&(m.to_string(), o)).cloned();
    // corrupt file: failed, with the file and the reason
    let failed = get("vgg11_w16_robust_s0", Outcome::Failed).expect("corrupt file not reported");
    assert!(
        failed.contains("vgg11_w16_robust_s0.safetensors"),
        "{failed}"
    );
    assert!(failed.contains("safetensors"), "{failed}");
    // duplicate model name: the safetensors file is used, the .pt reported
    let dup = r
        .status
        .iter()
        .find(|s| s.outcome == Outcome::Duplicate && s.file.ends_with(".pt"))
        .unwrap();
    assert!(dup.detail.contains("resnet20_normal_s0.safetensors"));
    // duplicate meta row
    assert!(get("resnet20_normal_s0", Outcome::Duplicate).is_some());
    // meta row without file
    assert!(get("wrn16_2_normal_s0", Outcome::MissingFile).is_some());
    // file without meta row: stored, reported
    assert!(get("stray_model", Outcome::NoMetaRow)
        .unwrap()
        .contains("no row"));
    // counts reconcile: every model file found appears exactly once in the status
    let files = convlens::read::find_models(&zoo).unwrap();
    for f in &files {
        let rel = f.strip_prefix(&zoo).unwrap().to_string_lossy().into_owned();
        let n = r.status.iter().filter(|s| s.file == rel).count();
        assert_eq!(n, 1, "{rel} appears {n} times in the status");
    }
    let db = Db::open(&out).unwrap();
    assert_eq!(db.models.len(), r.models_in_db);
    assert_eq!(db.models.len(), 6); // 4 resnet20 + stray + tiny
    let status_csv = std::fs::read_to_string(out.join("status.csv")).unwrap();
    assert_eq!(status_csv.lines().count(), 1 + r.status.len());
    // all-zero layer: every filter sparse, entropy undefined, orthogonality 1 - 1/(n-1)
    let tiny = &db.models[db.model("tiny_zero_layer").unwrap()];
    let zero = &tiny.layers[1];
    assert_eq!(zero.sparse_filters, 64);
    assert!(zero.variance_entropy.is_nan());
    assert!((zero.orthogonality - (1.0 - 1.0 / 7.0)).abs() < 1e-12);
    assert_eq!(tiny.kernels[0].n_sparse, 64);
    // the study over the whole database completes (stray model has no group: excluded)
    let opts = ShiftOptions {
        splits: 3,
        bootstrap: 3,
        ..Default::default()
    };
    let s = shift(&db, &Scope::default(), &opts).unwrap();
    assert!(s
        .excluded
        .iter()
        .any(|(m, why)| m == "stray_model" && why.contains("Robust")));
    assert_eq!(
        s.comparisons[0].models[0].len() + s.comparisons[0].models[1].len(),
        5
    );
    // filter counts reconcile: overall cell = all non-sparse filters of the grouped models
    let nonsparse: u64 = db
        .models
        .iter()
        .filter(|m| m.name != "stray_model")
        .flat_map(|m| m.kernels.iter().map(|k| k.n_filters - k.n_sparse))
        .sum();
    let overall = &s.comparisons[0].cells[0];
    assert_eq!(overall.n[0] + overall.n[1], nonsparse);
    // replicate pairs (same network and group, different seed) give the seed-noise floor
    assert_eq!(s.comparisons[0].replicate_pairs.len(), 2);
    assert!(overall.replicates.mean.unwrap() > 0.0);
    // deciles without filters: tiny (True) vs resnet20_normal_s1 (False) in study b
    let b = Scope {
        conditions: vec![Condition {
            column: "Study".into(),
            value: "b".into(),
        }],
        ..Default::default()
    };
    let s = shift(&db, &b, &opts).unwrap();
    let cells = &s.comparisons[0].cells;
    let empty: Vec<&str> = cells
        .iter()
        .filter(|c| c.kl.is_none())
        .map(|c| c.bin.as_str())
        .collect();
    // tiny has depths 0, 0.5, 1.0: only `first`, (0.4, 0.5] and (0.9, 1.0] hold filters, and
    // its (0.4, 0.5] layer is all zeros, i.e. sparse: 9 deciles are empty for it
    assert_eq!(empty.len(), 9, "{empty:?}");
    assert!(empty.contains(&"(0.4, 0.5]") && !empty.contains(&"(0.9, 1.0]"));
    assert!(cells
        .iter()
        .filter(|c| c.kl.is_none())
        .all(|c| c.status.contains("empty") && c.n[1] == 0));
    // an empty group: only robust models selected
    let only_robust = Scope {
        conditions: vec![Condition {
            column: "Robust".into(),
            value: "true".into(),
        }],
        ..Default::default()
    };
    let e = shift(&db, &only_robust, &opts).unwrap_err().to_string();
    assert!(e.contains("exactly two") && e.contains("True"), "{e}");
    // the per-model aggregates include the zero layer's group with no entropy contribution
    let agg = aggregate(&db, &b, Some("Robust")).unwrap();
    let row = agg
        .rows
        .iter()
        .find(|r| r.model == "tiny_zero_layer" && r.depth_group == "(0.4, 0.5]")
        .unwrap();
    assert_eq!(row.agg.sparsity, 1.0);
    assert_eq!(row.agg.variance_entropy, None);
    let _ = std::fs::remove_dir_all(&zoo);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn rebuild_only_processes_new_or_changed_files() {
    let zoo = temp_dir("inc-zoo");
    let src = fixture("zoo/cifar10-mini");
    for f in [
        "resnet20_normal_s0.safetensors",
        "resnet20_robust_s0.safetensors",
    ] {
        std::fs::copy(src.join(f), zoo.join(f)).unwrap();
    }
    std::fs::copy(src.join("meta.csv"), zoo.join("meta.csv")).unwrap();
    let out = temp_dir("inc-db");
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        ..Default::default()
    };
    let r1 = build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    assert_eq!(r1.with(Outcome::Added).count(), 2);
    let layers1 = std::fs::read(out.join("layers.parquet")).unwrap();
    // unchanged zoo: nothing re-read, identical tables
    let r2 = build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    assert_eq!(r2.with(Outcome::Unchanged).count(), 2);
    assert_eq!(r2.with(Outcome::Added).count(), 0);
    assert_eq!(std::fs::read(out.join("layers.parquet")).unwrap(), layers1);
    // grown zoo: only the new model is read
    std::fs::copy(
        src.join("resnet20_normal_s1.safetensors"),
        zoo.join("resnet20_normal_s1.safetensors"),
    )
    .unwrap();
    let r3 = build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    assert_eq!(r3.with(Outcome::Added).count(), 1);
    assert_eq!(r3.with(Outcome::Unchanged).count(), 2);
    // a removed file leaves the database
    std::fs::remove_file(zoo.join("resnet20_robust_s0.safetensors")).unwrap();
    let r4 = build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    assert_eq!(r4.with(Outcome::Removed).count(), 1);
    assert_eq!(r4.models_in_db, 2);
    assert!(!out.join("filters/3x3/resnet20_robust_s0.npy").exists());
    // no temporary shard is left behind, and the recorded hash is the file's BLAKE3
    let tmp: Vec<_> = std::fs::read_dir(out.join("filters/3x3"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    let db = Db::open(&out).unwrap();
    for m in &db.models {
        let bytes = std::fs::read(zoo.join(&m.file)).unwrap();
        assert_eq!(
            m.blake3,
            blake3::hash(&bytes).to_hex().to_string(),
            "{}",
            m.name
        );
    }
    let _ = std::fs::remove_dir_all(&zoo);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_corrupt_record_is_refused_with_its_file_named() {
    let zoo = temp_dir("rec-zoo");
    let src = fixture("zoo/cifar10-mini");
    std::fs::copy(
        src.join("resnet20_normal_s0.safetensors"),
        zoo.join("resnet20_normal_s0.safetensors"),
    )
    .unwrap();
    let out = temp_dir("rec-db");
    build(&zoo, &out, &BuildOptions::default(), &|_, _, _| {}).unwrap();
    let rec = out.join("models/resnet20_normal_s0.json");
    let good = std::fs::read_to_string(&rec).unwrap();
    for (what, from, to) in [
        (
            "layer outside its shard",
            "\"shard_end\": 48,",
            "\"shard_end\": 99999999,",
        ),
        (
            "kernel overflow",
            "\"kernel\": [\n        3,\n        3\n      ]",
            "\"kernel\": [\n        18446744073709551615,\n        3\n      ]",
        ),
    ] {
        assert!(good.contains(from), "{what}: fixture record changed");
        std::fs::write(&rec, good.replacen(from, to, 1)).unwrap();
        let e = Db::open(&out).unwrap_err().to_string();
        assert!(e.contains("resnet20_normal_s0.json"), "{what}: {e}");
    }
    let _ = std::fs::remove_dir_all(&zoo);
    let _ = std::fs::remove_dir_all(&out);
}
