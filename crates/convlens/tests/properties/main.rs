//! Property tests (proptest) of the pipeline's invariants on random inputs, one file per
//! concept:
//!
//! * `measure`: per-layer metrics under out-channel permutations and positive scalings;
//! * `numeric`: `Moments` merges against one pass, `Bins` indices and counts, `np_sum`;
//! * `divergence`: KL and symmetric KL;
//! * `stats`: permutation tests and Benjamini–Hochberg;
//! * `hists`: per-model coefficient histograms (`ModelHists`) merged against the histogram of
//!   one model holding all their layers, through a tiny database;
//! * `db`: `db build` incremental against from scratch, and `--part` / file-list splits merged
//!   with `db merge` against one build, byte for byte, on real fixture models.
//!
//! Runs are deterministic: a fixed seed and no failure-persistence files (see [`config`]).
//! `PROPTEST_CASES` and `PROPTEST_RNG_SEED` override the case counts and the seed for a longer
//! or different exploration by hand.

#[path = "../common.rs"]
mod common;

mod db;
mod divergence;
mod hists;
mod measure;
mod numeric;
mod stats;

use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
use std::path::{Path, PathBuf};

/// The seed of every property (any fixed value; a failure is reproduced by re-running).
const SEED: u64 = 0x00C0_FFEE_5EED;

/// A deterministic configuration with `cases` cases: fixed seed and RNG algorithm, no
/// persistence files written into the checkout, shrinking bounded so that a failure of the
/// heavy properties is reported in reasonable time.
pub fn config(cases: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("PROPTEST_CASES").map_or(cases, |c| c as u32),
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(SEED)),
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    }
}

/// A fresh empty folder under cargo's temporary directory for integration tests, deleted when
/// dropped (also when a case fails).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("convlens-props-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the folder.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Relative closeness with an absolute floor: `|a − b| ≤ rel·max(|a|, |b|) + abs`; two NaNs
/// are close.
pub fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}
