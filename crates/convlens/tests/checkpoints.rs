//! Training checkpoints as training code writes them (`fixtures/checkpoints`, made by
//! `make_checkpoints.py` with real `torch.save`): every file gives exactly the model's conv
//! layers (names, shapes, weights) as torch lists them, optimizer moments and other entries
//! never count, other models are reachable by entry, weight norm is rebuilt.

mod common;

use common::*;
use convlens::db::build::{build, BuildOptions};
use convlens::db::Db;
use convlens::extract::{extract, KernelSelect};
use convlens::quality::analyse_file_with;
use convlens::read::{entries_of, entry_of, read_with, ReadOptions};
use convlens::stem::{LoadOptions, StemModel};
use serde_json::Value;
use std::path::PathBuf;

fn ckpt_file(name: &str) -> PathBuf {
    fixture(&format!("checkpoints/{name}"))
}

fn truth() -> Value {
    let p = ckpt_file("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn files() -> Vec<(String, Value)> {
    let t = truth();
    let files = t["files"].as_object().unwrap();
    assert_eq!(files.len(), 16, "the generator writes 16 checkpoints");
    files.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Asserts that `file` read with `entry` gives exactly the conv layers `want` (names,
/// shapes and, through the f64 sum of squares, the weights).
fn assert_layers(file: &str, entry: Option<&str>, want: &Value) {
    let ck =
        read_with(&ckpt_file(file), &ReadOptions::entry(entry)).unwrap_or_else(|e| panic!("{e}"));
    let ex = extract(&ck);
    let got: Vec<(String, Vec<usize>)> = ex
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.shape.to_vec()))
        .collect();
    let want_list: Vec<(String, Vec<usize>)> = want
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    assert_eq!(got, want_list, "{file} (entry {entry:?}): conv layers");
    for (l, w) in ex.layers.iter().zip(want.as_array().unwrap()) {
        let sumsq: f64 = l.weights_oihw().iter().map(|&x| f64::from(x).powi(2)).sum();
        let e = w["sumsq"].as_f64().unwrap();
        assert!(
            (sumsq - e).abs() <= 1e-6 * e,
            "{file} (entry {entry:?}) {}: sum of squares {sumsq} vs torch {e}",
            l.name
        );
    }
}

#[test]
fn every_checkpoint_gives_exactly_the_true_conv_layers() {
    for (file, t) in files() {
        assert_layers(&file, None, &t["layers"]);
        let ck = read_with(&ckpt_file(&file), &ReadOptions::default()).unwrap();
        let default = t["default_entry"].as_str();
        assert_eq!(entry_of(&ck), default, "{file}: default entry");
        // the candidates: the default first, then the others
        let others = t["other_entries"].as_object().unwrap();
        let mut want: Vec<String> = default.map(str::to_string).into_iter().collect();
        want.extend(others.keys().cloned());
        assert_eq!(entries_of(&ck), want, "{file}: candidate entries");
        for (entry, layers) in others {
            assert_layers(&file, Some(entry), layers);
        }
    }
}

#[test]
fn optimizer_moments_are_never_layers() {
    // the case: Adam's exp_avg / exp_avg_sq have the weights' shapes
    let ck = read_with(&ckpt_file("cifar_adam.pt"), &ReadOptions::default()).unwrap();
    let ex = extract(&ck);
    assert_eq!(ex.selected(KernelSelect::DEFAULT).count(), 5);
    assert!(ck.tensors.iter().all(|t| !t.name.contains("exp_avg")));
    assert!(
        ck.notes
            .iter()
            .any(|n| n.contains("optimizer state not read") && n.contains("`optimizer`")),
        "{:?}",
        ck.notes
    );
    let ck = read_with(&ckpt_file("lightning.ckpt"), &ReadOptions::default()).unwrap();
    assert!(
        ck.notes.iter().any(|n| n.contains("`optimizer_states.0`")),
        "{:?}",
        ck.notes
    );
    assert!(
        ck.notes
            .iter()
            .any(|n| n.contains("module._orig_mod.") || n.contains("the `model.` prefix")),
        "{:?}",
        ck.notes
    );
}

#[test]
fn an_optimizer_state_alone_is_not_a_model() {
    let p = ckpt_file("optimizer_only.pt");
    let ck = read_with(&p, &ReadOptions::default()).unwrap();
    assert!(ck.tensors.is_empty(), "{} tensors", ck.tensors.len());
    assert!(
        ck.notes
            .iter()
            .any(|n| n.contains("optimizer state not read") && n.contains("(root)")),
        "{:?}",
        ck.notes
    );
    let e = analyse_file_with(&p, KernelSelect::DEFAULT, &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("optimizer_only.pt"), "{e}");
}

#[test]
fn an_unknown_entry_is_an_error_listing_the_candidates() {
    let p = ckpt_file("gan.pt");
    let e = read_with(&p, &ReadOptions::entry(Some("generator"))).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("gan.pt"), "{msg}");
    assert!(
        msg.contains("`generator`") && msg.contains("`G`, `D`"),
        "{msg}"
    );
    // formats with a single model refuse an entry
    let Some(st) = zoo_file("resnet20_normal_s0.safetensors") else {
        return;
    };
    let e = read_with(&st, &ReadOptions::entry(Some("net"))).unwrap_err();
    assert!(e.to_string().contains("single model"), "{e}");
}

