//! Broken and malicious inputs, one test per attack, plus small hand-built models whose values
//! are derived by hand. Models are built with the crate's own prost messages.

mod common;

use std::path::{Path, PathBuf};

use convlens_core::{Blob, ConvOp, DType, KernelLayout};
use convlens_onnx::proto::{
    data_type, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, ValueInfoProto, DATA_LOCATION_EXTERNAL,
};
use convlens_onnx::{read, OnnxError};
use prost::Message;

fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        raw_data: values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: 2,
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, inputs: &[&str]) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "convlens-tests".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: inputs
                .iter()
                .map(|n| ValueInfoProto {
                    name: n.to_string(),
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A model with one Conv whose weight is the initializer `t`.
fn conv_model(t: TensorProto) -> Vec<u8> {
    let w = t.name.clone();
    model(vec![node("Conv", "c", &["x", &w], &["y"])], vec![t], &["x"])
}

fn read_bytes(b: Vec<u8>) -> Result<convlens_core::Checkpoint, OnnxError> {
    read(Blob::from_vec(b), None)
}

/// A fresh scratch folder for one test, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(test: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("convlens-onnx-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

fn external(name: &str, dims: &[i64], entries: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        data_location: DATA_LOCATION_EXTERNAL,
        external_data: entries
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

fn read_in(dir: &Path, b: Vec<u8>) -> Result<convlens_core::Checkpoint, OnnxError> {
    read(Blob::from_vec(b), Some(dir))
}

// ---------------------------------------------------------------- hostile inputs

#[test]
fn empty_file() {
    assert!(matches!(read_bytes(vec![]), Err(OnnxError::Empty)));
    assert!(!convlens_onnx::sniff(&[]));
}

#[test]
fn random_bytes_and_wrong_magic() {
    let mut s: u64 = 12345;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 56) as u8
        })
        .collect();
    let e = read_bytes(random.clone()).unwrap_err();
    assert!(
        matches!(e, OnnxError::Decode(_) | OnnxError::NoGraph),
        "{e}"
    );
    assert!(!convlens_onnx::sniff(&random));
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    assert!(matches!(read_bytes(zip.clone()), Err(OnnxError::Decode(_))));
    assert!(!convlens_onnx::sniff(&zip));
    // a valid protobuf that is not a model: no graph
    let e = read_bytes(b"\x08\x08\x12\x03abc".to_vec()).unwrap_err();
    assert!(matches!(e, OnnxError::NoGraph), "{e}");
}

