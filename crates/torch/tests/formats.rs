//! Hand-built files for the variants the real fixtures do not cover: every dtype, big-endian
//! archives, deflated members, untyped storages, parameters, legacy views, pickled modules.

mod common;
use common::builder::*;
use convlens_core::{Blob, DType, Format};
use convlens_torch::read;
use zip::CompressionMethod;

fn read_bytes(b: Vec<u8>) -> convlens_core::Checkpoint {
    read(Blob::from_vec(b)).unwrap()
}

/// (name, storage type, little-endian bytes, dtype, values)
type DtypeCase = (&'static str, &'static str, Vec<u8>, DType, [f64; 2]);

#[test]
fn every_storage_dtype_reads() {
    let f16: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0.25f32, 3.0]
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let f64b: Vec<u8> = [0.1f64, -1e300]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let i64b: Vec<u8> = [-5i64, 1 << 40]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let i32b: Vec<u8> = [-7i32, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i16b: Vec<u8> = [-3i16, 300].iter().flat_map(|x| x.to_le_bytes()).collect();
    let specs: [DtypeCase; 10] = [
        (
            "a",
            "FloatStorage",
            f32_bytes(&[1.0, -0.5]),
            DType::F32,
            [1.0, -0.5],
        ),
        ("b", "HalfStorage", f16, DType::F16, [1.5, -2.0]),
        ("c", "BFloat16Storage", bf16, DType::BF16, [0.25, 3.0]),
        ("d", "DoubleStorage", f64b, DType::F64, [0.1, -1e300]),
        (
            "e",
            "LongStorage",
            i64b,
            DType::I64,
            [-5.0, (1u64 << 40) as f64],
        ),
        ("f", "IntStorage", i32b, DType::I32, [-7.0, 9.0]),
        ("g", "ShortStorage", i16b, DType::I16, [-3.0, 300.0]),
        ("h", "CharStorage", vec![0xff, 5], DType::I8, [-1.0, 5.0]),
        ("i", "ByteStorage", vec![0xff, 5], DType::U8, [255.0, 5.0]),
        ("j", "BoolStorage", vec![1, 0], DType::Bool, [1.0, 0.0]),
    ];
    let tensors: Vec<TensorSpec> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let key: &'static str = Box::leak(i.to_string().into_boxed_str());
            (s.0, s.1, key, 2, 0, &[2][..], &[1][..])
        })
        .collect();
    let storages: Vec<(&str, Vec<u8>)> = tensors
        .iter()
        .zip(&specs)
        .map(|(t, s)| (t.2, s.2.clone()))
        .collect();
    let z = torch_zip(
        "archive",
        &state_dict_pickle(&tensors),
        &storages,
        &[("byteorder", b"little"), ("version", b"3\n")],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    assert_eq!(ck.format, Format::TorchZip);
    assert_eq!(ck.tensors.len(), 10);
    for (t, s) in ck.tensors.iter().zip(&specs) {
        assert_eq!(t.name, s.0);
        assert_eq!(t.tensor.dtype(), s.3, "{}", s.0);
        assert_eq!(t.tensor.to_f64(), s.4.to_vec(), "{}", s.0);
    }
}

