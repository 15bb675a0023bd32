//! Rendering of `inspect` and `quality` results as table, JSON or CSV.

use crate::OutFormat;
use anyhow::Context;
use convlens::extract::KernelSelect;
use convlens::quality::{analyse_file_with, inspect_file_with, InspectReport, ModelReport};
use convlens::read::ReadOptions;
use rayon::prelude::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed file in JSON output.
#[derive(Serialize)]
struct Failure<'a> {
    file: String,
    error: &'a str,
}

fn open_out(output: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

/// Runs `f` on every file in parallel; results in input order; errors are printed to stderr.
fn run_all<T: Send, E: std::fmt::Display + Send>(
    files: &[PathBuf],
    f: impl Fn(&Path) -> Result<T, E> + Sync,
) -> Vec<(PathBuf, Result<T, String>)> {
    let results: Vec<_> = files
        .par_iter()
        .map(|p| (p.clone(), f(p).map_err(|e| e.to_string())))
        .collect();
    for (_, r) in &results {
        if let Err(e) = r {
            eprintln!("error: {e}");
        }
    }
    results
}

fn fmt_opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |x| x.to_string())
}

fn fmt_f(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "nan".to_string()
    }
}

fn fmt_list(v: &Option<Vec<i64>>) -> String {
    match v {
        Some(v) if !v.is_empty() => v
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_string(),
    }
}

/// Renders rows as aligned columns (first column left-aligned, the rest right-aligned).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: Vec<&str>| {
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.push('\n');
    };
    line(&mut s, header.to_vec());
    for r in rows {
        line(&mut s, r.iter().map(String::as_str).collect());
    }
    s
}

fn skipped_text(out: &mut String, skipped: &[convlens::extract::Skipped], notes: &[String]) {
    for s in skipped {
        let _ = writeln!(out, "  skipped {}: {}", s.name, s.reason);
    }
    for n in notes {
        let _ = writeln!(out, "  note: {n}");
    }
}

fn inspect_table(r: &InspectReport) -> String {
    let mut out = format!(
        "{} [{}] — {} conv layers, {} conv depths ({})\n",
        r.file,
        r.format,
        r.layers.len(),
        r.n_conv_depths,
        r.depth_source
    );
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.op.to_string(),
                format!(
                    "{}x{}x{}x{}",
                    l.shape[0], l.shape[1], l.shape[2], l.shape[3]
                ),
                format!("{}x{}", l.kh, l.kw),
                fmt_opt(&l.groups),
                l.n_filters.to_string(),
                fmt_list(&l.strides),
                fmt_list(&l.pads),
                fmt_list(&l.dilations),
                l.depth.to_string(),
                fmt_opt(&l.conv_depth),
                l.conv_depth_norm.map_or("-".into(), |v| format!("{v:.3}")),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "layer",
            "op",
            "shape",
            "kernel",
            "groups",
            "filters",
            "strides",
            "pads",
            "dilations",
            "depth",
            "conv_depth",
            "norm_depth",
        ],
        &rows,
    ));
    for t in &r.totals {
        let _ = writeln!(
            out,
            "  total {}x{}: {} layers, {} filters",
            t.kernel[0], t.kernel[1], t.layers, t.filters
        );
    }
    skipped_text(&mut out, &r.skipped, &r.notes);
    out
}

fn quality_table(r: &ModelReport) -> String {
    let mut out = format!(
        "{} [{}] — {} of {} conv layers analysed, {} conv depths ({})\n",
        r.file,
        r.format,
        r.layers.len(),
        r.n_conv_layers,
        r.n_conv_depths,
        r.depth_source
    );
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                format!("{}x{}", l.kernel[0], l.kernel[1]),
                l.filters.to_string(),
                l.depth_group.map_or("-".into(), |b| b.label()),
                fmt_f(l.sparsity),
                fmt_f(l.variance_entropy),
                fmt_f(l.orthogonality),
                fmt_f(l.layer_norm),
                fmt_f(l.l2_norm),
                fmt_f(l.tcq.variance_entropy),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "layer",
            "kernel",
            "filters",
            "depth",
            "sparsity",
            "entropy",
            "ortho",
            "max|w|",
            "l2",
            "tcq_entropy",
        ],
        &rows,
    ));
    if r.layers.is_empty() && r.n_conv_layers > 0 {
        out.push_str(
            "  (no conv layer of the selected kernel size; `--kernel all` analyses every size)\n",
        );
    }
    out.push_str("  by depth group:\n");
    let rows: Vec<Vec<String>> = r
        .depth_groups
        .iter()
        .map(|g| {
            vec![
                format!("  {}", g.group.label()),
                format!("{}x{}", g.kernel[0], g.kernel[1]),
                g.agg.layers.to_string(),
                g.agg.filters.to_string(),
                fmt_f(g.agg.sparsity),
                g.agg.variance_entropy.map_or("-".into(), fmt_f),
                fmt_f(g.agg.orthogonality),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "  group", "kernel", "layers", "filters", "sparsity", "entropy", "ortho",
        ],
        &rows,
    ));
    skipped_text(&mut out, &r.skipped, &r.notes);
    out
}

fn json_out<T: Serialize>(
    w: &mut dyn Write,
    results: &[(PathBuf, Result<T, String>)],
) -> anyhow::Result<()> {
    let mut items = Vec::with_capacity(results.len());
    for (p, r) in results {
        items.push(match r {
            Ok(v) => serde_json::to_value(v)?,
            Err(e) => serde_json::to_value(Failure {
                file: p.display().to_string(),
                error: e,
            })?,
        });
    }
    serde_json::to_writer_pretty(&mut *w, &items)?;
    writeln!(w)?;
    Ok(())
}

/// Writes results as a table, JSON or CSV (`csv` writes the header and the rows of the files
/// that succeeded); returns the number of failed files.
fn emit<T: Serialize>(
    results: &[(PathBuf, Result<T, String>)],
    format: OutFormat,
    output: Option<&Path>,
    table: impl Fn(&T) -> String,
    csv: impl Fn(&[&T]) -> Result<convlens_table::Table, convlens_table::TableError>,
) -> anyhow::Result<usize> {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let mut w = open_out(output)?;
    match format {
        OutFormat::Table => {
            for r in results.iter().filter_map(|(_, r)| r.as_ref().ok()) {
                writeln!(w, "{}", table(r))?;
            }
        }
        OutFormat::Json => json_out(&mut *w, results)?,
        OutFormat::Csv => {
            let ok: Vec<&T> = results
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .collect();
            w.write_all(&csv(&ok)?.to_csv_bytes()?)?;
        }
    }
    w.flush()?;
    Ok(failed)
}

/// `convlens inspect`: returns the number of failed files.
pub fn inspect(
    files: &[PathBuf],
    kernel: KernelSelect,
    read: &ReadOptions,
    format: OutFormat,
    output: Option<&Path>,
) -> anyhow::Result<usize> {
    let results = run_all(files, |p| inspect_file_with(p, kernel, read));
    emit(&results, format, output, inspect_table, |ok| {
        convlens::tables::inspect_layers(ok)
    })
}

/// `convlens quality`: returns the number of failed files.
pub fn quality(
    files: &[PathBuf],
    kernel: KernelSelect,
    read: &ReadOptions,
    format: OutFormat,
    groups: bool,
    output: Option<&Path>,
) -> anyhow::Result<usize> {
    let results = run_all(files, |p| analyse_file_with(p, kernel, read));
    emit(&results, format, output, quality_table, |ok| {
        if groups {
            convlens::tables::quality_groups(ok)
        } else {
            convlens::tables::quality_layers(ok)
        }
    })
}
