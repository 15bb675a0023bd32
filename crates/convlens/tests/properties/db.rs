//! `db build` and `db merge` on random zoos of real fixture models: a database grown by
//! re-running `db build` on a growing folder holds the bytes of one build of the final folder
//! (its status says `unchanged` where the single build says `added`, for exactly the models
//! read before), and partial databases (`--part i/n`, or file lists) merged with `db merge`
//! are byte for byte the single build.
//!
//! The pool mixes formats (torch zip and legacy, Lightning, ONNX, safetensors, Keras, TFLite),
//! two files of one model (the safetensors copy is preferred), a subfolder, an image archive
//! without convolutions (skipped), an optimizer state without weights (skipped) and a file that
//! is not a model (failed); half of the cases use the demo zoo's meta table (rows without
//! files, models without rows). Files are hard-linked (copied when that fails) into temporary
//! folders.
//!
//! These properties are heavy (several database builds per case): few cases.

use super::common::{root, tree};
use super::{config, TempDir};
use convlens::db::build::{build, BuildOptions, Outcome};
use convlens::db::merge::{merge, read_status};
use convlens::read::model_name;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The pool: (path in the zoo, source relative to the repository; `None`: not a model).
const POOL: &[(&str, Option<&str>)] = &[
    (
        "resnet20_normal_s0.ckpt",
        Some("examples/demo-zoo/resnet20_normal_s0.ckpt"),
    ),
    (
        "resnet20_normal_s0.safetensors",
        Some("fixtures/zoo/cifar10-mini/resnet20_normal_s0.safetensors"),
    ),
    (
        "resnet20_robust_s1.onnx",
        Some("examples/demo-zoo/resnet20_robust_s1.onnx"),
    ),
    (
        "sub/resnet20_robust_s0.legacy.pt",
        Some("examples/demo-zoo/resnet20_robust_s0.legacy.pt"),
    ),
    (
        "adv_examples.npz",
        Some("examples/demo-zoo/adv_examples.npz"),
    ),
    ("cifar_sgd.pt", Some("fixtures/checkpoints/cifar_sgd.pt")),
    (
        "sub/model_ema.pt",
        Some("fixtures/checkpoints/model_ema.pt"),
    ),
    ("gan.pt", Some("fixtures/checkpoints/gan.pt")),
    (
        "lightning.ckpt",
        Some("fixtures/checkpoints/lightning.ckpt"),
    ),
    (
        "optimizer_only.pt",
        Some("fixtures/checkpoints/optimizer_only.pt"),
    ),
    (
        "weight_norm.pt",
        Some("fixtures/checkpoints/weight_norm.pt"),
    ),
    ("keras2_model.h5", Some("fixtures/keras/keras2_model.h5")),
    (
        "sub/quantized.tflite",
        Some("fixtures/tflite/quantized.tflite"),
    ),
    ("broken.safetensors", None),
];

/// Puts pool file `i` into the zoo folder.
fn place(zoo: &Path, i: usize) {
    let (rel, src) = POOL[i];
    let dst = zoo.join(rel);
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    match src {
        Some(src) => {
            let src = root().join(src);
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
        None => std::fs::write(&dst, b"not a safetensors file, not a model at all").unwrap(),
    }
}

fn options(meta: bool) -> BuildOptions {
    BuildOptions {
        meta: meta.then(|| root().join("examples/demo-zoo/meta.csv")),
        ..Default::default()
    }
}

fn build_into(zoo: &Path, out: &Path, opts: &BuildOptions) -> convlens::db::build::BuildReport {
    build(zoo, out, opts, &|_, _, _| {}).unwrap()
}

/// Asserts that two database folders hold the same files with the same bytes, except the
/// files named in `except`.
fn same_files(a: &Path, b: &Path, except: &[&str]) -> Result<(), TestCaseError> {
    let (mut ta, mut tb) = (tree(a), tree(b));
    for e in except {
        ta.remove(*e);
        tb.remove(*e);
    }
    prop_assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "different files"
    );
    for (k, va) in &ta {
        prop_assert!(va == &tb[k], "{} differs", k);
    }
    Ok(())
}

/// A non-empty subset of the pool (indices, in pool order).
fn subset() -> impl Strategy<Value = Vec<usize>> {
    vec(prop::bool::weighted(0.7), POOL.len())
        .prop_map(|take| (0..POOL.len()).filter(|&i| take[i]).collect::<Vec<usize>>())
        .prop_filter("at least one file", |s| !s.is_empty())
}

