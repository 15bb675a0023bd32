//! Every input of the committed fuzz corpora (`crates/*/fuzz/corpus/<target>/`, minimised from
//! the libFuzzer runs of docs/fuzzing.md, findings included) replayed through the whole pipeline
//! a user runs — format detection, the reader, `inspect`, `quality` on every kernel size — in
//! the ordinary test build: nothing may panic. The fuzzers themselves need cargo-fuzz and
//! AddressSanitizer (`scripts/fuzz.sh`); this keeps what they found in every `cargo test`.
//!
//! A counting allocator also checks that no reader allocates more than a small multiple of its
//! input: the peak of live heap bytes while an input is read stays below
//! `READ_FACTOR × len + READ_FLOOR`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use convlens::core::Blob;
use convlens::extract::KernelSelect;
use convlens::quality::{analyse_checkpoint, inspect_checkpoint};
use convlens::read::read_bytes;

/// Live heap bytes a reader may hold per input byte while it reads an input …
const READ_FACTOR: usize = 16;
/// … plus this much (decoder tables, small fixed buffers).
const READ_FLOOR: usize = 16 << 20;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Counts `n` more live bytes and raises the peak.
fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, catching a panic (its message is the error); returns its value and the peak of
/// live heap bytes it added above what was live before it.
fn measured<T>(f: impl FnOnce() -> T) -> Result<(T, usize), String> {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let value = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })?;
    Ok((value, PEAK.load(Relaxed).saturating_sub(base)))
}

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

/// Reads one input (measuring the reader's heap), then runs inspect and quality on it if the
/// reader accepted it; returns whether it did and the reader's heap peak.
fn replay(bytes: Vec<u8>, name: &Path) -> Result<(bool, usize), String> {
    let (read, peak) = measured(|| read_bytes(name, Blob::from_vec(bytes)))?;
    let Ok(ckpt) = read else {
        return Ok((false, peak));
    };
    measured(|| {
        let _ = inspect_checkpoint(name, &ckpt, KernelSelect::All);
        let _ = analyse_checkpoint(name, &ckpt, KernelSelect::All);
    })?;
    Ok((true, peak))
}

#[test]
fn every_fuzz_corpus_input_runs_through_the_pipeline_without_panicking() {
    let root = convlens_testdata::root();
    // inputs are read as if they sat in an empty folder (ONNX external data finds nothing)
    let dir = std::env::temp_dir().join(format!("convlens-fuzz-corpus-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mut panics = Vec::new();
    let mut greedy = Vec::new();
    let mut never = Vec::new();
    let mut summary = Vec::new();
    for &(krate, target, ext) in CORPORA {
        let files = corpus_files(&root.join(format!("crates/{krate}/fuzz/corpus/{target}")));
        assert!(
            files.len() >= 10,
            "{krate}/{target}: only {} corpus files",
            files.len()
        );
        let mut accepted = 0;
        let mut h5_accepted = 0;
        let mut worst = 0.0f64;
        for f in &files {
            let name = dir.join(format!("input.{ext}"));
            let bytes = fs::read(f).unwrap();
            if krate == "hdf5" {
                // the CNN Filter DB reader of `db import-h5`, as its fuzz target calls it
                let h5 = dir.join("dataset.h5");
                fs::write(&h5, &bytes).unwrap();
                let res = measured(|| {
                    convlens_hdf5::FilterDataset::open(&h5, &["filters", "filter"])
                        .map(|ds| {
                            let _ = ds.read(0, ds.len().min(64));
                        })
                        .is_ok()
                });
                match res {
                    Ok((ok, peak)) => {
                        h5_accepted += ok as usize;
                        check_heap(&mut greedy, f, bytes.len(), peak);
                    }
                    Err(msg) => panics.push(format!("{} (FilterDataset): {msg}", f.display())),
                }
            }
            let len = bytes.len();
            match replay(bytes, &name) {
                Ok((ok, peak)) => {
                    accepted += ok as usize;
                    check_heap(&mut greedy, f, len, peak);
                    worst = worst.max(peak as f64 / len.max(1) as f64);
                }
                Err(msg) => panics.push(format!("{}: {msg}", f.display())),
            }
        }
        summary.push(format!(
            "{krate}/{target}: {} files, {accepted} read as models{}, read heap ≤ {worst:.1}× input",
            files.len(),
            if krate == "hdf5" {
                format!(", {h5_accepted} as filter datasets")
            } else {
                String::new()
            }
        ));
        if accepted + h5_accepted == 0 {
            never.push(format!("{krate}/{target}"));
        }
    }
    let _ = fs::remove_dir_all(&dir);
    eprintln!("{}", summary.join("\n"));
    assert!(panics.is_empty(), "panics: {panics:#?}");
    assert!(
        greedy.is_empty(),
        "readers holding more than {READ_FACTOR}× their input + {READ_FLOOR} bytes: {greedy:#?}"
    );
    // every corpus reaches past its reader (into extraction and measurement)
    assert!(
        never.is_empty(),
        "corpora without a readable input: {never:?}"
    );
}

fn check_heap(greedy: &mut Vec<String>, f: &Path, len: usize, peak: usize) {
    if peak > READ_FACTOR * len + READ_FLOOR {
        greedy.push(format!(
            "{}: {len} bytes read with {peak} bytes of heap",
            f.display()
        ));
    }
}
