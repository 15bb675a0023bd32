//! The zoo-database commands: `db build`, `db status`, `basis`, `shift`, `kl-matrix`,
//! `aggregate`.

use anyhow::Context;
use convlens::compare::study::Scope;
use convlens::db::build::{BuildReport, Outcome};
use convlens_table::Table;
use serde::Serialize;
use std::path::Path;

/// Writes `value` as pretty JSON to `OUT/<stem>.json`, or to stdout without `out`.
pub fn write_json<T: Serialize>(out: Option<&Path>, stem: &str, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let p = dir.join(format!("{stem}.json"));
            std::fs::write(&p, text + "\n")
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// Writes a table as `OUT/<stem>.csv` and `OUT/<stem>.parquet`.
pub fn write_table(out: &Path, stem: &str, t: &Table) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    t.write_csv(&out.join(format!("{stem}.csv")))?;
    t.write_parquet(&out.join(format!("{stem}.parquet")))?;
    Ok(())
}

/// Prints the build summary; returns the number of failed models.
pub fn print_build(report: &BuildReport) -> usize {
    let mut failed = 0;
    for e in &report.status {
        match e.outcome {
            Outcome::Failed => {
                failed += 1;
                eprintln!("failed: {} ({}): {}", e.model, e.file, e.detail);
            }
            Outcome::Added | Outcome::Unchanged => {}
            _ => eprintln!(
                "{}: {} {}: {}",
                e.outcome.label(),
                e.model,
                e.file,
                e.detail
            ),
        }
    }
    let count = |o: Outcome| report.with(o).count();
    eprintln!(
        "database: {} models ({} added, {} unchanged, {} failed, {} duplicates, {} meta rows without file, {} without meta row, {} removed, {} skipped as not models)",
        report.models_in_db,
        count(Outcome::Added),
        count(Outcome::Unchanged),
        failed,
        count(Outcome::Duplicate),
        count(Outcome::MissingFile),
        count(Outcome::NoMetaRow),
        count(Outcome::Removed),
        count(Outcome::Skipped),
    );
    for (k, n) in &report.filters {
        eprintln!("  {}x{} filters: {n}", k[0], k[1]);
    }
    failed
}

/// Parses `KxK` into a kernel size.
pub fn parse_kernel(s: &str) -> Result<[usize; 2], String> {
    match s.parse::<convlens::extract::KernelSelect>()? {
        convlens::extract::KernelSelect::Size(a, b) => Ok([a, b]),
        convlens::extract::KernelSelect::All => {
            Err("a single kernel size such as 3x3 is needed here".into())
        }
    }
}

/// Builds a [`Scope`].
pub fn scope(
    conditions: Vec<convlens::db::select::Condition>,
    pairs: Option<std::path::PathBuf>,
    kernel: [usize; 2],
) -> Scope {
    Scope {
        conditions,
        pairs,
        kernel: Some(kernel),
    }
}
