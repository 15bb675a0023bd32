#![no_main]
//! Any bytes: `read_npz` / `read_npz_strings` return a value or an error, never panic, and
//! never decompress past their caps.

use convlens_core::Blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let blob = Blob::from_vec(data.to_vec());
    if let Ok(ckpt) = convlens_numpy::read_npz(blob.clone()) {
        for t in &ckpt.tensors {
            let _ = t.tensor.to_f64();
        }
    }
    let _ = convlens_numpy::read_npz_strings(blob, "a");
});
