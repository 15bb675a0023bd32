#![no_main]
//! Any bytes: `read` returns a checkpoint or an error, never panics or over-allocates.

use convlens_core::Blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = convlens_safetensors::sniff(data);
    if let Ok(ckpt) = convlens_safetensors::read(Blob::from_vec(data.to_vec())) {
        for t in &ckpt.tensors {
            // element count is bounded by the input size once the reader accepted it
            let _ = t.tensor.to_f64();
        }
    }
});
