//! Broken and malicious safetensors files, one test per attack, plus `key_order` handling on
//! hand-built files.

use convlens_core::{Blob, DType};
use convlens_safetensors::{read, sniff, SafetensorsError, ORDER_KEY_ORDER, ORDER_NATURAL};

/// A file with the given JSON header and data section.
fn file(header: &str, data: &[u8]) -> Blob {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    Blob::from_vec(v)
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn err(b: Blob) -> SafetensorsError {
    match read(b) {
        Ok(c) => panic!("accepted: {:?}", c.tensors),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            e
        }
    }
}

#[test]
fn empty_file() {
    let e = err(Blob::from_vec(vec![]));
    assert!(matches!(e, SafetensorsError::TooShort { len: 0 }));
    assert!(!sniff(&[]));
}

#[test]
fn wrong_magic() {
    // a zip file (e.g. a torch checkpoint) is not a safetensors file
    let mut zip = b"PK\x03\x04\x14\x00\x00\x08\x08\x00".to_vec();
    zip.resize(200, 0);
    assert!(!sniff(&zip));
    let e = err(Blob::from_vec(zip));
    assert!(matches!(e, SafetensorsError::HeaderTooLarge { .. }));
}

#[test]
fn header_length_past_end_of_file() {
    let mut v = 1000u64.to_le_bytes().to_vec();
    v.extend_from_slice(b"{\"a\":");
    let e = err(Blob::from_vec(v));
    assert!(matches!(
        e,
        SafetensorsError::HeaderPastEnd {
            len: 1000,
            file_len: 13
        }
    ));
}

#[test]
fn header_length_u64_max() {
    let mut v = u64::MAX.to_le_bytes().to_vec();
    v.extend_from_slice(b"{}");
    let e = err(Blob::from_vec(v));
    assert!(matches!(
        e,
        SafetensorsError::HeaderTooLarge { len: u64::MAX }
    ));
}

#[test]
fn invalid_json_header() {
    let e = err(file("{\"a\": {\"dtype\": \"F32\", ", &[]));
    assert!(matches!(e, SafetensorsError::Header(_)));
    // not UTF-8
    let mut v = 4u64.to_le_bytes().to_vec();
    v.extend_from_slice(b"{\xff}\n");
    let e = err(Blob::from_vec(v));
    assert!(matches!(e, SafetensorsError::Header(_)));
    // JSON, but not an object of tensors
    let e = err(file("[1, 2]", &[]));
    assert!(matches!(e, SafetensorsError::Header(_)));
    // unknown dtype name
    let e = err(file(
        r#"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    ));
    assert!(matches!(e, SafetensorsError::Header(_)));
}

#[test]
fn offsets_out_of_range() {
    // the only tensor claims bytes 0..8 but the file holds 4 data bytes
    let e = err(file(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &f32s(&[1.0]),
    ));
    assert!(
        matches!(
            e,
            SafetensorsError::DataLength {
                data_end: 8,
                available: 4
            }
        ),
        "{e:?}"
    );
    // offsets far beyond usize range of the file
    let e = err(file(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}}"#,
        &f32s(&[1.0]),
    ));
    assert!(matches!(e, SafetensorsError::Offsets { .. }), "{e:?}");
}

