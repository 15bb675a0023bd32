//! Fuzzes `convlens_hdf5::FilterDataset`: opening any bytes as an HDF5 file and reading the
//! first filters of the `filters` dataset may fail but never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("convlens-hdf5-fuzz-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(ds) = convlens_hdf5::FilterDataset::open(&path, &["filters", "filter"]) {
        if let Ok(v) = ds.read(0, ds.len().min(64)) {
            assert_eq!(v.len() as u64, 9 * ds.len().min(64));
        }
    }
});
