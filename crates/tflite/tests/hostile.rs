//! Broken and malicious TFLite files (`fixtures/hostile/tflite/`, written by
//! `fixtures/tflite/make_tflite_fixtures.py`): a clear error, never a panic, and no allocation
//! sized by the file's claims.

use convlens_core::Blob;
use convlens_testdata::fixture;
use convlens_tflite::{read, TfliteError};

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("hostile/tflite/{name}"))).unwrap()
}

fn err(name: &str) -> TfliteError {
    match read(Blob::from_vec(bytes(name))) {
        Ok(_) => panic!("{name}: read succeeded"),
        Err(e) => e,
    }
}

#[test]
fn truncated_file_is_refused() {
    let e = err("truncated.tflite");
    assert!(matches!(e, TfliteError::OutOfBounds { .. }), "{e}");
    assert!(e.to_string().contains("truncated or corrupt"), "{e}");
}

#[test]
fn every_truncation_of_a_valid_file_fails_cleanly() {
    let good = std::fs::read(fixture("tflite/quantized.tflite")).unwrap();
    for n in 0..good.len() {
        // either an error or (for cuts in trailing padding) a model: never a panic
        let _ = read(Blob::from_vec(good[..n].to_vec()));
    }
    assert!(read(Blob::from_vec(good)).is_ok());
}

#[test]
fn offsets_beyond_the_file_are_refused() {
    for name in ["root_beyond_file.tflite", "offset_beyond_file.tflite"] {
        let e = err(name);
        assert!(matches!(e, TfliteError::OutOfBounds { .. }), "{name}: {e}");
    }
}

#[test]
fn vtable_loop_is_refused() {
    let e = err("vtable_loop.tflite");
    assert!(matches!(e, TfliteError::BadTable { .. }), "{e}");
    assert!(e.to_string().contains("vtable"), "{e}");
}

#[test]
fn huge_vector_length_is_refused_before_allocating() {
    let e = err("huge_vector.tflite");
    match &e {
        TfliteError::OutOfBounds { what, len, .. } => {
            assert_eq!(*what, "buffers");
            assert_eq!(*len, 4 * 0x7FFF_FFFF);
        }
        _ => panic!("{e}"),
    }
}

#[test]
fn dequantize_cycle_is_a_layer_error() {
    let ck = read(Blob::from_vec(bytes("dequantize_cycle.tflite"))).unwrap();
    let g = ck.graph.unwrap();
    let dw = g.convs.iter().find(|c| c.name == "dw").unwrap();
    let e = dw.weight.as_ref().unwrap_err();
    assert!(e.contains("DEQUANTIZE/DENSIFY operators in a row"), "{e}");
    // the other layers are still read
    assert_eq!(g.convs.iter().filter(|c| c.weight.is_ok()).count(), 4);
}

#[test]
fn huge_dense_shape_is_refused_by_the_decode_budget() {
    let ck = read(Blob::from_vec(bytes("huge_dense_shape.tflite"))).unwrap();
    let g = ck.graph.unwrap();
    let d = g.convs.iter().find(|c| c.name == "conv_d").unwrap();
    let e = d.weight.as_ref().unwrap_err();
    assert!(e.contains("decoded weights exceed the limit"), "{e}");
}

#[test]
fn random_byte_flips_never_panic() {
    let good = std::fs::read(fixture("tflite/quantized.tflite")).unwrap();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % b.len();
            b[i] = (seed >> 32) as u8;
        }
        if let Ok(ck) = read(Blob::from_vec(b)) {
            for c in ck.graph.iter().flat_map(|g| &g.convs) {
                if let Ok(w) = &c.weight {
                    assert_eq!(w.to_f32().len(), w.numel());
                }
            }
        }
    }
}
