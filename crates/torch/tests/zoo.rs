//! The resnet20 zoo in every torch flavour against the same model's safetensors, and the
//! whole pickled PreAct ResNet-18 module against its architecture twin.

mod common;
use common::*;
use convlens_core::Format;

/// Asserts that the 4-D tensors of `ck` are those of the safetensors file: same names, same
/// order, same shapes, bit-identical values.
fn assert_4d_match(label: &str, ck: &convlens_core::Checkpoint, st_rel: &str) {
    let st: Vec<StTensor> = safetensors_f32(&fixture(st_rel))
        .into_iter()
        .filter(|t| t.shape.len() == 4)
        .collect();
    let ours = four_d(ck);
    let names: Vec<&str> = ours.iter().map(|t| t.name.as_str()).collect();
    let st_names: Vec<&str> = st.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, st_names, "{label}: 4-D tensor names/order");
    assert_eq!(
        names.len(),
        21,
        "{label}: resnet20 has 19 3x3 convs + 2 shortcuts"
    );
    for (a, b) in ours.iter().zip(&st) {
        assert_eq!(
            a.tensor.shape(),
            &b.shape[..],
            "{label}: shape of {}",
            a.name
        );
        let va = a.tensor.to_f32();
        assert_eq!(va.len(), b.values.len());
        let same = va
            .iter()
            .zip(&b.values)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{label}: values of {} differ from the safetensors",
            a.name
        );
    }
}

#[test]
fn zip_state_dicts_match_safetensors() {
    for m in [
        "resnet20_normal_s0",
        "resnet20_normal_s1",
        "resnet20_robust_s0",
        "resnet20_robust_s1",
    ] {
        let ck = read_fixture(&format!("zoo/cifar10-mini/{m}.pt"));
        assert_eq!(ck.format, Format::TorchZip);
        assert_eq!(ck.tensors.len(), 128, "{m}: every state-dict entry");
        assert_eq!(ck.order_source, "pickle order (no graph)");
        assert!(ck.notes.is_empty(), "{m}: {:?}", ck.notes);
        assert_4d_match(m, &ck, &format!("zoo/cifar10-mini/{m}.safetensors"));
        // tensors point into the archive buffer (no copy): one shared owner
        let first = &ck.tensors[0].tensor;
        assert_eq!(first.storage().len(), 16 * 3 * 3 * 3 * 4);
    }
}

#[test]
fn lightning_checkpoint_descends_into_state_dict_and_strips_prefix() {
    let ck = read_fixture("zoo/cifar10-mini/resnet20_normal_s0.ckpt");
    assert_eq!(ck.format, Format::TorchZip);
    // only the model: the optimizer state (momentum buffers) is not reported
    assert_eq!(ck.tensors.len(), 128);
    assert!(ck.tensors.iter().all(|t| !t.name.starts_with("model.")));
    assert!(
        ck.notes.iter().any(|n| n.contains("`state_dict`")),
        "{:?}",
        ck.notes
    );
    assert!(
        ck.notes.iter().any(|n| n.contains("`model.` prefix")),
        "{:?}",
        ck.notes
    );
    assert_4d_match(
        "ckpt",
        &ck,
        "zoo/cifar10-mini/resnet20_normal_s0.safetensors",
    );
}

#[test]
fn legacy_stream_matches_safetensors() {
    let ck = read_fixture("zoo/cifar10-mini/resnet20_robust_s0.legacy.pt");
    assert_eq!(ck.format, Format::TorchLegacy);
    assert_eq!(ck.tensors.len(), 128);
    assert_4d_match(
        "legacy",
        &ck,
        "zoo/cifar10-mini/resnet20_robust_s0.safetensors",
    );
}