#[test]
fn offsets_overlapping() {
    let e = err(file(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        &f32s(&[1.0, 2.0, 3.0]),
    ));
    match e {
        SafetensorsError::Offsets { name, start, .. } => {
            assert_eq!(name, "b");
            assert_eq!(start, 4);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn offsets_reversed() {
    let e = err(file(
        r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#,
        &f32s(&[1.0]),
    ));
    assert!(matches!(e, SafetensorsError::Offsets { .. }), "{e:?}");
}

#[test]
fn dtype_shape_size_mismatch() {
    // F32 [3] needs 12 bytes, the offsets span 8
    let e = err(file(
        r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        &f32s(&[1.0, 2.0]),
    ));
    match e {
        SafetensorsError::SizeMismatch {
            name, needed, span, ..
        } => {
            assert_eq!((name.as_str(), needed, span), ("w", 12, 8));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shape_overflow() {
    let e = err(file(
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#,
        &f32s(&[1.0]),
    ));
    assert!(matches!(e, SafetensorsError::SizeMismatch { .. }), "{e:?}");
}

#[test]
fn unsupported_dtype_is_skipped_with_a_note() {
    let ckpt = read(file(
        r#"{"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        &[1, 0, 2, 0, 0, 0, 0x80, 0x3f],
    ))
    .unwrap();
    assert_eq!(ckpt.tensors.len(), 1);
    assert_eq!(ckpt.tensors[0].name, "b");
    assert_eq!(ckpt.tensors[0].tensor.to_f32(), vec![1.0]);
    assert_eq!(ckpt.notes.len(), 1);
    assert!(ckpt.notes[0].contains("'a'") && ckpt.notes[0].contains("U16"));
}

#[test]
fn every_supported_dtype_reads() {
    let header = r#"{"f16":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"bf16":{"dtype":"BF16","shape":[1],"data_offsets":[2,4]},"f64":{"dtype":"F64","shape":[1],"data_offsets":[4,12]},"i8":{"dtype":"I8","shape":[1],"data_offsets":[12,13]},"u8":{"dtype":"U8","shape":[1],"data_offsets":[13,14]},"bool":{"dtype":"BOOL","shape":[1],"data_offsets":[14,15]},"i16":{"dtype":"I16","shape":[1],"data_offsets":[15,17]},"i32":{"dtype":"I32","shape":[1],"data_offsets":[17,21]},"i64":{"dtype":"I64","shape":[1],"data_offsets":[21,29]}}"#;
    let mut d = vec![];
    d.extend_from_slice(&0x3e00u16.to_le_bytes()); // f16 1.5
    d.extend_from_slice(&0xc000u16.to_le_bytes()); // bf16 -2
    d.extend_from_slice(&0.1f64.to_le_bytes());
    d.push(0xfe); // i8 -2
    d.push(200); // u8
    d.push(1); // bool
    d.extend_from_slice(&(-300i16).to_le_bytes());
    d.extend_from_slice(&70000i32.to_le_bytes());
    d.extend_from_slice(&(-(1i64 << 40)).to_le_bytes());
    let c = read(file(header, &d)).unwrap();
    let v = |n: &str| c.tensor(n).unwrap().to_f64()[0];
    assert_eq!(c.tensor("bf16").unwrap().dtype(), DType::BF16);
    assert_eq!(
        [v("f16"), v("bf16"), v("f64"), v("i8"), v("u8"), v("bool")],
        [1.5, -2.0, 0.1, -2.0, 200.0, 1.0]
    );
    assert_eq!(
        [v("i16"), v("i32"), v("i64")],
        [-300.0, 70000.0, -(2f64.powi(40))]
    );
}

fn three_tensors(meta: &str) -> Blob {
    let header = format!(
        r#"{{"__metadata__":{meta},"features.10.weight":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}},"features.2.weight":{{"dtype":"F32","shape":[1],"data_offsets":[4,8]}},"classifier.weight":{{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}}}"#
    );
    file(&header, &f32s(&[10.0, 2.0, 99.0]))
}

fn names(c: &convlens_core::Checkpoint) -> Vec<&str> {
    c.tensors.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn natural_order_without_key_order() {
    let c = read(three_tensors(r#"{"arch":"x"}"#)).unwrap();
    assert_eq!(c.order_source, ORDER_NATURAL);
    assert_eq!(
        names(&c),
        [
            "classifier.weight",
            "features.2.weight",
            "features.10.weight"
        ]
    );
    assert_eq!(c.tensor("features.10.weight").unwrap().to_f32(), vec![10.0]);
    assert_eq!(c.metadata, vec![("arch".to_string(), "x".to_string())]);
}

#[test]
fn key_order_is_followed() {
    let c = read(three_tensors(
        r#"{"key_order":"[\"features.10.weight\", \"gone.weight\", \"classifier.weight\", \"features.10.weight\"]"}"#,
    ))
    .unwrap();
    assert_eq!(c.order_source, ORDER_KEY_ORDER);
    // listed names first (unknown and repeated ones ignored), the unlisted one appended
    assert_eq!(
        names(&c),
        [
            "features.10.weight",
            "classifier.weight",
            "features.2.weight"
        ]
    );
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
}

#[test]
fn malformed_key_order_falls_back_to_natural_sort() {
    let c = read(three_tensors(r#"{"key_order":"[1, 2"}"#)).unwrap();
    assert_eq!(c.order_source, ORDER_NATURAL);
    assert_eq!(
        names(&c),
        [
            "classifier.weight",
            "features.2.weight",
            "features.10.weight"
        ]
    );
    assert_eq!(c.notes.len(), 1);
}
