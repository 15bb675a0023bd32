//! Feeds arbitrary bytes to the PyTorch reader: it must return `Ok` or `Err`, never panic,
//! and every tensor it returns must be readable.
#![no_main]

use convlens_core::Blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = convlens_torch::sniff(data);
    if let Ok(ck) = convlens_torch::read(Blob::from_vec(data.to_vec())) {
        for t in ck.tensors.iter().take(64) {
            if t.tensor.numel() <= 1 << 16 {
                let _ = t.tensor.to_f64();
            }
        }
    }
});
