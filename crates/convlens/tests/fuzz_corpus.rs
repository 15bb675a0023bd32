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

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
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
                let now =
                    LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes that were live at the peak since the last call, above what was live then.
fn reset_peak() -> usize {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    live
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

/// What one input did: accepted by the reader, and the peak extra heap bytes while reading.
struct Replay {
    accepted: bool,
    read_peak: usize,
}

/// Runs one input through read → inspect → quality.
fn replay(bytes: Vec<u8>, name: &Path) -> Result<Replay, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let base = reset_peak();
        let read = read_bytes(name, Blob::from_vec(bytes));
        let read_peak = PEAK.load(Relaxed).saturating_sub(base);
        let Ok(ckpt) = read else {
            return Replay {
                accepted: false,
                read_peak,
            };
        };
        let _ = inspect_checkpoint(name, &ckpt, KernelSelect::All);
        let _ = analyse_checkpoint(name, &ckpt, KernelSelect::All);
        Replay {
            accepted: true,
            read_peak,
        }
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
                let base = reset_peak();
                let res = catch_unwind(|| {
                    convlens_hdf5::FilterDataset::open(&h5, &["filters", "filter"])
                        .map(|ds| {
                            let _ = ds.read(0, ds.len().min(64));
                        })
                        .is_ok()
                });
                let peak = PEAK.load(Relaxed).saturating_sub(base);
                match res {
                    Ok(ok) => h5_accepted += ok as usize,
                    Err(_) => panics.push(format!("{} (FilterDataset): panic", f.display())),
                }
                check_heap(&mut greedy, f, bytes.len(), peak);
            }
            let len = bytes.len();
            match replay(bytes, &name) {
                Ok(r) => {
                    accepted += r.accepted as usize;
                    check_heap(&mut greedy, f, len, r.read_peak);
                    worst = worst.max(r.read_peak as f64 / len.max(1) as f64);
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
