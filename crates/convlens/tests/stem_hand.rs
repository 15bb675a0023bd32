//! Hand-built stems whose activations are derived by hand: a 1-channel stem (with and without
//! BatchNorm), a 5×5 stride-2 stem, an ONNX stem with asymmetric padding, and the refusals
//! when the first layer is not a plain convolution (tiny ONNX graphs encoded here).

use convlens::stem::{Batch, BnChoice, LoadOptions, StemError, StemModel};
use std::path::{Path, PathBuf};

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convlens-stem-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn forward(m: &StemModel, x: &[f32], c: usize, h: usize, w: usize) -> convlens::stem::Activations {
    m.forward(&Batch::new(x, 1, c, h, w).unwrap()).unwrap()
}

fn close(a: f32, b: f64) {
    assert!((f64::from(a) - b).abs() < 1e-6, "{a} vs {b}");
}

/// 4×4 grey image with x[i][j] = (4i + j) / 16.
fn ramp() -> Vec<f32> {
    (0..16).map(|v| v as f32 / 16.0).collect()
}

fn one_channel(dir: &Path, bn: bool) -> PathBuf {
    // filter 0: centre tap 1 (identity), bias 0.25; filter 1: all ones (box sum), bias -1
    let mut w = vec![0.0f32; 18];
    w[4] = 1.0;
    w[9..].fill(1.0);
    let mut t = vec![
        ("conv1.weight", vec![2, 1, 3, 3], w),
        ("conv1.bias", vec![2], vec![0.25, -1.0]),
    ];
    if bn {
        // scale 2 / sqrt(0.99999 + 1e-5) = 2 on channel 0; identity on channel 1
        t.push(("bn1.weight", vec![2], vec![2.0, 1.0]));
        t.push(("bn1.bias", vec![2], vec![0.5, 0.0]));
        t.push(("bn1.running_mean", vec![2], vec![0.1, 0.0]));
        t.push(("bn1.running_var", vec![2], vec![0.99999, 0.99999]));
    }
    let p = dir.join(if bn {
        "gray_bn.safetensors"
    } else {
        "gray.safetensors"
    });
    write_safetensors(&p, &t);
    p
}

