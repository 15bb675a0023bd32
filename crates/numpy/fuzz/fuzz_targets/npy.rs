#![no_main]
//! Any bytes: `read_npy` returns a checkpoint or an error, never panics or over-allocates.

use convlens_core::Blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = convlens_numpy::sniff_npy(data);
    if let Ok(ckpt) = convlens_numpy::read_npy(Blob::from_vec(data.to_vec())) {
        for t in &ckpt.tensors {
            let _ = t.tensor.to_f64();
        }
    }
});
