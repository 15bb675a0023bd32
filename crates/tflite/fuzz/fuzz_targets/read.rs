//! Fuzzes `convlens_tflite::read` and `sniff`: neither may panic, and every tensor and weight
//! it returns must be readable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = convlens_tflite::sniff(data);
    let Ok(ck) = convlens_tflite::read(convlens_core::Blob::from_vec(data.to_vec())) else {
        return;
    };
    for t in &ck.tensors {
        let _ = t.tensor.to_f64();
    }
    if let Some(g) = &ck.graph {
        for c in &g.convs {
            if let Ok(w) = &c.weight {
                assert_eq!(w.to_f32().len(), w.numel());
            }
        }
    }
});