#[test]
fn one_channel_stem_matches_hand_computation() {
    let dir = temp("gray");
    let m = StemModel::load(&one_channel(&dir, false), &LoadOptions::default()).unwrap();
    assert_eq!((m.info.in_channels, m.info.out_channels), (1, 2));
    assert_eq!(m.info.batch_norm, None);
    assert!(m.info.geometry.contains("assumed"), "{}", m.info.geometry);
    let a = forward(&m, &ramp(), 1, 4, 4);
    assert_eq!((a.channels, a.h, a.w), (2, 4, 4));
    // channel 0: x + 0.25
    close(a.pre[0], 0.25);
    close(a.pre[5], 5.0 / 16.0 + 0.25);
    // channel 1: zero-padded 3×3 box sum − 1
    close(a.pre[16], 10.0 / 16.0 - 1.0); // (0,0): x00+x01+x10+x11
    close(a.post[16], 0.0);
    close(a.pre[16 + 5], 45.0 / 16.0 - 1.0); // (1,1)
    close(a.pre[16 + 15], 50.0 / 16.0 - 1.0); // (3,3)
    close(a.post[16 + 15], 50.0 / 16.0 - 1.0);
    let s = m.filter_shapes(0.9);
    assert_eq!(s[0].centre_share, Some(1.0));
    assert!((s[1].centre_share.unwrap() - 1.0 / 9.0).abs() < 1e-12);
    // cos(identity, box) = 1 / (1 · 3)
    assert!((s[0].max_similarity.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(s[0].most_similar, Some(1));
    assert_eq!(s[0].near_duplicates, 0);
}

#[test]
fn one_channel_stem_folds_its_batch_norm() {
    let dir = temp("graybn");
    let m = StemModel::load(&one_channel(&dir, true), &LoadOptions::default()).unwrap();
    assert_eq!(m.info.batch_norm.as_deref(), Some("bn1"));
    let a = forward(&m, &ramp(), 1, 4, 4);
    // channel 0: 2 · (x + 0.25 − 0.1) + 0.5
    close(a.pre[0], 2.0 * 0.15 + 0.5);
    close(a.pre[7], 2.0 * (7.0 / 16.0 + 0.15) + 0.5);
    // channel 1 unchanged
    close(a.pre[16 + 5], 45.0 / 16.0 - 1.0);
    // turned off, or named explicitly
    let off = StemModel::load(
        &dir.join("gray_bn.safetensors"),
        &LoadOptions {
            bn: BnChoice::Off,
            ..Default::default()
        },
    )
    .unwrap();
    close(forward(&off, &ramp(), 1, 4, 4).pre[0], 0.25);
    let err = StemModel::load(
        &dir.join("gray_bn.safetensors"),
        &LoadOptions {
            bn: BnChoice::Named("bn9".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, StemError::BatchNorm { .. }) && err.to_string().contains("bn9.running_mean"),
        "{err}"
    );
}

#[test]
fn five_by_five_stride_two_padding_two() {
    let dir = temp("k5");
    // taps (0,0) = 1 and (4,4) = 2: out[oy][ox] = x[2oy−2][2ox−2] + 2·x[2oy+2][2ox+2]
    let mut w = vec![0.0f32; 25];
    w[0] = 1.0;
    w[24] = 2.0;
    let p = dir.join("k5.safetensors");
    write_safetensors(&p, &[("stem.weight", vec![1, 1, 5, 5], w)]);
    let x: Vec<f32> = (1..=25).map(|v| v as f32).collect(); // x[i][j] = 5i + j + 1
    let m = StemModel::load(
        &p,
        &LoadOptions {
            stride: Some(2),
            padding: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        m.info.geometry.starts_with("options"),
        "{}",
        m.info.geometry
    );
    let a = forward(&m, &x, 1, 5, 5);
    assert_eq!((a.h, a.w), (3, 3));
    let expect = [
        26.0,
        2.0 * 15.0,
        0.0,
        2.0 * 23.0,
        1.0 + 2.0 * 25.0,
        3.0,
        0.0,
        11.0,
        13.0,
    ];
    for (got, want) in a.pre.iter().zip(expect) {
        close(*got, want);
    }
    // defaults without a graph: stride 1, padding k/2 = 2 → same size
    let d = StemModel::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!((d.info.stride, d.info.pads), ([1, 1], [2, 2, 2, 2]));
    let b = forward(&d, &x, 1, 5, 5);
    assert_eq!((b.h, b.w), (5, 5));
    close(b.pre[0], 2.0 * 13.0); // (0,0): x[-2][-2] + 2·x[2][2]
}

// --- tiny ONNX models, encoded by hand (protobuf wire format) ---

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field_len(f: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(f << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn field_varint(f: u64, v: u64, out: &mut Vec<u8>) {
    varint(f << 3, out);
    varint(v, out);
}

fn tensor(name: &str, dims: &[usize], values: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        field_varint(1, d as u64, &mut t);
    }
    field_varint(2, 1, &mut t); // FLOAT
    field_len(8, name.as_bytes(), &mut t);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    field_len(9, &raw, &mut t);
    t
}

enum Attr {
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        field_len(1, i.as_bytes(), &mut n);
    }
    for o in outputs {
        field_len(2, o.as_bytes(), &mut n);
    }
    field_len(3, name.as_bytes(), &mut n);
    field_len(4, op.as_bytes(), &mut n);
    for a in attrs {
        let mut b = Vec::new();
        match a {
            Attr::Ints(k, v) => {
                field_len(1, k.as_bytes(), &mut b);
                for &x in v {
                    field_varint(8, x as u64, &mut b);
                }
                field_varint(20, 7, &mut b);
            }
            Attr::Float(k, v) => {
                field_len(1, k.as_bytes(), &mut b);
                varint(2 << 3 | 5, &mut b);
                b.extend_from_slice(&v.to_le_bytes());
                field_varint(20, 1, &mut b);
            }
        }
        field_len(5, &b, &mut n);
    }
    n
}

fn model(nodes: &[Vec<u8>], inits: &[Vec<u8>], input: &str) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        field_len(1, n, &mut g);
    }
    field_len(2, b"g", &mut g);
    for t in inits {
        field_len(5, t, &mut g);
    }
    let mut vi = Vec::new();
    field_len(1, input.as_bytes(), &mut vi);
    field_len(11, &vi, &mut g);
    let mut m = Vec::new();
    field_varint(1, 8, &mut m);
    let mut op = Vec::new();
    field_varint(2, 17, &mut op);
    field_len(8, &op, &mut m);
    field_len(7, &g, &mut m);
    m
}

fn save(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn onnx_stem_with_stride_and_asymmetric_padding() {
    let dir = temp("onnxgeo");
    // 2×2 kernel of ones, strides [2, 1], pads [top 1, left 0, bottom 0, right 1]
    let m = model(
        &[
            node(
                "Conv",
                "stem",
                &["input", "w", "b"],
                &["z"],
                &[
                    Attr::Ints("strides", vec![2, 1]),
                    Attr::Ints("pads", vec![1, 0, 0, 1]),
                ],
            ),
            node("Relu", "act", &["z"], &["y"], &[]),
        ],
        &[
            tensor("w", &[1, 1, 2, 2], &[1.0; 4]),
            tensor("b", &[1], &[-3.0]),
        ],
        "input",
    );
    let s = StemModel::load(&save(&dir, "geo.onnx", m), &LoadOptions::default()).unwrap();
    assert_eq!(s.info.layer, "stem");
    assert_eq!(s.info.stride, [2, 1]);
    assert_eq!(s.info.pads, [1, 0, 0, 1]);
    assert_eq!(s.info.followed_by.as_deref(), Some("Relu"));
    // input 3×3, x[i][j] = 3i + j: padded to 4×4 (a zero row on top, a zero column on the
    // right); out h = (4 − 2) / 2 + 1 = 2, w = (4 − 2) / 1 + 1 = 3
    let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let a = forward(&s, &x, 1, 3, 3);
    assert_eq!((a.h, a.w), (2, 3));
    // row 0 covers the zero row and input row 0; row 1 covers input rows 1 and 2
    let want = [
        0.0 + 1.0 - 3.0,
        1.0 + 2.0 - 3.0,
        2.0 - 3.0,
        3.0 + 4.0 + 6.0 + 7.0 - 3.0,
        4.0 + 5.0 + 7.0 + 8.0 - 3.0,
        5.0 + 8.0 - 3.0,
    ];
    for (g, w) in a.pre.iter().zip(want) {
        close(*g, w);
    }
    assert_eq!(a.post[0], 0.0);
}

#[test]
fn onnx_batch_norm_node_after_the_stem_is_folded() {
    let dir = temp("onnxbn");
    let m = model(
        &[
            node("Conv", "stem", &["input", "w"], &["z"], &[]),
            node(
                "BatchNormalization",
                "bn",
                &["z", "g", "beta", "mu", "var"],
                &["zb"],
                &[Attr::Float("epsilon", 0.5)],
            ),
            node("Relu", "act", &["zb"], &["y"], &[]),
            node("Add", "skip", &["z", "y"], &["out"], &[]),
        ],
        &[
            tensor("w", &[1, 1, 1, 1], &[2.0]),
            tensor("g", &[1], &[3.0]),
            tensor("beta", &[1], &[1.0]),
            tensor("mu", &[1], &[0.5]),
            tensor("var", &[1], &[3.5]),
        ],
        "input",
    );
    let s = StemModel::load(&save(&dir, "bn.onnx", m), &LoadOptions::default()).unwrap();
    assert_eq!(s.info.batch_norm.as_deref(), Some("bn"));
    assert_eq!(s.info.followed_by.as_deref(), Some("Relu"));
    assert!(
        s.info.notes.iter().any(|n| n.contains("Add")),
        "{:?}",
        s.info.notes
    );
    // (2x − 0.5) · 3 / sqrt(3.5 + 0.5) + 1 = 3x + 0.25
    let a = forward(&s, &[1.0, -1.0], 1, 1, 2);
    close(a.pre[0], 3.25);
    close(a.pre[1], -2.75);
    assert_eq!(a.post[1], 0.0);
}

fn refusal(nodes: &[Vec<u8>], inits: &[Vec<u8>], tag: &str) -> String {
    let dir = temp(tag);
    let p = save(&dir, "m.onnx", model(nodes, inits, "input"));
    match StemModel::load(&p, &LoadOptions::default()) {
        Err(e @ StemError::NotPlainConv(_)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn refuses_a_model_whose_first_op_is_max_pool() {
    let msg = refusal(
        &[
            node(
                "MaxPool",
                "pool0",
                &["input"],
                &["p"],
                &[Attr::Ints("kernel_shape", vec![2, 2])],
            ),
            node("Conv", "conv", &["p", "w"], &["z"], &[]),
        ],
        &[tensor("w", &[1, 1, 1, 1], &[1.0])],
        "maxpool",
    );
    assert!(msg.contains("MaxPool (\"pool0\")"), "{msg}");
    assert!(msg.contains("not by a convolution"), "{msg}");
}

#[test]
fn refuses_a_model_that_normalises_in_the_graph() {
    let msg = refusal(
        &[
            node("Sub", "minus_mean", &["input", "mean"], &["c"], &[]),
            node("Conv", "conv", &["c", "w"], &["z"], &[]),
        ],
        &[
            tensor("mean", &[1], &[0.5]),
            tensor("w", &[1, 1, 1, 1], &[1.0]),
        ],
        "sub",
    );
    assert!(msg.contains("Sub (\"minus_mean\")"), "{msg}");
}

#[test]
fn refuses_a_transposed_first_convolution() {
    let msg = refusal(
        &[node("ConvTranspose", "up", &["input", "w"], &["z"], &[])],
        &[tensor("w", &[1, 1, 2, 2], &[1.0; 4])],
        "convt",
    );
    assert!(msg.contains("ConvTranspose (\"up\")"), "{msg}");
}

#[test]
fn shape_readers_of_the_input_do_not_count() {
    let dir = temp("shape");
    let m = model(
        &[
            node("Shape", "sh", &["input"], &["s"], &[]),
            node("Conv", "conv", &["input", "w"], &["z"], &[]),
        ],
        &[tensor("w", &[2, 1, 1, 1], &[1.0, -1.0])],
        "input",
    );
    let s = StemModel::load(&save(&dir, "m.onnx", m), &LoadOptions::default()).unwrap();
    assert_eq!(s.info.layer, "conv");
    assert_eq!(s.info.followed_by.as_deref(), Some("nothing"));
}

#[test]
fn no_convolution_at_all() {
    let dir = temp("noconv");
    let p = dir.join("fc.safetensors");
    write_safetensors(&p, &[("fc.weight", vec![2, 3], vec![0.0; 6])]);
    let e = StemModel::load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, StemError::NoConv(_)), "{e}");
}

#[test]
fn dilated_stem() {
    // 3×3 ones with dilation 2 on a 5×5 image x[i][j] = 5i + j + 1, no padding: one output,
    // the sum over i, j ∈ {0, 2, 4} = 3·5·6 + 3·6 + 9 = 117
    let m = StemModel::from_weights(
        "d",
        vec![1.0; 9],
        vec![0.0],
        [1, 1, 3, 3],
        1,
        [1, 1],
        [0; 4],
        [2, 2],
    )
    .unwrap();
    let x: Vec<f32> = (1..=25).map(|v| v as f32).collect();
    let a = forward(&m, &x, 1, 5, 5);
    assert_eq!((a.h, a.w), (1, 1));
    close(a.pre[0], 117.0);
}

#[test]
fn grouped_stem() {
    // 2 groups of one input channel: output 0 reads channel 0, output 1 reads channel 1
    let m = StemModel::from_weights(
        "g",
        vec![2.0, 3.0],
        vec![0.0, 1.0],
        [2, 1, 1, 1],
        2,
        [1, 1],
        [0; 4],
        [1, 1],
    )
    .unwrap();
    let a = forward(&m, &[1.0, 10.0], 2, 1, 1);
    close(a.pre[0], 2.0);
    close(a.pre[1], 31.0);
}
