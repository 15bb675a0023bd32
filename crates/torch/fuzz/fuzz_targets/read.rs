//! Feeds arbitrary bytes to the PyTorch reader: it must return `Ok` or `Err`, never panic,
//! and every tensor it returns must be readable; every candidate model entry it lists must be
//! readable by name too.
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
        let entries = ck
            .metadata
            .iter()
            .find(|(k, _)| k == convlens_torch::META_ENTRIES)
            .map(|(_, v)| v.split('\n').map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default();
        for e in entries.into_iter().skip(1).take(4) {
            let opts = convlens_torch::ReadOptions { entry: Some(e) };
            let _ = convlens_torch::read_with(Blob::from_vec(data.to_vec()), &opts);
        }
    }
});