#[test]
fn the_gan_discriminator_is_reachable_by_entry() {
    let d = analyse_file_with(
        &ckpt_file("gan.pt"),
        KernelSelect::DEFAULT,
        &ReadOptions::entry(Some("D")),
    )
    .unwrap();
    assert_eq!(d.entry.as_deref(), Some("D"));
    assert_eq!(d.layers.len(), 2);
    assert_eq!(d.layers[0].shape, [4, 3, 3, 3]);
    assert!(d.notes.iter().any(|n| n.contains("`G`")), "{:?}", d.notes);
}

#[test]
fn weight_norm_is_rebuilt_into_the_effective_weight() {
    let t = truth();
    assert_eq!(t["oracle"], true, "expected.json was made with the oracle");
    for file in ["weight_norm.pt", "weight_norm_parametrizations.pt"] {
        let want = &t["files"][file]["layers"];
        let ck = read_with(&ckpt_file(file), &ReadOptions::default()).unwrap();
        let ex = extract(&ck);
        assert_eq!(ex.layers.len(), 5, "{file}");
        // the magnitudes are folded, not layers of their own
        let folded = ex
            .skipped
            .iter()
            .filter(|s| s.reason.contains("weight-norm magnitude"))
            .count();
        assert_eq!(folded, 5, "{file}: {:?}", ex.skipped);
        for (l, w) in ex.layers.iter().zip(want.as_array().unwrap()) {
            let ours = l.weights_oihw();
            let theirs: Vec<f64> = w["weight"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(ours.len(), theirs.len());
            let scale = theirs.iter().fold(0f64, |a, x| a.max(x.abs()));
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    (f64::from(*a) - b).abs() <= 2f64.powi(-23) * scale,
                    "{file} {}: {a} vs f64 weight norm {b}",
                    l.name
                );
            }
            // torch's own f32 computation agrees to rounding
            assert!(w["torch_f32_max_abs_diff"].as_f64().unwrap() < 1e-6);
        }
        let r = analyse_file_with(
            &ckpt_file(file),
            KernelSelect::DEFAULT,
            &ReadOptions::default(),
        )
        .unwrap();
        for (l, w) in r.layers.iter().zip(want.as_array().unwrap()) {
            let m = &w["metrics"];
            let what = format!("{file} {}", l.name);
            assert_close(
                &format!("{what} layer_norm"),
                l.layer_norm,
                &m["layer_norm"],
            );
            assert_eq!(
                l.sparse_filters as u64,
                m["layer_sparse_filters"].as_u64().unwrap(),
                "{what}"
            );
            assert_close(
                &format!("{what} entropy"),
                l.variance_entropy,
                &m["entropy"],
            );
            assert_close(&format!("{what} ortho"), l.orthogonality, &m["ortho"]);
        }
    }
}

