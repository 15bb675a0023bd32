//! `.npy` parsing on hand-built arrays: every supported layout, then one test per attack.

mod common;

use common::{f32s, npy, npy_v};
use convlens_core::{Blob, DType};
use convlens_numpy::{parse_npy, read_npy, sniff_npy, NpyError};

fn parse(bytes: Vec<u8>) -> Result<convlens_core::RawTensor, NpyError> {
    parse_npy(Blob::from_vec(bytes))
}

fn err(bytes: Vec<u8>) -> NpyError {
    match parse(bytes) {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            e
        }
    }
}

#[test]
fn little_endian_f32_c_order() {
    let t = parse(npy(
        "<f4",
        false,
        "(2, 3)",
        &f32s(&[0., 1., 2., 3., 4., 5.]),
    ))
    .unwrap();
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(t.shape(), &[2, 3]);
    assert!(t.is_c_contiguous());
    assert_eq!(t.to_f32(), vec![0., 1., 2., 3., 4., 5.]);
    let c = read_npy(Blob::from_vec(npy("<f4", false, "(1,)", &f32s(&[7.])))).unwrap();
    assert_eq!(c.tensors.len(), 1);
    assert_eq!(c.tensors[0].name, "");
}

#[test]
fn big_endian_is_honoured() {
    let data: Vec<u8> = [1.5f32, -2.25]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    assert_eq!(
        parse(npy(">f4", false, "(2,)", &data)).unwrap().to_f32(),
        vec![1.5, -2.25]
    );
    let data: Vec<u8> = [0.5f64].iter().flat_map(|x| x.to_be_bytes()).collect();
    assert_eq!(
        parse(npy(">f8", false, "(1,)", &data)).unwrap().to_f64(),
        vec![0.5]
    );
    let data: Vec<u8> = [-3i16, 300].iter().flat_map(|x| x.to_be_bytes()).collect();
    assert_eq!(
        parse(npy(">i2", false, "(2,)", &data)).unwrap().to_f64(),
        vec![-3., 300.]
    );
}

#[test]
fn fortran_order_gives_column_major_strides() {
    // numpy: np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)) stores 0 3 1 4 2 5
    let t = parse(npy("<f4", true, "(2, 3)", &f32s(&[0., 3., 1., 4., 2., 5.]))).unwrap();
    assert_eq!(t.strides(), &[1, 2]);
    assert_eq!(t.to_f32(), vec![0., 1., 2., 3., 4., 5.]);
}

#[test]
fn every_supported_dtype() {
    let cases: [(&str, Vec<u8>, DType, f64); 10] = [
        ("<f2", 0x3e00u16.to_le_bytes().to_vec(), DType::F16, 1.5),
        ("<f8", 0.1f64.to_le_bytes().to_vec(), DType::F64, 0.1),
        ("|i1", vec![0xfe], DType::I8, -2.),
        ("<i1", vec![0x7f], DType::I8, 127.),
        ("|u1", vec![200], DType::U8, 200.),
        ("|b1", vec![1], DType::Bool, 1.),
        ("<i2", (-300i16).to_le_bytes().to_vec(), DType::I16, -300.),
        ("<i4", 70000i32.to_le_bytes().to_vec(), DType::I32, 70000.),
        (
            "<i8",
            (-(1i64 << 40)).to_le_bytes().to_vec(),
            DType::I64,
            -(2f64.powi(40)),
        ),
        ("<f4", 0.25f32.to_le_bytes().to_vec(), DType::F32, 0.25),
    ];
    for (descr, data, dtype, value) in cases {
        let t = parse(npy(descr, false, "()", &data)).unwrap_or_else(|e| panic!("{descr}: {e}"));
        assert_eq!(t.dtype(), dtype, "{descr}");
        assert_eq!(t.shape(), &[] as &[usize]);
        assert_eq!(t.to_f64(), vec![value], "{descr}");
    }
}

#[test]
fn versions_2_and_3_and_python2_longs() {
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    for v in [2, 3] {
        assert_eq!(
            parse(npy_v(v, dict, &f32s(&[1., 2.]))).unwrap().to_f32(),
            vec![1., 2.]
        );
    }
    // numpy under Python 2 wrote `2L`
    let py2 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }";
    assert_eq!(
        parse(npy_v(1, py2, &f32s(&[1., 2.]))).unwrap().shape(),
        &[2]
    );
    // key order and quotes do not matter
    let other = r#"{"shape": (1, 1), "fortran_order": False, "descr": "<f4"}"#;
    assert_eq!(
        parse(npy_v(1, other, &f32s(&[3.]))).unwrap().to_f32(),
        vec![3.]
    );
}

#[test]
fn empty_file() {
    assert!(matches!(err(vec![]), NpyError::BadMagic));
    assert!(!sniff_npy(&[]));
}

#[test]
fn wrong_magic() {
    let mut v = npy("<f4", false, "(1,)", &f32s(&[1.]));
    v[1] = b'n';
    assert!(!sniff_npy(&v));
    assert!(matches!(err(v), NpyError::BadMagic));
}