#[test]
fn big_endian_archive_is_honoured() {
    let be: Vec<u8> = [1.0f32, 2.5, -3.0]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    let pkl = state_dict_pickle(&[("w", "FloatStorage", "0", 3, 0, &[3], &[1])]);
    let z = torch_zip(
        "m",
        &pkl,
        &[("0", be)],
        &[("byteorder", b"big")],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    assert_eq!(ck.tensors[0].tensor.to_f32(), vec![1.0, 2.5, -3.0]);
    assert!(ck.notes.iter().any(|n| n.contains("big-endian")));
}

#[test]
fn deflated_members_read() {
    let vals: Vec<f32> = (0..1000).map(|i| (i % 7) as f32).collect();
    let pkl = state_dict_pickle(&[(
        "x.weight",
        "FloatStorage",
        "0",
        1000,
        0,
        &[10, 100],
        &[100, 1],
    )]);
    let z = torch_zip(
        "m",
        &pkl,
        &[("0", f32_bytes(&vals))],
        &[],
        CompressionMethod::Deflated,
    );
    let ck = read_bytes(z);
    assert_eq!(ck.tensors[0].tensor.shape(), &[10, 100]);
    assert_eq!(ck.tensors[0].tensor.to_f32(), vals);
}

#[test]
fn stored_tensors_are_not_copied() {
    let pkl = state_dict_pickle(&[("w", "FloatStorage", "0", 2, 0, &[2], &[1])]);
    let z = torch_zip(
        "m",
        &pkl,
        &[("0", f32_bytes(&[7.0, 8.0]))],
        &[],
        CompressionMethod::Stored,
    );
    let blob = Blob::from_vec(z);
    let base = blob.as_slice().as_ptr() as usize;
    let end = base + blob.len();
    let ck = read(blob.clone()).unwrap();
    let p = ck.tensors[0].tensor.storage().as_slice().as_ptr() as usize;
    assert!(
        p >= base && p < end,
        "tensor data must point into the archive buffer"
    );
}

#[test]
fn strided_views_and_offsets() {
    // storage 0..12; a transposed 3x4 -> 4x3 view and a view starting at element 2
    let vals: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let pkl = state_dict_pickle(&[
        ("t", "FloatStorage", "0", 12, 0, &[4, 3], &[1, 4]),
        ("o", "FloatStorage", "0", 12, 2, &[2, 2], &[4, 1]),
    ]);
    let z = torch_zip(
        "m",
        &pkl,
        &[("0", f32_bytes(&vals))],
        &[],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    assert_eq!(
        ck.tensors[0].tensor.to_f32(),
        vec![0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
    );
    assert_eq!(ck.tensors[1].tensor.to_f32(), vec![2., 3., 6., 7.]);
}

#[test]
fn untyped_storage_with_rebuild_tensor_v3() {
    let bytes: Vec<u8> = [0.5f32, 1.0, 2.0]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let mut p = Pk::new();
    p.op(b'}')
        .str("h")
        .global("torch._utils", "_rebuild_tensor_v3")
        .mark();
    p.storage("UntypedStorage", "0", 6)
        .int(1)
        .int_tuple(&[2])
        .int_tuple(&[1])
        .op(0x89)
        .ordered_dict()
        .global("torch", "float16")
        .tuple()
        .reduce()
        .op(b's');
    let z = torch_zip(
        "m",
        &p.stop(),
        &[("0", bytes)],
        &[],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    assert_eq!(ck.tensors[0].tensor.dtype(), DType::F16);
    assert_eq!(ck.tensors[0].tensor.to_f32(), vec![1.0, 2.0]);
}

#[test]
fn parameters_and_rebuild_from_type() {
    let mut p = Pk::new();
    p.op(b'}').mark();
    // _rebuild_parameter(tensor, True, OrderedDict())
    p.str("p")
        .global("torch._utils", "_rebuild_parameter")
        .mark();
    p.tensor_v2("FloatStorage", "0", 2, 0, &[2], &[1])
        .op(0x88)
        .ordered_dict()
        .tuple()
        .reduce();
    // _rebuild_from_type_v2(_rebuild_tensor_v2, Parameter, (args...), {})
    p.str("q")
        .global("torch._tensor", "_rebuild_from_type_v2")
        .mark();
    p.global("torch._utils", "_rebuild_tensor_v2")
        .global("torch.nn.parameter", "Parameter")
        .mark()
        .storage("FloatStorage", "0", 2)
        .int(1)
        .int_tuple(&[1])
        .int_tuple(&[1])
        .op(0x89)
        .ordered_dict()
        .tuple()
        .op(b'}')
        .tuple()
        .reduce();
    // _rebuild_parameter_with_state(tensor, False, OrderedDict(), {})
    p.str("r")
        .global("torch._utils", "_rebuild_parameter_with_state")
        .mark();
    p.tensor_v2("FloatStorage", "0", 2, 0, &[2], &[1])
        .op(0x89)
        .ordered_dict()
        .op(b'}')
        .tuple()
        .reduce();
    p.op(b'u');
    let z = torch_zip(
        "m",
        &p.stop(),
        &[("0", f32_bytes(&[3.0, 4.0]))],
        &[],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    let names: Vec<&str> = ck.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["p", "q", "r"]);
    assert_eq!(ck.tensors[1].tensor.to_f32(), vec![4.0]);
}

#[test]
fn legacy_views_share_the_root_storage() {
    // root storage "r" of 6 floats; view "v1" = elements [2, 6); tensor a uses the root,
    // b uses the view with its own offset 1
    let mut p = Pk::new();
    p.ordered_dict().mark();
    p.str("a")
        .global("torch._utils", "_rebuild_tensor_v2")
        .mark();
    p.legacy_storage("FloatStorage", "r", 6, None)
        .int(0)
        .int_tuple(&[2, 3])
        .int_tuple(&[3, 1])
        .op(0x89)
        .ordered_dict()
        .tuple()
        .reduce();
    p.str("b")
        .global("torch._utils", "_rebuild_tensor_v2")
        .mark();
    p.legacy_storage("FloatStorage", "r", 6, Some(("v1", 2, 4)))
        .int(1)
        .int_tuple(&[3])
        .int_tuple(&[1])
        .op(0x89)
        .ordered_dict()
        .tuple()
        .reduce();
    p.op(b'u');
    let vals = [10.0f32, 11., 12., 13., 14., 15.];
    let s = legacy_stream(&p.stop(), &[("r", 6, f32_bytes(&vals))]);
    let ck = read_bytes(s);
    assert_eq!(ck.format, Format::TorchLegacy);
    assert_eq!(ck.tensors[0].tensor.to_f32(), vals.to_vec());
    assert_eq!(ck.tensors[1].tensor.to_f32(), vec![13.0, 14.0, 15.0]);
}

#[test]
fn pickled_module_names_skip_module_internals() {
    // mymodels.Net (not installed) with a parameter, a persistent and a non-persistent buffer
    // and a child module; plus a tied parameter listed under both names
    let mut p = Pk::new();
    p.global("mymodels", "Net")
        .op(b')')
        .op(0x81)
        .op(b'}')
        .mark();
    p.str("training").op(0x89);
    p.str("_parameters").op(b'}').mark();
    p.str("weight")
        .tensor_v2("FloatStorage", "0", 4, 0, &[2, 2], &[2, 1])
        .op(b'q')
        .op(10);
    p.op(b'u');
    p.str("_buffers").op(b'}').mark();
    p.str("running")
        .tensor_v2("FloatStorage", "1", 1, 0, &[1], &[1]);
    p.str("scratch")
        .tensor_v2("FloatStorage", "1", 1, 0, &[1], &[1]);
    p.op(b'u');
    p.str("_non_persistent_buffers_set")
        .global("__builtin__", "set")
        .op(b']')
        .mark()
        .str("scratch")
        .op(b'e')
        .op(0x85)
        .reduce();
    p.str("_modules").op(b'}').mark();
    p.str("child")
        .global("copy_reg", "_reconstructor")
        .mark()
        .global("mymodels", "Child")
        .global("__builtin__", "object")
        .none()
        .tuple()
        .reduce()
        .op(b'}')
        .mark()
        .str("_parameters")
        .op(b'}')
        .str("tied")
        .op(b'h')
        .op(10)
        .op(b's')
        .op(b'u')
        .op(b'b');
    p.op(b'u');
    p.op(b'u').op(b'b');
    let z = torch_zip(
        "m",
        &p.stop(),
        &[("0", f32_bytes(&[1., 2., 3., 4.])), ("1", f32_bytes(&[5.]))],
        &[],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    let names: Vec<&str> = ck.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["weight", "running", "child.tied"]);
    assert_eq!(ck.tensors[2].tensor.to_f32(), vec![1., 2., 3., 4.]);
}

#[test]
fn checkpoint_extras_are_inert() {
    // {'hyper_parameters': Namespace(lr=0.1, path=PosixPath('a','b')), 'blob': _codecs.encode,
    //  'model_state_dict': {...}, 'q': quantized tensor}
    let mut p = Pk::new();
    p.op(b'}').mark();
    p.str("hyper_parameters")
        .global("argparse", "Namespace")
        .op(b')')
        .reduce()
        .op(b'}')
        .str("path")
        .global("pathlib", "PosixPath")
        .mark()
        .str("a")
        .str("b")
        .tuple()
        .reduce()
        .op(b's')
        .op(b'b');
    p.str("blob")
        .global("_codecs", "encode")
        .str("\u{e9}x")
        .str("latin1")
        .op(0x86)
        .reduce();
    p.str("model_state_dict").op(b'}').mark();
    p.str("conv.weight")
        .tensor_v2("FloatStorage", "0", 1, 0, &[1, 1, 1, 1], &[1, 1, 1, 1]);
    p.str("q")
        .global("torch._utils", "_rebuild_qtensor")
        .op(b')')
        .reduce();
    p.op(b'u');
    p.op(b'u');
    let z = torch_zip(
        "m",
        &p.stop(),
        &[("0", f32_bytes(&[0.5]))],
        &[],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    assert_eq!(ck.tensors.len(), 1);
    assert_eq!(ck.tensors[0].name, "conv.weight");
    assert!(
        ck.notes.iter().any(|n| n.contains("`model_state_dict`")),
        "{:?}",
        ck.notes
    );
    assert!(
        ck.notes
            .iter()
            .any(|n| n.contains("`q` (quantized tensor)")),
        "{:?}",
        ck.notes
    );
}

#[test]
fn plain_pickle_without_tensors() {
    let p = Pk::new().op(b'}').str("epoch").int(3).op(b's').stop();
    let ck = read_bytes(p);
    assert_eq!(ck.format, Format::TorchLegacy);
    assert!(ck.tensors.is_empty());
    assert!(ck.notes[0].contains("plain pickle"));
}

#[test]
fn torchscript_is_detected_by_its_code_folder() {
    let pkl = state_dict_pickle(&[("w", "FloatStorage", "0", 1, 0, &[1], &[1])]);
    let z = torch_zip(
        "m",
        &pkl,
        &[("0", f32_bytes(&[1.0]))],
        &[
            ("code/__torch__/m.py", b"pass"),
            ("constants.pkl", b"\x80\x02)."),
        ],
        CompressionMethod::Stored,
    );
    assert_eq!(read_bytes(z).format, Format::TorchScript);
}

#[test]
fn protocol0_instances_are_inert_objects() {
    // INST mymodels.Net() with a dict state holding a tensor, inside a protocol-0 style dict;
    // OBJ with an unknown class and NEWOBJ_EX too
    let mut p = Pk::new();
    p.op(b'(')
        .str("net")
        .op(b'(')
        .raw(b"imymodels\nNet\n")
        .op(b'}')
        .mark();
    p.str("w").tensor_v2("FloatStorage", "0", 1, 0, &[1], &[1]);
    p.op(b'u').op(b'b');
    p.str("obj")
        .op(b'(')
        .global("mymodels", "Other")
        .int(1)
        .op(b'o');
    p.str("ex")
        .global("mymodels", "Third")
        .op(b')')
        .op(b'}')
        .op(0x92);
    p.op(b'd');
    let z = torch_zip(
        "m",
        &p.stop(),
        &[("0", f32_bytes(&[2.0]))],
        &[],
        CompressionMethod::Stored,
    );
    let ck = read_bytes(z);
    assert_eq!(ck.tensors.len(), 1);
    // `net` is the model entry of the checkpoint dict: names are relative to it
    assert_eq!(ck.tensors[0].name, "w");
    assert!(
        ck.metadata
            .iter()
            .any(|(k, v)| k == convlens_torch::META_ENTRY && v == "net"),
        "{:?}",
        ck.metadata
    );
    assert!(
        ck.notes.iter().any(|n| n.contains("`mymodels.Net`")),
        "{:?}",
        ck.notes
    );
}