#[test]
fn tied_weights_are_counted_once() {
    let ck = read_with(&ckpt_file("tied.pt"), &ReadOptions::default()).unwrap();
    // both names are in the state dict, pointing at one storage
    assert!(ck.tensor("features.3.weight").is_some() && ck.tensor("features.6.weight").is_some());
    let ex = extract(&ck);
    let s = ex
        .skipped
        .iter()
        .find(|s| s.name == "features.6.weight")
        .expect("the tied copy is listed as skipped");
    assert!(
        s.reason.contains("tied") && s.reason.contains("`features.3.weight`"),
        "{}",
        s.reason
    );
    assert_eq!(ex.layers.len(), 4);
}

#[test]
fn wrapper_prefixes_are_removed_and_batchnorm_is_found() {
    for (file, prefix) in [
        ("dataparallel.pt", "module."),
        ("compiled.pt", "_orig_mod."),
        ("compiled_dataparallel.pt", "module._orig_mod."),
        ("lightning.ckpt", "model."),
    ] {
        let ck = read_with(&ckpt_file(file), &ReadOptions::default()).unwrap();
        assert!(
            ck.notes
                .iter()
                .any(|n| n.contains(&format!("the `{prefix}` prefix"))),
            "{file}: {:?}",
            ck.notes
        );
        let stem = StemModel::load(&ckpt_file(file), &LoadOptions::default()).unwrap();
        assert_eq!(stem.info.layer, "features.0", "{file}");
        assert_eq!(
            stem.info.batch_norm.as_deref(),
            Some("features.1"),
            "{file}: {}",
            stem.info.batch_norm_rule
        );
    }
    // the weight-normalised stem also finds its BatchNorm by name
    for file in ["weight_norm.pt", "weight_norm_parametrizations.pt"] {
        let stem = StemModel::load(&ckpt_file(file), &LoadOptions::default()).unwrap();
        assert_eq!(stem.info.layer, "features.0", "{file}");
        assert_eq!(
            stem.info.batch_norm.as_deref(),
            Some("features.1"),
            "{file}"
        );
    }
    // and an EMA copy can be the stem
    let ema = StemModel::load(
        &ckpt_file("model_ema.pt"),
        &LoadOptions {
            entry: Some("model_ema".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let plain = StemModel::load(&ckpt_file("model_ema.pt"), &LoadOptions::default()).unwrap();
    assert_ne!(ema.weights(), plain.weights());
}

#[test]
fn db_build_reads_the_entry_column() {
    let zoo = std::env::temp_dir().join(format!("convlens-entry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&zoo);
    std::fs::create_dir_all(&zoo).unwrap();
    for n in ["plain", "ema"] {
        std::fs::copy(ckpt_file("model_ema.pt"), zoo.join(format!("{n}.pt"))).unwrap();
    }
    std::fs::write(zoo.join("meta.csv"), "Name,Entry\nplain,\nema,model_ema\n").unwrap();
    let out = zoo.join("db");
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        ..Default::default()
    };
    build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    let db = Db::open(&out).unwrap();
    let entry = |name: &str| {
        db.models
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.entry.clone())
    };
    assert_eq!(entry("plain").as_deref(), Some("model"));
    assert_eq!(entry("ema").as_deref(), Some("model_ema"));
    let t = truth();
    let l2 = |name: &str| -> f64 {
        let m = db.models.iter().find(|m| m.name == name).unwrap();
        m.layers[0].l2_norm
    };
    let want = |entry: &str| {
        let f = &t["files"]["model_ema.pt"];
        let layers = if entry == "model" {
            &f["layers"]
        } else {
            &f["other_entries"][entry]
        };
        layers[0]["sumsq"].as_f64().unwrap().sqrt()
    };
    assert!((l2("plain") - want("model")).abs() <= 1e-6 * want("model"));
    assert!((l2("ema") - want("model_ema")).abs() <= 1e-6 * want("model_ema"));
    // changing the Entry cell re-reads the file
    std::fs::write(
        zoo.join("meta.csv"),
        "Name,Entry\nplain,model_ema\nema,model_ema\n",
    )
    .unwrap();
    build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    let db = Db::open(&out).unwrap();
    let m = db.models.iter().find(|m| m.name == "plain").unwrap();
    assert_eq!(m.entry.as_deref(), Some("model_ema"));
    let _ = std::fs::remove_dir_all(&zoo);
}
