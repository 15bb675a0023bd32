//! Fuzzes `convlens_keras::read_h5` and `read_keras`: neither may panic, and every kernel they
//! return must be readable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ck in [
        convlens_keras::read_h5(data.to_vec()).ok(),
        convlens_keras::read_keras(data).ok(),
    ]
    .into_iter()
    .flatten()
    {
        for t in &ck.tensors {
            assert_eq!(t.tensor.to_f32().len(), t.tensor.numel());
        }
    }
});
