//! The same model in every format gives the same conv weights; half-precision copies give the
//! fp32 weights rounded; ONNX exports give BatchNorm-folded weights.

mod common;

use common::*;
use convlens::extract::{extract, ConvLayer, KernelSelect};
use convlens::quality::analyse_file;
use convlens::read::read;
use half::{bf16, f16};

fn conv_layers(file: &str) -> Option<Vec<ConvLayer>> {
    let p = zoo_file(file)?;
    let ckpt = read(&p).unwrap_or_else(|e| panic!("{e}"));
    Some(extract(&ckpt).layers)
}

fn assert_same_weights(reference: &str, other: &str) {
    let (Some(a), Some(b)) = (conv_layers(reference), conv_layers(other)) else {
        return;
    };
    assert_eq!(a.len(), b.len(), "{other}: layer count");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name, "{other}");
        assert_eq!(x.shape, y.shape, "{other}: {}", x.name);
        assert_eq!(x.depth, y.depth, "{other}: {}", x.name);
        let (wa, wb) = (x.filters(), y.filters());
        assert!(
            wa.iter().zip(&wb).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{other}: {} differs",
            x.name
        );
    }
}

#[test]
fn every_torch_flavour_equals_safetensors() {
    for other in [
        "resnet20_robust_s0.pt",
        "resnet20_robust_s0.legacy.pt",
        "resnet20_robust_s0.torchscript.pt",
    ] {
        assert_same_weights("resnet20_robust_s0.safetensors", other);
    }
    assert_same_weights("resnet20_normal_s0.safetensors", "resnet20_normal_s0.ckpt");
    assert_same_weights("resnet20_normal_s0.safetensors", "resnet20_normal_s0.pt");
    assert_same_weights("resnet20_normal_s1.safetensors", "resnet20_normal_s1.pt");
    assert_same_weights("resnet20_robust_s1.safetensors", "resnet20_robust_s1.pt");
}

#[test]
fn npz_equals_safetensors() {
    assert_same_weights(
        "mobilenetv2_x0_5_normal_s0.safetensors",
        "mobilenetv2_x0_5_normal_s0.npz",
    );
}

#[test]
fn pickled_module_equals_its_state_dict_shapes() {
    // only the robust preactresnet18 exists as a whole pickled module; its ONNX twin is folded,
    // so compare layer names/shapes with the normal model's state dict and weights via metrics
    let (Some(a), Some(b)) = (
        conv_layers("preactresnet18_w32_normal_s0.safetensors"),
        conv_layers("preactresnet18_w32_robust_s0.module.pt"),
    ) else {
        return;
    };
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.name, x.shape), (&y.name, y.shape));
    }
}

#[test]
fn half_precision_copies_are_the_fp32_weights_rounded() {
    let Some(full) = conv_layers("wrn16_2_robust_s0.safetensors") else {
        return;
    };
    for (file, round) in [
        (
            "wrn16_2_robust_s0.fp16.safetensors",
            (|x: f32| f16::from_f32(x).to_f32()) as fn(f32) -> f32,
        ),
        ("wrn16_2_robust_s0.bf16.safetensors", |x: f32| {
            bf16::from_f32(x).to_f32()
        }),
    ] {
        let half = conv_layers(file).unwrap();
        assert_eq!(half.len(), full.len());
        for (a, b) in full.iter().zip(&half) {
            assert_eq!(a.name, b.name);
            let (wa, wb) = (a.filters(), b.filters());
            assert!(
                wa.iter().zip(&wb).all(|(x, y)| round(*x) == *y),
                "{file}: {}",
                a.name
            );
            assert!(
                wa.iter().zip(&wb).any(|(x, y)| x != y),
                "{file} is not rounded"
            );
        }
    }
}

/// ONNX exports fold BatchNorm into the conv: every output channel is the state-dict channel
/// times one factor. Entropy of the l∞-scaled filters and orthogonality of normalised rows are
/// invariant to that (for positive factors) as long as the same filters are sparse; sparsity,
/// being relative to the layer's max, is not: here the first layer gains a sparse filter.
#[test]
fn onnx_weights_are_batchnorm_folded() {
    let st = zoo_file("vgg11_w16_robust_s0.safetensors");
    let ox = zoo_file("vgg11_w16_robust_s0.onnx");
    let (Some(st), Some(ox)) = (st, ox) else {
        return;
    };
    let a = analyse_file(&st, KernelSelect::DEFAULT).unwrap();
    let b = analyse_file(&ox, KernelSelect::DEFAULT).unwrap();
    assert_eq!(a.layers.len(), b.layers.len());
    let la = extract(&read(&st).unwrap()).layers;
    let lb = extract(&read(&ox).unwrap()).layers;
    for ((ma, mb), (wa, wb)) in a.layers.iter().zip(&b.layers).zip(la.iter().zip(&lb)) {
        assert_eq!(ma.shape, mb.shape);
        // per-output-channel rescaling: w_onnx[o] = s_o · w[o]
        let (xa, xb) = (wa.weights_oihw(), wb.weights_oihw());
        let per = xa.len() / ma.out_channels;
        for o in 0..ma.out_channels {
            let (ca, cb) = (&xa[o * per..(o + 1) * per], &xb[o * per..(o + 1) * per]);
            let i = (0..per)
                .max_by(|&i, &j| ca[i].abs().total_cmp(&ca[j].abs()))
                .unwrap();
            let s = cb[i] as f64 / ca[i] as f64;
            for (p, q) in ca.iter().zip(cb) {
                let d = (*q as f64 - s * *p as f64).abs();
                assert!(
                    d <= 1e-5 * (cb[i] as f64).abs(),
                    "{}: channel {o} not a rescaling",
                    ma.name
                );
            }
        }
        let rel = |x: f64, y: f64| ((x - y) / y).abs();
        if ma.sparse_filters == mb.sparse_filters {
            assert!(
                rel(ma.variance_entropy, mb.variance_entropy) < 1e-5,
                "{}",
                ma.name
            );
        } else {
            // the entropy is taken over the non-sparse filters, so a filter that became
            // sparse through folding changes it
            assert!(
                rel(ma.variance_entropy, mb.variance_entropy) > 1e-4,
                "{}",
                ma.name
            );
        }
        assert!(
            rel(ma.orthogonality, mb.orthogonality) < 1e-5,
            "{}",
            ma.name
        );
        assert_ne!(ma.layer_norm, mb.layer_norm);
    }
    // ... but the sparse counts differ: 1 sparse filter in the state dict, 2 after folding
    let sa: usize = a.layers.iter().map(|l| l.sparse_filters).sum();
    let sb: usize = b.layers.iter().map(|l| l.sparse_filters).sum();
    assert_eq!((sa, sb), (1, 2));
}

#[test]
fn kernel_selection_picks_sizes() {
    let Some(p) = third_party_file("facenet-pytorch/onet.pt") else {
        return;
    };
    let all = analyse_file(&p, KernelSelect::All).unwrap();
    let two = analyse_file(&p, KernelSelect::Size(2, 2)).unwrap();
    let three = analyse_file(&p, KernelSelect::DEFAULT).unwrap();
    assert_eq!(all.layers.len(), two.layers.len() + three.layers.len());
    assert!(two.layers.iter().all(|l| l.kernel == [2, 2]));
    assert_eq!(two.layers.len(), 1);
    assert!(all.depth_groups.iter().any(|g| g.kernel == [2, 2]));
}