#[test]
fn truncated_protobuf() {
    let full = std::fs::read(common::fixture("zoo/cifar10-mini/resnet20_normal_s0.onnx")).unwrap();
    for cut in [1, 100, full.len() / 2, full.len() - 1] {
        let e = read_bytes(full[..cut].to_vec()).unwrap_err();
        assert!(
            matches!(e, OnnxError::Decode(_) | OnnxError::NoGraph),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn external_data_parent_traversal() {
    let dir = scratch("traversal");
    let b = conv_model(external("w", &[1], &[("location", "../../etc/passwd")]));
    let e = read_in(&dir, b).unwrap_err();
    assert!(
        matches!(&e, OnnxError::ExternalData { name, .. } if name == "w"),
        "{e}"
    );
    assert!(e.to_string().contains("not a plain relative path"), "{e}");
    // "./x" and "a/../b" are refused as well
    for loc in ["./w.bin", "sub/../w.bin", ""] {
        let b = conv_model(external("w", &[1], &[("location", loc)]));
        assert!(read_in(&dir, b).is_err(), "{loc}");
    }
}

#[test]
fn external_data_absolute_path() {
    let dir = scratch("absolute");
    let b = conv_model(external("w", &[1], &[("location", "/etc/passwd")]));
    let e = read_in(&dir, b).unwrap_err();
    assert!(e.to_string().contains("not a plain relative path"), "{e}");
}

#[cfg(unix)]
#[test]
fn external_data_symlink_escaping_the_folder() {
    let dir = scratch("symlink");
    let outside = scratch("symlink-target");
    std::fs::write(outside.join("secret.bin"), [0u8; 4]).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.bin"), dir.join("w.bin")).unwrap();
    let b = conv_model(external("w", &[1], &[("location", "w.bin")]));
    let e = read_in(&dir, b).unwrap_err();
    assert!(e.to_string().contains("outside the model's folder"), "{e}");
}

#[test]
fn external_data_past_end_of_file() {
    let dir = scratch("eof");
    std::fs::write(dir.join("w.bin"), [0u8; 16]).unwrap();
    let past = conv_model(external(
        "w",
        &[4],
        &[("location", "w.bin"), ("offset", "8"), ("length", "16")],
    ));
    let e = read_in(&dir, past).unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
    // offset + length overflowing u64
    let wrap = conv_model(external(
        "w",
        &[4],
        &[
            ("location", "w.bin"),
            ("offset", "8"),
            ("length", "18446744073709551615"),
        ],
    ));
    assert!(read_in(&dir, wrap)
        .unwrap_err()
        .to_string()
        .contains("past the end"));
    let far = conv_model(external(
        "w",
        &[4],
        &[("location", "w.bin"), ("offset", "17")],
    ));
    assert!(read_in(&dir, far)
        .unwrap_err()
        .to_string()
        .contains("past the end"));
    let neg = conv_model(external(
        "w",
        &[4],
        &[("location", "w.bin"), ("offset", "-1")],
    ));
    assert!(read_in(&dir, neg).is_err());
    // in range: 4 floats from offset 0 (length defaults to the rest of the file)
    let ok = conv_model(external("w", &[4], &[("location", "w.bin")]));
    let ck = read_in(&dir, ok).unwrap();
    assert_eq!(ck.tensors[0].tensor.to_f32(), [0.0; 4]);
}

#[test]
fn raw_data_shorter_than_dims() {
    let t = f32_tensor("short.weight", &[2, 1, 3, 3], &[1.0; 17]);
    let e = read_bytes(conv_model(t)).unwrap_err();
    assert!(
        matches!(&e, OnnxError::DataSize { name, expected: 72, actual: 68, .. } if name == "short.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("short.weight"));
}

#[test]
fn huge_dims_with_tiny_data() {
    for dims in [
        vec![1i64 << 62],
        vec![1 << 31, 1 << 31, 1 << 31],
        vec![1 << 35],
    ] {
        let t = TensorProto {
            dims: dims.clone(),
            ..f32_tensor("huge", &[], &[1.0])
        };
        let e = read_bytes(conv_model(t)).unwrap_err();
        assert!(
            matches!(&e, OnnxError::Dims { name, .. } if name == "huge"),
            "{dims:?}: {e}"
        );
    }
    // typed data: the element count is checked before anything is allocated
    let t = TensorProto {
        name: "typed".into(),
        dims: vec![1 << 30],
        data_type: data_type::FLOAT,
        float_data: vec![1.0],
        ..Default::default()
    };
    let e = read_bytes(conv_model(t)).unwrap_err();
    assert!(
        matches!(
            e,
            OnnxError::ElementCount {
                expected: 1073741824,
                actual: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn negative_dims() {
    let t = TensorProto {
        dims: vec![-1, 4],
        ..f32_tensor("neg", &[], &[1.0; 4])
    };
    let e = read_bytes(conv_model(t)).unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
}

#[test]
fn identity_cycle() {
    let nodes = vec![
        node("Identity", "i1", &["b"], &["a"]),
        node("Identity", "i2", &["a"], &["b"]),
        node("Conv", "c", &["x", "a"], &["y"]),
    ];
    let ck = read_bytes(model(nodes, vec![], &["x"])).unwrap();
    let c = &ck.graph.as_ref().unwrap().convs[0];
    let e = c.weight.as_ref().unwrap_err();
    assert!(e.contains("Identity chain longer than 64"), "{e}");
    assert_eq!(c.graph_depth, Some(0));
}

#[test]
fn node_graph_cycle_terminates() {
    // x -> c1 -> a ; c2(a, d) -> b ; relu(b) -> d (cycle b <-> d) ; c3(d) -> e
    let w = f32_tensor("w", &[1, 1, 1, 1], &[2.0]);
    let nodes = vec![
        node("Conv", "c1", &["x", "w"], &["a"]),
        node("Conv", "c2", &["a", "w", "d"], &["b"]),
        node("Relu", "r", &["b"], &["d"]),
        node("Conv", "c3", &["d", "w"], &["e"]),
    ];
    let ck = read_bytes(model(nodes, vec![w], &["x"])).unwrap();
    let depths: Vec<_> = ck
        .graph
        .as_ref()
        .unwrap()
        .convs
        .iter()
        .map(|c| c.graph_depth)
        .collect();
    assert_eq!(depths, [Some(0), None, None]);
    assert!(
        ck.notes.iter().any(|n| n.contains("cycle")),
        "{:?}",
        ck.notes
    );
    // c2's bias is not a constant: noted, not fatal
    assert!(ck.graph.as_ref().unwrap().convs[1].bias.is_none());
}

/// `depth` graphs nested through `If`-style graph attributes, built as raw protobuf bytes
/// (without building deep structures in the test).
fn nested_graph_bytes(depth: usize) -> Vec<u8> {
    fn wrap(field: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(payload.len() + 11);
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut v);
        prost::encoding::encode_varint(payload.len() as u64, &mut v);
        v.extend_from_slice(payload);
        v
    }
    let mut g = Vec::new();
    for _ in 0..depth {
        let attr = wrap(6, &g); // AttributeProto.g
        let node = wrap(5, &attr); // NodeProto.attribute
        g = wrap(1, &node); // GraphProto.node
    }
    wrap(7, &g) // ModelProto.graph
}

#[test]
fn deeply_nested_graph_attributes() {
    for depth in [200, 20_000] {
        let e = read_bytes(nested_graph_bytes(depth)).unwrap_err();
        assert!(matches!(e, OnnxError::Decode(_)), "{e}");
        assert!(e.to_string().contains("recursion"), "{e}");
    }
    // shallow nesting is fine, and noted
    let ck = read_bytes(nested_graph_bytes(3)).unwrap();
    assert!(
        ck.notes.iter().any(|n| n.contains("subgraph")),
        "{:?}",
        ck.notes
    );
}

#[test]
fn typed_field_count_mismatch_and_unsupported_types() {
    let t = TensorProto {
        name: "w".into(),
        dims: vec![2, 2],
        data_type: data_type::FLOAT,
        float_data: vec![1.0, 2.0, 3.0],
        ..Default::default()
    };
    let e = read_bytes(conv_model(t)).unwrap_err();
    assert!(
        e.to_string()
            .contains("float_data holds 3 values but its dims call for 4"),
        "{e}"
    );
    // an unsupported element type is a note, and a weight of that type an explained error
    let t = TensorProto {
        name: "w".into(),
        dims: vec![1, 1, 1, 1],
        data_type: data_type::UINT16,
        int32_data: vec![7],
        ..Default::default()
    };
    let ck = read_bytes(conv_model(t)).unwrap();
    assert!(ck.tensors.is_empty());
    assert!(
        ck.notes.iter().any(|n| n.contains("UINT16")),
        "{:?}",
        ck.notes
    );
    let e = ck.graph.unwrap().convs[0].weight.clone().unwrap_err();
    assert!(e.contains("UINT16"), "{e}");
}

#[test]
fn overlong_name() {
    let t = f32_tensor(
        &"n".repeat(convlens_core::limits::MAX_NAME_LEN + 1),
        &[1],
        &[1.0],
    );
    assert!(matches!(
        read_bytes(conv_model(t)),
        Err(OnnxError::NameTooLong { .. })
    ));
}

// ---------------------------------------------------------------- hand-derived models

#[test]
fn conv_attributes_identity_and_constants() {
    // weight via Identity chain (TorchScript exporter style), bias from a Constant node
    let w = f32_tensor("w", &[2, 1, 1, 2], &[1.0, -2.0, 3.0, -4.5]);
    let mut conv = node("Conv", "", &["x", "w_id2", "b"], &["y"]);
    conv.attribute = vec![
        attr_int("group", 1),
        attr_ints("strides", &[2, 1]),
        attr_ints("pads", &[0, 1, 0, 1]),
        attr_ints("dilations", &[1, 1]),
    ];
    let mut cst = node("Constant", "k", &[], &["b"]);
    cst.attribute = vec![AttributeProto {
        name: "value_floats".into(),
        floats: vec![0.5, -0.25],
        r#type: 6,
        ..Default::default()
    }];
    let mut ct = node("ConvTranspose", "t", &["y", "w"], &["z"]);
    ct.attribute = vec![attr_int("group", 2)];
    let nodes = vec![
        node("Identity", "i1", &["w"], &["w_id1"]),
        node("Identity", "i2", &["w_id1"], &["w_id2"]),
        cst,
        conv,
        ct,
    ];
    let ck = read_bytes(model(nodes, vec![w], &["x", "w"])).unwrap();
    assert_eq!(ck.tensors.len(), 2);
    assert_eq!(ck.tensors[1].name, "b");
    let g = ck.graph.as_ref().unwrap();
    assert_eq!(g.inputs, ["x"]); // "w" is an initializer
    assert_eq!(g.n_nodes, 5);
    assert_eq!(g.first_ops, ["Conv"]);
    let c = &g.convs[0];
    assert_eq!(c.name, "node3");
    assert_eq!(c.weight_name, "w_id2");
    assert_eq!(c.weight.as_ref().unwrap().to_f32(), [1.0, -2.0, 3.0, -4.5]);
    assert_eq!(c.bias.as_ref().unwrap().to_f32(), [0.5, -0.25]);
    assert_eq!((c.groups, c.strides.as_slice()), (1, [2i64, 1].as_slice()));
    assert_eq!(c.pads, [0, 1, 0, 1]);
    assert_eq!(c.auto_pad, None);
    assert_eq!(c.graph_depth, Some(0));
    let t = &g.convs[1];
    assert_eq!(
        (t.op, t.layout, t.groups),
        (ConvOp::ConvTranspose, KernelLayout::IOHW, 2)
    );
    assert_eq!(t.graph_depth, Some(1));
    assert!(t.bias.is_none());
}

#[test]
fn typed_half_precision_and_int8_fields() {
    // FLOAT16 and BFLOAT16 as bit patterns in int32_data, INT8 truncated from int32
    let h = TensorProto {
        name: "h".into(),
        dims: vec![2],
        data_type: data_type::FLOAT16,
        int32_data: vec![0x3e00, 0xc000], // 1.5, -2.0
        ..Default::default()
    };
    let bf = TensorProto {
        name: "bf".into(),
        dims: vec![1],
        data_type: data_type::BFLOAT16,
        int32_data: vec![0x3e80], // 0.25
        ..Default::default()
    };
    let i8t = TensorProto {
        name: "i8".into(),
        dims: vec![2],
        data_type: data_type::INT8,
        int32_data: vec![-3, 127],
        ..Default::default()
    };
    let d = TensorProto {
        name: "d".into(),
        dims: vec![],
        data_type: data_type::DOUBLE,
        double_data: vec![0.1],
        ..Default::default()
    };
    let ck = read_bytes(model(vec![], vec![h, bf, i8t, d], &[])).unwrap();
    assert_eq!(ck.tensor("h").unwrap().dtype(), DType::F16);
    assert_eq!(ck.tensor("h").unwrap().to_f32(), [1.5, -2.0]);
    assert_eq!(ck.tensor("bf").unwrap().to_f32(), [0.25]);
    assert_eq!(ck.tensor("i8").unwrap().to_f64(), [-3.0, 127.0]);
    assert_eq!(ck.tensor("d").unwrap().to_f64(), [0.1]);
    assert!(ck.tensor("d").unwrap().shape().is_empty());
}

#[test]
fn qlinear_conv_per_channel_dequantization() {
    // w int8 [2,1,1,2] = [[10, -20]], [[5, 0]]; scale [0.5, 0.25]; zero point [0, 4]
    // -> [[5, -10]], [[0.25, -1]]; bias int32 [8, -4] * x_scale 0.1 * w_scale -> [0.4, -0.1]
    let q = TensorProto {
        name: "wq".into(),
        dims: vec![2, 1, 1, 2],
        data_type: data_type::INT8,
        raw_data: vec![10u8, (-20i8) as u8, 5, 0].into(),
        ..Default::default()
    };
    let s = f32_tensor("ws", &[2], &[0.5, 0.25]);
    let z = TensorProto {
        name: "wz".into(),
        dims: vec![2],
        data_type: data_type::INT8,
        raw_data: vec![0u8, 4].into(),
        ..Default::default()
    };
    let xs = f32_tensor("xs", &[], &[0.1]);
    let b = TensorProto {
        name: "b".into(),
        dims: vec![2],
        data_type: data_type::INT32,
        int32_data: vec![8, -4],
        ..Default::default()
    };
    let n = node(
        "QLinearConv",
        "q",
        &["x", "xs", "xz", "wq", "ws", "wz", "ys", "yz", "b"],
        &["y"],
    );
    let ck = read_bytes(model(vec![n], vec![q, s, z, xs, b], &["x"])).unwrap();
    let c = &ck.graph.as_ref().unwrap().convs[0];
    assert_eq!(c.op, ConvOp::QLinearConv);
    assert_eq!(c.weight_name, "wq");
    let w = c.weight.as_ref().unwrap();
    assert_eq!(w.dtype(), DType::F32);
    assert_eq!(w.to_f32(), [5.0, -10.0, 0.25, -1.0]);
    let bias = c.bias.as_ref().unwrap().to_f32();
    assert!(
        (bias[0] - 0.4).abs() < 1e-7 && (bias[1] + 0.1).abs() < 1e-7,
        "{bias:?}"
    );
}

#[test]
fn conv_integer_without_dynamic_quantization_chain_reports_why() {
    let q = TensorProto {
        name: "wq".into(),
        dims: vec![1, 1, 1, 1],
        data_type: data_type::UINT8,
        raw_data: vec![200u8].into(),
        ..Default::default()
    };
    let n = node("ConvInteger", "ci", &["x", "wq"], &["y"]);
    let ck = read_bytes(model(vec![n], vec![q], &["x"])).unwrap();
    let e = ck.graph.unwrap().convs[0].weight.clone().unwrap_err();
    assert!(
        e.starts_with("ConvInteger: weight scale not found ("),
        "{e}"
    );
}

#[test]
fn conv_integer_dynamic_quantization_chain() {
    // DynamicQuantizeLinear(x) -> ConvInteger -> Cast -> Mul(., Mul(x_scale, w_scale))
    let q = TensorProto {
        name: "wq".into(),
        dims: vec![1, 1, 1, 2],
        data_type: data_type::UINT8,
        raw_data: vec![200u8, 100].into(),
        ..Default::default()
    };
    let zp = TensorProto {
        name: "wz".into(),
        dims: vec![],
        data_type: data_type::UINT8,
        raw_data: vec![128u8].into(),
        ..Default::default()
    };
    let ws = f32_tensor("ws", &[], &[0.5]);
    let nodes = vec![
        node("DynamicQuantizeLinear", "d", &["x"], &["xq", "xs", "xz"]),
        node("ConvInteger", "ci", &["xq", "wq", "xz", "wz"], &["acc"]),
        node("Cast", "cast", &["acc"], &["accf"]),
        node("Mul", "scales", &["xs", "ws"], &["s"]),
        node("Mul", "out", &["accf", "s"], &["y"]),
    ];
    let ck = read_bytes(model(nodes, vec![q, zp, ws], &["x"])).unwrap();
    let c = &ck.graph.as_ref().unwrap().convs[0];
    // (200 - 128) * 0.5 = 36, (100 - 128) * 0.5 = -14
    assert_eq!(c.weight.as_ref().unwrap().to_f32(), [36.0, -14.0]);
    assert_eq!(c.graph_depth, Some(1));
}

#[test]
fn mutated_models_never_panic() {
    // deterministic mutations (byte changes, truncation, duplicated ranges) of a real model
    // and of a small hand-built one: every result is Ok or a clean error
    let mut s: u64 = 7;
    let mut rnd = |m: usize| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as usize) % m.max(1)
    };
    let real = std::fs::read(common::fixture(
        "third_party/rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    ))
    .unwrap();
    let small = conv_model(f32_tensor("w", &[2, 1, 3, 3], &[0.5; 18]));
    let mut parsed = 0;
    for (base, rounds) in [(&real, 200), (&small, 3000)] {
        for _ in 0..rounds {
            let mut b = base.clone();
            for _ in 0..1 + rnd(4) {
                match rnd(4) {
                    0 => {
                        let i = rnd(b.len());
                        b[i] = rnd(256) as u8;
                    }
                    1 => b.truncate(rnd(b.len())),
                    2 => {
                        let i = rnd(b.len());
                        b.insert(i, [0x08, 0x0a, 0x12, 0x3a, 0xff][rnd(5)]);
                    }
                    _ => {
                        let i = rnd(b.len());
                        let j = (i + rnd(64)).min(b.len());
                        let piece = b[i..j].to_vec();
                        b.splice(i..i, piece);
                    }
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = convlens_onnx::sniff(&b);
            if let Ok(ck) = read_bytes(b) {
                parsed += 1;
                for c in &ck.graph.unwrap().convs {
                    if let Ok(w) = &c.weight {
                        assert_eq!(w.to_f32().len(), w.numel());
                    }
                }
            }
        }
    }
    // some mutants still parse, so the graph code is exercised too
    assert!(parsed > 50, "{parsed}");
}