#[test]
fn truncated_preamble() {
    assert!(matches!(
        err(b"\x93NUMPY\x01".to_vec()),
        NpyError::TooShort { len: 7 }
    ));
}

#[test]
fn unsupported_version() {
    let mut v = npy("<f4", false, "(1,)", &f32s(&[1.]));
    v[6] = 4;
    assert!(matches!(err(v), NpyError::Version { major: 4, minor: 0 }));
}

#[test]
fn header_length_past_eof() {
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&60000u16.to_le_bytes());
    v.extend_from_slice(b"{'descr': '<f4', ");
    assert!(matches!(err(v), NpyError::HeaderLength { len: 60000, .. }));
    // version 2 with a 4 GiB header length
    let mut v = b"\x93NUMPY\x02\x00".to_vec();
    v.extend_from_slice(&u32::MAX.to_le_bytes());
    v.extend_from_slice(b"{}");
    assert!(matches!(err(v), NpyError::HeaderTooLarge(0xffff_ffff)));
    // version 2, plausible length, file too short
    let mut v = b"\x93NUMPY\x02\x00".to_vec();
    v.extend_from_slice(&100u32.to_le_bytes());
    v.extend_from_slice(b"{}");
    assert!(matches!(
        err(v),
        NpyError::HeaderLength {
            len: 100,
            file_len: 14
        }
    ));
}

#[test]
fn malformed_dict() {
    let bad = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", // unclosed
        "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", // missing comma
        "{'descr': '<f4', 'fortran_order': False, 'shape': __import__('os').system('x')}",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", // not a bool
        "{'descr': '<f4', 'shape': (2,)}",                     // missing key
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': 2}", // not a tuple
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", // (2) is 2 in Python
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}",
        "['descr', '<f4']",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} trailing",
        "{'descr': 3, 'fortran_order': False, 'shape': (2,)}",
    ];
    for dict in bad {
        let e = err(npy_v(1, dict, &f32s(&[1., 2.])));
        assert!(
            matches!(e, NpyError::Header { .. } | NpyError::HeaderDict(_)),
            "{dict}: {e:?}"
        );
    }
    // deeply nested brackets stop at the depth limit instead of recursing
    let deep = format!("{{'descr': {}", "[".repeat(50_000));
    let e = err(npy_v(2, &deep, &[]));
    assert!(matches!(e, NpyError::Header { .. }), "{e:?}");
}

#[test]
fn huge_dims_are_refused_without_allocating() {
    let e = err(npy(
        "<f4",
        false,
        "(4611686018427387904, 4611686018427387904)",
        &[],
    ));
    assert!(matches!(e, NpyError::ShapeTooLarge { .. }), "{e:?}");
    // fits in usize but exceeds the element cap
    let e = err(npy("<f4", false, "(1099511627776,)", &[]));
    assert!(matches!(e, NpyError::ShapeTooLarge { .. }), "{e:?}");
    // does not even fit in 128 bits
    let e = err(npy(
        "<f4",
        false,
        "(9999999999999999999999999999999999999999999,)",
        &[],
    ));
    assert!(matches!(e, NpyError::Header { .. }), "{e:?}");
    // too many dimensions
    let e = err(npy(
        "<f4",
        false,
        &format!("({})", "1, ".repeat(17)),
        &f32s(&[1.]),
    ));
    assert!(matches!(e, NpyError::ShapeTooLarge { .. }), "{e:?}");
}

#[test]
fn negative_dim() {
    let e = err(npy("<f4", false, "(2, -1)", &f32s(&[1., 2.])));
    assert!(matches!(e, NpyError::NegativeDim { .. }), "{e:?}");
}

#[test]
fn data_shorter_than_shape() {
    let e = err(npy("<f4", false, "(2, 3)", &f32s(&[1., 2., 3., 4., 5.])));
    match e {
        NpyError::DataSize {
            expected, actual, ..
        } => assert_eq!((expected, actual), (24, 20)),
        other => panic!("{other:?}"),
    }
    // and longer
    let e = err(npy("<f4", false, "(1,)", &f32s(&[1., 2.])));
    assert!(matches!(
        e,
        NpyError::DataSize {
            expected: 4,
            actual: 8,
            ..
        }
    ));
}

#[test]
fn object_dtype_is_refused() {
    // np.save of an object array: the data is a pickle
    let e = err(npy("|O", false, "(1,)", b"\x80\x04\x95"));
    assert!(matches!(e, NpyError::ObjectArray(_)), "{e:?}");
    assert!(e.to_string().contains("pickle"));
}

#[test]
fn unsupported_and_string_dtypes_are_not_tensors() {
    let e = err(npy("<c8", false, "(1,)", &[0; 8]));
    assert!(matches!(e, NpyError::UnsupportedDtype(_)), "{e:?}");
    let e = err(npy("<U3", false, "(1,)", &[0; 12]));
    assert!(matches!(e, NpyError::NotNumeric(_)), "{e:?}");
    let e = err(npy_v(
        1,
        "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }",
        &[0; 8],
    ));
    assert!(matches!(e, NpyError::UnsupportedDtype(_)), "{e:?}");
}