#[test]
fn torchscript_matches_safetensors_and_state_dict_order() {
    let ck = read_fixture("zoo/cifar10-mini/resnet20_robust_s0.torchscript.pt");
    assert_eq!(ck.format, Format::TorchScript);
    assert!(
        ck.notes[0].starts_with(
            "pickled objects read as inert data (their code is never run): `__torch__.models.ResNetCifar`"
        ),
        "{:?}",
        ck.notes
    );
    assert_4d_match(
        "torchscript",
        &ck,
        "zoo/cifar10-mini/resnet20_robust_s0.safetensors",
    );
    // every tensor, in the order of the state dict saved with torch.save
    let sd = read_fixture("zoo/cifar10-mini/resnet20_robust_s0.pt");
    let a: Vec<(&str, &[usize])> = ck
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.tensor.shape()))
        .collect();
    let b: Vec<(&str, &[usize])> = sd
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.tensor.shape()))
        .collect();
    assert_eq!(a, b);
    for (x, y) in ck.tensors.iter().zip(&sd.tensors) {
        assert_eq!(x.tensor.dtype(), y.tensor.dtype(), "{}", x.name);
        assert_eq!(x.tensor.to_f64(), y.tensor.to_f64(), "{}", x.name);
    }
}

#[test]
fn all_variants_agree_on_non_conv_tensors() {
    // BatchNorm statistics, biases and num_batches_tracked are read identically in every flavour
    let zip = read_fixture("zoo/cifar10-mini/resnet20_robust_s0.pt");
    let legacy = read_fixture("zoo/cifar10-mini/resnet20_robust_s0.legacy.pt");
    for (x, y) in zip.tensors.iter().zip(&legacy.tensors) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.tensor.dtype(), y.tensor.dtype());
        assert_eq!(x.tensor.to_f64(), y.tensor.to_f64(), "{}", x.name);
    }
    let nbt = zip.tensor("bn1.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype(), convlens_core::DType::I64);
    assert!(nbt.shape().is_empty());
    assert!(nbt.to_f64()[0] > 0.0);
    let st = safetensors_f32(&fixture("zoo/cifar10-mini/resnet20_robust_s0.safetensors"));
    let rv = st
        .iter()
        .find(|t| t.name == "layers.4.bn2.running_var")
        .unwrap();
    assert_eq!(
        zip.tensor("layers.4.bn2.running_var").unwrap().to_f32(),
        rv.values
    );
}

#[test]
fn pickled_module_matches_its_architecture_twin() {
    let Some(module) = shared("zoo/cifar10-mini/preactresnet18_w32_robust_s0.module.pt") else {
        return;
    };
    let Some(twin) = shared("zoo/cifar10-mini/preactresnet18_w32_normal_s0.safetensors") else {
        return;
    };
    let ck = read_path(&module);
    assert_eq!(ck.format, Format::TorchZip);
    // the class `models.PreActResNet18` is not installed anywhere: it is read as data
    assert!(
        ck.notes
            .iter()
            .any(|n| n.contains("`models.PreActResNet18`")),
        "{:?}",
        ck.notes
    );
    let st = safetensors_f32(&twin);
    // the safetensors file also holds the i64 num_batches_tracked buffers
    assert_eq!(ck.tensors.len(), 107);
    let mut ours: Vec<(String, Vec<usize>)> = ck
        .tensors
        .iter()
        .filter(|t| t.tensor.dtype() == convlens_core::DType::F32)
        .map(|t| (t.name.clone(), t.tensor.shape().to_vec()))
        .collect();
    let theirs: Vec<(String, Vec<usize>)> = st
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    // 4-D tensors: same names, shapes and order
    let o4: Vec<_> = ours.iter().filter(|t| t.1.len() == 4).cloned().collect();
    let t4: Vec<_> = theirs.iter().filter(|t| t.1.len() == 4).cloned().collect();
    assert_eq!(o4, t4);
    assert_eq!(o4.first().map(|t| t.0.as_str()), Some("conv1.weight"));
    // all tensors: the same set of names and shapes
    ours.sort_by_key(|t| natural_key(&t.0));
    assert_eq!(ours, theirs);
    // the robust model's weights are not the normal twin's
    let w = ck.tensor("conv1.weight").unwrap().to_f32();
    assert_ne!(w, st[0].values);
}