proptest! {
    // heavy: 2 to 5 database builds per case (about 0.3 s): 12 cases each
    #![proptest_config(config(12))]

    /// Growing the zoo in 2–3 steps and re-running `db build` after each gives the database
    /// of one build of the final zoo: the same bytes in every file but `status.csv`, whose
    /// rows differ only in `unchanged` for models whose chosen file was already there.
    #[test]
    fn incremental_build_equals_a_build_from_scratch(
        (files, steps) in subset().prop_flat_map(|s| {
            let n = s.len();
            (Just(s), vec(0usize..3, n))
        }),
        meta in any::<bool>(),
    ) {
        let opts = options(meta);
        let zoo = TempDir::new("inc-zoo");
        let grown = TempDir::new("inc-grown");
        let last = steps.iter().copied().max().unwrap_or(0);
        let mut report = None;
        for step in 0..=last {
            for (&f, _) in files.iter().zip(&steps).filter(|(_, &s)| s == step) {
                place(zoo.path(), f);
            }
            report = Some(build_into(zoo.path(), grown.path(), &opts));
        }
        let report = report.unwrap();
        let scratch = TempDir::new("inc-scratch");
        let single = build_into(zoo.path(), scratch.path(), &opts);
        same_files(grown.path(), scratch.path(), &["status.csv"])?;
        prop_assert_eq!(report.models_in_db, single.models_in_db);
        // status: `unchanged` exactly for the models read before the last step
        let step_of: BTreeMap<&str, usize> = files
            .iter()
            .zip(&steps)
            .map(|(&f, &s)| (POOL[f].0, s))
            .collect();
        let grown_status = read_status(grown.path()).unwrap();
        let single_status = read_status(scratch.path()).unwrap();
        prop_assert_eq!(grown_status.len(), single_status.len());
        for (g, s) in grown_status.iter().zip(&single_status) {
            prop_assert_eq!((&g.model, &g.file, &g.detail), (&s.model, &s.file, &s.detail));
            let want = match s.outcome {
                Outcome::Added if step_of[s.file.as_str()] < last => Outcome::Unchanged,
                ref o => o.clone(),
            };
            prop_assert_eq!(&g.outcome, &want, "{}", g.file);
        }
        let text = |p: &Path| std::fs::read_to_string(p.join("status.csv")).unwrap();
        prop_assert_eq!(
            text(grown.path()).replace(",unchanged,", ",added,"),
            text(scratch.path())
        );
    }

    /// Partial databases, by `--part i/n` (n from 1 to 4, more parts than models included)
    /// or by lists of files (all files of a model in one list), merged in any order, are the
    /// single build byte for byte.
    #[test]
    fn partial_builds_merge_to_the_single_build(
        files in subset(),
        by_part in any::<bool>(),
        n in 1usize..=4,
        lists in vec(0usize..4, POOL.len()),
        order in Just((0..4).collect::<Vec<usize>>()).prop_shuffle(),
        meta in any::<bool>(),
    ) {
        let opts = options(meta);
        let zoo = TempDir::new("merge-zoo");
        for &f in &files {
            place(zoo.path(), f);
        }
        let whole = TempDir::new("merge-single");
        build_into(zoo.path(), whole.path(), &opts);
        let mut parts: Vec<TempDir> = Vec::new();
        if by_part {
            for i in 0..n {
                let p = TempDir::new("merge-part");
                build_into(zoo.path(), p.path(), &BuildOptions { part: Some((i, n)), ..opts.clone() });
                parts.push(p);
            }
        } else {
            // list j: the files of the models whose first file drew list j (mod n)
            let mut list_of: BTreeMap<String, usize> = BTreeMap::new();
            let mut listed: Vec<Vec<PathBuf>> = vec![Vec::new(); n];
            for &f in &files {
                let rel = POOL[f].0;
                let j = *list_of.entry(model_name(Path::new(rel))).or_insert(lists[f] % n);
                listed[j].push(PathBuf::from(rel));
            }
            for l in listed.into_iter().filter(|l| !l.is_empty()) {
                let p = TempDir::new("merge-list");
                build_into(zoo.path(), p.path(), &BuildOptions { files: l, ..opts.clone() });
                parts.push(p);
            }
        }
        let inputs: Vec<PathBuf> = order
            .iter()
            .filter(|&&i| i < parts.len())
            .map(|&i| parts[i].path().to_path_buf())
            .collect();
        let merged = TempDir::new("merge-merged");
        let out = merged.join("db");
        merge(&inputs, &out).unwrap();
        same_files(whole.path(), &out, &[])?;
    }
}
