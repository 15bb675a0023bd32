//! Which tensors of a training checkpoint are the model: real `torch.save` files
//! (`fixtures/checkpoints`, made by `make_checkpoints.py`) and hand-built hostile trees.

mod common;
use common::builder::*;
use common::fixture;
use convlens_core::{Blob, Checkpoint};
use convlens_torch::{read, read_with, ReadOptions, TorchError, META_ENTRIES, META_ENTRY};
use zip::CompressionMethod;

fn meta<'a>(c: &'a Checkpoint, key: &str) -> Option<&'a str> {
    c.metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn read_ckpt(name: &str, entry: Option<&str>) -> Result<Checkpoint, Box<TorchError>> {
    let bytes = std::fs::read(fixture(&format!("checkpoints/{name}"))).unwrap();
    read_with(
        Blob::from_vec(bytes),
        &ReadOptions {
            entry: entry.map(str::to_string),
        },
    )
    .map_err(Box::new)
}

/// The state-dict keys of the fixtures' tiny model: 5 convs, 5 BatchNorms (5 tensors each),
/// the linear head.
fn tiny_keys() -> Vec<String> {
    let mut k = Vec::new();
    for i in [0, 3, 6, 9, 12] {
        k.push(format!("features.{i}.weight"));
        for t in [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked",
        ] {
            k.push(format!("features.{}.{t}", i + 1));
        }
    }
    k.push("fc.weight".into());
    k.push("fc.bias".into());
    k
}

fn names(c: &Checkpoint) -> Vec<String> {
    c.tensors.iter().map(|t| t.name.clone()).collect()
}

#[test]
fn training_checkpoints_give_the_model_state_dict_only() {
    for (file, entry, entries) in [
        ("cifar_adam.pt", "net", "net"),
        ("cifar_adam_legacy.pt", "net", "net"),
        ("cifar_sgd.pt", "net", "net"),
        ("scheduler_scaler.pth", "model", "model"),
        ("model_ema.pt", "model", "model\nmodel_ema"),
        ("dataparallel.pt", "state_dict", "state_dict"),
        ("compiled.pt", "", ""),
        ("compiled_dataparallel.pt", "model", "model"),
        (
            "lightning.ckpt",
            "state_dict",
            "state_dict\ncallbacks.EMACallback.ema_state_dict",
        ),
        ("whole_objects.pt", "model", "model"),
        // the averaged copy comes first in the file, the trained model is still the default
        ("swa.pt", "state_dict", "state_dict\nswa_state_dict"),
    ] {
        let c = read_ckpt(file, None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(names(&c), tiny_keys(), "{file}");
        assert_eq!(meta(&c, META_ENTRY), Some(entry), "{file}");
        assert_eq!(meta(&c, META_ENTRIES), Some(entries), "{file}");
    }
}

#[test]
fn other_models_are_chosen_by_entry() {
    let c = read_ckpt("model_ema.pt", Some("model_ema")).unwrap();
    assert_eq!(names(&c), tiny_keys());
    assert_eq!(meta(&c, META_ENTRY), Some("model_ema"));
    // AveragedModel: `module.` removed although the 0-d `n_averaged` does not have it
    let c = read_ckpt("swa.pt", Some("swa_state_dict")).unwrap();
    let mut want = vec!["n_averaged".to_string()];
    want.extend(tiny_keys());
    assert_eq!(names(&c), want);
    let d = read_ckpt("gan.pt", Some("D")).unwrap();
    assert_eq!(
        names(&d),
        ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    );
    let g = read_ckpt("gan.pt", None).unwrap();
    assert_eq!(meta(&g, META_ENTRY), Some("G"));
    assert_eq!(g.tensors.len(), 6);
    assert_eq!(g.tensors[0].tensor.shape(), [8, 8, 3, 3]);
    let e = read_ckpt("gan.pt", Some("optG")).unwrap_err();
    assert!(matches!(*e, TorchError::NoEntry { .. }), "{e}");
    assert!(e.to_string().contains("`G`, `D`"), "{e}");
}

#[test]
fn an_optimizer_state_alone_gives_no_tensors() {
    let c = read_ckpt("optimizer_only.pt", None).unwrap();
    assert!(c.tensors.is_empty());
    assert_eq!(meta(&c, META_ENTRY), None);
}

/// A zip whose pickle is `{'w': <4-D f32 tensor>, 'opt': {'state': {0: {'exp_avg': <same
/// shape>}}, 'param_groups': [{}]}}` when `nested`, else with `opt` beside the model entry.
fn model_and_optimizer(nested: bool) -> Vec<u8> {
    let mut p = Pk::new();
    p.op(b'}').mark();
    if nested {
        p.str("w")
            .tensor_v2("FloatStorage", "0", 4, 0, &[1, 1, 2, 2], &[4, 4, 2, 1]);
    } else {
        p.str("model").op(b'}').mark().str("w").tensor_v2(
            "FloatStorage",
            "0",
            4,
            0,
            &[1, 1, 2, 2],
            &[4, 4, 2, 1],
        );
        p.op(b'u');
    }
    p.str("opt").op(b'}').mark().str("state").op(b'}').int(0);
    p.op(b'}')
        .str("exp_avg")
        .tensor_v2("FloatStorage", "1", 4, 0, &[1, 1, 2, 2], &[4, 4, 2, 1])
        .op(b's');
    p.op(b's'); // state[0] = {...}
    p.str("param_groups").op(b']').op(b'}').op(b'a');
    p.op(b'u'); // opt = {...}
    p.op(b'u');
    let pkl = p.stop();
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    torch_zip(
        "m",
        &pkl,
        &[("0", data.clone()), ("1", data)],
        &[],
        CompressionMethod::Stored,
    )
}

#[test]
fn optimizer_states_are_never_read() {
    // beside the model
    let c = read(Blob::from_vec(model_and_optimizer(false))).unwrap();
    assert_eq!(names(&c), ["w"]);
    assert_eq!(meta(&c, META_ENTRY), Some("model"));
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("optimizer state not read") && n.contains("`opt`")),
        "{:?}",
        c.notes
    );
    // inside the model entry itself (a state dict with an optimizer state in it)
    let c = read(Blob::from_vec(model_and_optimizer(true))).unwrap();
    assert_eq!(names(&c), ["w"]);
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("1 optimizer state(s) inside the model entry")),
        "{:?}",
        c.notes
    );
}

