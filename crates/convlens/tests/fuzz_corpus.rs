//! Every input of the committed fuzz corpora (`crates/*/fuzz/corpus/<target>/`, minimised from
//! the libFuzzer runs of docs/fuzzing.md, findings included) replayed through the whole pipeline
//! a user runs — format detection, the reader, `inspect`, `quality` on every kernel size — in
//! the ordinary test build: nothing may panic. The fuzzers themselves need cargo-fuzz and
//! AddressSanitizer (`scripts/fuzz.sh`); this keeps what they found in every `cargo test`.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use convlens::core::Blob;
use convlens::extract::KernelSelect;
use convlens::quality::{analyse_checkpoint, inspect_checkpoint};
use convlens::read::read_bytes;

/// The corpora: (crate, target, file extension the input is read under).
const CORPORA: &[(&str, &str, &str)] = &[
    ("onnx", "read", "onnx"),
    ("torch", "read", "pt"),
    ("safetensors", "read", "safetensors"),
    ("numpy", "npy", "npy"),
    ("numpy", "npz", "npz"),
    ("tflite", "read", "tflite"),
    ("keras", "read", "h5"),
    ("hdf5", "read", "h5"),
];

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one input through read → inspect → quality; `Ok(true)` if the reader accepted it.
fn replay(bytes: Vec<u8>, name: &Path) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let Ok(ckpt) = read_bytes(name, Blob::from_vec(bytes)) else {
            return false;
        };
        let _ = inspect_checkpoint(name, &ckpt, KernelSelect::All);
        let _ = analyse_checkpoint(name, &ckpt, KernelSelect::All);
        true
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn every_fuzz_corpus_input_runs_through_the_pipeline_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // inputs are read as if they sat in an empty folder (ONNX external data finds nothing)
    let dir = std::env::temp_dir().join(format!("convlens-fuzz-corpus-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mut panics = Vec::new();
    let mut summary = Vec::new();
    for &(krate, target, ext) in CORPORA {
        let files = corpus_files(&root.join(format!("crates/{krate}/fuzz/corpus/{target}")));
        assert!(
            files.len() >= 10,
            "{krate}/{target}: only {} corpus files",
            files.len()
        );
        let mut accepted = 0;
        for f in &files {
            let name = dir.join(format!("input.{ext}"));
            let bytes = fs::read(f).unwrap();
            if krate == "hdf5" {
                // the CNN Filter DB reader of `db import-h5`, as its fuzz target calls it
                let h5 = dir.join("dataset.h5");
                fs::write(&h5, &bytes).unwrap();
                let res = catch_unwind(|| {
                    if let Ok(ds) = convlens_hdf5::FilterDataset::open(&h5, &["filters", "filter"])
                    {
                        let _ = ds.read(0, ds.len().min(64));
                    }
                });
                if res.is_err() {
                    panics.push(format!("{} (FilterDataset): panic", f.display()));
                }
            }
            match replay(bytes, &name) {
                Ok(ok) => accepted += ok as usize,
                Err(msg) => panics.push(format!("{}: {msg}", f.display())),
            }
        }
        summary.push(format!("{krate}/{target}: {}/{accepted}", files.len()));
        // the corpus reaches past the reader into extraction and measurement
        assert!(accepted > 0, "{krate}/{target}: no input was accepted");
    }
    let _ = fs::remove_dir_all(&dir);
    eprintln!(
        "corpus files / accepted by the reader: {}",
        summary.join(", ")
    );
    assert!(panics.is_empty(), "panics: {panics:#?}");
}