#[test]
fn a_dict_containing_itself_ends() {
    // d = {}; d['a'] = d; d['b'] = [d, d]
    let mut p = Pk::new();
    p.op(b'}').raw(b"q\x00");
    p.str("a").raw(b"h\x00").op(b's');
    p.str("b")
        .op(b']')
        .mark()
        .raw(b"h\x00h\x00")
        .op(b'e')
        .op(b's');
    let c = read(Blob::from_vec(p.stop())).unwrap();
    assert!(c.tensors.is_empty());
    assert_eq!(meta(&c, META_ENTRY), None);
}

#[test]
fn deeply_nested_dicts_hit_the_depth_limit() {
    // {'a': {'a': ... 100k levels ... }}
    let mut p = Pk::new();
    for _ in 0..100_000 {
        p.op(b'}').str("a");
    }
    p.op(b'}');
    for _ in 0..100_000 {
        p.op(b's');
    }
    let e = read(Blob::from_vec(p.stop())).unwrap_err();
    assert!(matches!(e, TorchError::Limit(_)), "{e}");
    assert!(e.to_string().contains("nested deeper than 1000"), "{e}");
}

#[test]
fn many_candidates_are_listed_and_bounded() {
    // 10 000 state dicts sharing one storage: all candidates, the first is read
    let mut p = Pk::new();
    p.op(b'}').mark();
    for i in 0..10_000 {
        p.str(&format!("m{i}")).op(b'}').str("w").tensor_v2(
            "FloatStorage",
            "0",
            4,
            0,
            &[1, 1, 2, 2],
            &[4, 4, 2, 1],
        );
        p.op(b's');
    }
    p.op(b'u');
    let pkl = p.stop();
    let z = torch_zip(
        "m",
        &pkl,
        &[("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0]))],
        &[],
        CompressionMethod::Stored,
    );
    let c = read(Blob::from_vec(z.clone())).unwrap();
    assert_eq!(names(&c), ["w"]);
    assert_eq!(meta(&c, META_ENTRY), Some("m0"));
    assert_eq!(meta(&c, META_ENTRIES).unwrap().lines().count(), 10_000);
    let c = read_with(
        Blob::from_vec(z),
        &ReadOptions {
            entry: Some("m9999".into()),
        },
    )
    .unwrap();
    assert_eq!(meta(&c, META_ENTRY), Some("m9999"));
}

#[test]
fn candidates_sharing_a_large_subtree_share_one_work_budget() {
    // 1000 state dicts {'w': tensor, 'big': L}, all with the same list L of 10 000 dicts:
    // counting each candidate's tensors separately would visit 10 million containers
    let mut p = Pk::new();
    p.op(b'}').mark();
    for i in 0..1000 {
        p.str(&format!("m{i}")).op(b'}').mark().str("w").tensor_v2(
            "FloatStorage",
            "0",
            4,
            0,
            &[1, 1, 2, 2],
            &[4, 4, 2, 1],
        );
        p.str("big");
        if i == 0 {
            p.op(b']').mark();
            for _ in 0..10_000 {
                p.op(b'}');
            }
            p.op(b'e').raw(b"r\x00\x00\x00\x00");
        } else {
            p.raw(b"j\x00\x00\x00\x00");
        }
        p.op(b'u');
    }
    p.op(b'u');
    let z = torch_zip(
        "m",
        &p.stop(),
        &[("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0]))],
        &[],
        CompressionMethod::Stored,
    );
    let start = std::time::Instant::now();
    let e = read(Blob::from_vec(z)).unwrap_err();
    assert!(matches!(e, TorchError::Limit(_)), "{e}");
    assert!(e.to_string().contains("containers"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}
