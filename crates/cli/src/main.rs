//! `convlens`: a thin command-line front end to the convlens library.

mod db_cmd;
mod fingerprint_cmd;
mod output;
mod stem_cmd;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use convlens::compare::shift::Density;
use convlens::db::build::Outcome;
use convlens::db::select::Condition;
use convlens::extract::KernelSelect;
use convlens::read::ReadOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "convlens",
    version,
    about = "Look inside trained CNNs through their convolution filters",
    long_about = "Look inside trained CNNs through their convolution filters.\n\nReads ONNX, PyTorch (.pt/.pth/.bin/.ckpt: zip, legacy, TorchScript, pickled modules), safetensors and NumPy (.npy/.npz) checkpoints without Python, extracts every convolution layer and measures its filters as in Gavrikov & Keuper (CVPR 2022, CVPRW 2022)."
)]
struct Cli {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(short = 'j', long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OutFormat {
    /// Aligned text for people.
    Table,
    /// One JSON object per file, in an array.
    Json,
    /// One row per layer (or per depth group with --groups).
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// List the convolution layers of model files: shapes, groups, kernel sizes, depths.
    Inspect {
        /// Model files, or folders to search for model files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Kernel sizes to list: `all` or `KxK` (e.g. `3x3`).
        #[arg(short, long, default_value = "all")]
        kernel: KernelSelect,
        /// Checkpoint entry holding the model (e.g. `model_ema`, `D`; default: the
        /// documented choice, listed in the notes with the other candidates).
        #[arg(long)]
        entry: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutFormat::Table)]
        format: OutFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Filter-quality metrics per layer (sparsity, variance entropy, orthogonality, norms) and
    /// per-model aggregates by depth group.
    Quality {
        /// Model files, or folders to search for model files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Kernel sizes to analyse: `3x3` (the papers' choice), `all` or `KxK`.
        #[arg(short, long, default_value = "3x3")]
        kernel: KernelSelect,
        /// Checkpoint entry holding the model (e.g. `model_ema`, `D`; default: the
        /// documented choice, listed in the notes with the other candidates).
        #[arg(long)]
        entry: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutFormat::Table)]
        format: OutFormat,
        /// CSV only: one row per (model, kernel, depth group) instead of per layer.
        #[arg(long)]
        groups: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// First-layer perturbation analysis: do the stem filters (with their ReLU) remove
    /// adversarial perturbations?
    Stem(stem_cmd::StemArgs),
    /// One HTML report of a zoo (folder of checkpoints) or database: every figure of the
    /// papers as SVG/PNG/PDF, the shift and quality tables and the model list.
    Report {
        /// Zoo folder or single checkpoint (a database is built in OUT/db), or database folder.
        input: PathBuf,
        /// Output folder (index.html, figures/).
        #[arg(short, long, default_value = "report")]
        output: PathBuf,
        /// Meta column whose groups are compared.
        #[arg(long, default_value = "Robust")]
        compare: String,
        /// Meta table (default: meta.csv in the zoo folder).
        #[arg(long)]
        meta: Option<PathBuf>,
        /// Robust ↔ normal pairings (default: pairings.csv in the zoo folder).
        #[arg(long)]
        pairs: Option<PathBuf>,
        /// Bootstrap resamples of the shift's confidence interval.
        #[arg(long, default_value_t = 200)]
        bootstrap: usize,
        /// Clean + perturbed images for the stem section (default: adv_examples.npz in the zoo).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Only these figures (comma-separated): filters, rgb, strip, basis, variance, ridge,
        /// kl, depth, boxes, density, stem, fingerprint. Default: all.
        #[arg(long, value_delimiter = ',')]
        figures: Vec<String>,
        /// Checkpoint entry holding the model in files read (e.g. `model_ema`; a meta
        /// table's `Entry` column overrides it per model). Default: each file's default.
        #[arg(long)]
        entry: Option<String>,
    },
    /// How likely each checkpoint is to be adversarially trained, with the evidence: the
    /// explained-variance spectrum of its 3×3 filters against the robust and normal models of the
    /// robustness study (`--train` rebuilds the model from the published table).
    Fingerprint(fingerprint_cmd::FingerprintArgs),
    /// Build and inspect a filter database of a model zoo.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// PCA basis of the l∞-scaled non-sparse filters: whole selection, per group, per model.
    Basis {
        /// Database folder.
        db: PathBuf,
        #[command(flatten)]
        sel: SelectArgs,
        /// Also fit one basis per value of this meta column.
        #[arg(long)]
        by: Option<String>,
        /// Output folder (JSON, CSV, Parquet); JSON on standard output without it.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Distribution shift between two groups (e.g. robust vs normal): variance-weighted
    /// symmetric KL of the coefficient distributions, overall, first layer and depth deciles,
    /// with a noise floor.
    Shift {
        /// Database folder.
        db: PathBuf,
        /// Meta column whose two values are compared.
        #[arg(long, default_value = "Robust")]
        by: String,
        /// Repeat the comparison within each value of this column (e.g. Training-Dataset).
        #[arg(long)]
        within: Option<String>,
        #[command(flatten)]
        sel: SelectArgs,
        /// Density estimate: 70-bin histograms (the papers') or Gaussian KDE.
        #[arg(long, value_enum, default_value_t = DensityArg::Hist)]
        density: DensityArg,
        /// Random half-splits per group for the within-group noise floor.
        #[arg(long, default_value_t = 50)]
        splits: usize,
        /// Bootstrap resamples over models.
        #[arg(long, default_value_t = 200)]
        bootstrap: usize,
        /// Seed of splits, resamples and permutations.
        #[arg(long, default_value_t = 0x5EED)]
        seed: u64,
        /// Label permutations per cell for the permutation test (0: none; every labelling when
        /// there are at most this many).
        #[arg(long, default_value_t = convlens::compare::stats::PERMUTATIONS)]
        permutations: usize,
        /// Always draw --permutations random labellings, even when all of them are fewer.
        #[arg(long)]
        random_permutations: bool,
        /// Column telling replicate runs apart (default: Seed, when present).
        #[arg(long)]
        replicate_col: Option<String>,
        /// Columns replicate runs must share (default: Network, plus --by and --within).
        #[arg(long = "match", value_delimiter = ',')]
        match_cols: Vec<String>,
        /// Output folder (JSON, CSV, Parquet); JSON on standard output without it.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Symmetric KL between every pair of groups (e.g. `--by model`, `--by Network`).
    KlMatrix {
        /// Database folder.
        db: PathBuf,
        /// Meta column defining the groups (`model` for one group per model).
        #[arg(long)]
        by: String,
        /// Cell: overall, first or a decile label such as "(0.9, 1.0]".
        #[arg(long, default_value = "overall")]
        cell: String,
        #[command(flatten)]
        sel: SelectArgs,
        /// Density estimate.
        #[arg(long, value_enum, default_value_t = DensityArg::Hist)]
        density: DensityArg,
        /// Output folder (JSON, CSV, Parquet); JSON on standard output without it.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Per-model sparsity, variance entropy and orthogonality by depth group (the data of the
    /// paper's box plots).
    Aggregate {
        /// Database folder.
        db: PathBuf,
        /// Meta column to label models with (e.g. Robust); with two values, the group
        /// differences are tested.
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        sel: SelectArgs,
        /// Label permutations per test (0: none).
        #[arg(long, default_value_t = convlens::compare::stats::PERMUTATIONS)]
        permutations: usize,
        /// Seed of the permutations.
        #[arg(long, default_value_t = 0x5EED)]
        seed: u64,
        /// Test the group differences within each value of this column (e.g. Training-Dataset).
        #[arg(long)]
        within: Option<String>,
        /// Output folder (JSON, CSV, Parquet); JSON on standard output without it.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// Database subcommands.
#[derive(Subcommand)]
enum DbCommand {
    /// Collect the conv filters of every checkpoint under a folder into a database.
    Build {
        /// Zoo folder (searched recursively for model files).
        zoo: PathBuf,
        /// Meta table (CSV, one row per model, joined by name; an `Entry` column names the
        /// checkpoint entry holding the model, e.g. `model_ema`).
        #[arg(long)]
        meta: Option<PathBuf>,
        /// Meta column holding the model name.
        #[arg(long, default_value = "Name")]
        name_col: String,
        /// Database folder to create or update.
        #[arg(short, long)]
        output: PathBuf,
        /// Only these file extensions (e.g. `onnx` or `safetensors,pt`).
        #[arg(long, value_delimiter = ',')]
        formats: Vec<String>,
        /// Kernel sizes to store: `3x3` (default), `all` or `KxK`.
        #[arg(short, long, default_value = "3x3")]
        kernel: KernelSelect,
        /// Re-read every file, even unchanged ones.
        #[arg(long)]
        force: bool,
        /// Partial database of only the files listed in LIST (one path per line, relative to
        /// the zoo folder; `#` comments and blank lines ignored; `-` reads stdin). Repeatable.
        #[arg(long = "files", value_name = "LIST")]
        file_lists: Vec<PathBuf>,
        /// Partial database of only this file (relative to the zoo folder). Repeatable.
        #[arg(long = "file", value_name = "PATH")]
        file: Vec<PathBuf>,
        /// Partial database of part I of N (0 <= I < N): every N-th model of the name-sorted
        /// model list, starting at the I-th.
        #[arg(long, value_name = "I/N", value_parser = parse_part)]
        part: Option<(usize, usize)>,
    },
    /// Merge partial databases into one, identical to a single build of all their files.
    Merge {
        /// Databases to merge (built with the same settings).
        #[arg(required = true)]
        dbs: Vec<PathBuf>,
        /// New database folder (must not exist or be empty).
        #[arg(short, long)]
        output: PathBuf,
        /// Hard-link the shards instead of copying them (inputs on the same file system).
        #[arg(long)]
        link: bool,
    },
    /// Import the authors' published filter DB layout, converted to `.npy` + CSV (see
    /// docs/filter-db-import.md for the three-line Python conversion of `dataset.h5`).
    ImportNpy {
        /// Filters, `N×3×3` or `N×9` float32 `.npy`.
        filters: PathBuf,
        /// One row per (model, conv depth): `model` or `model_id`, `conv_depth`,
        /// `conv_depth_norm`, `first_filter_id`, `last_filter_id`, and meta columns.
        #[arg(long)]
        info: PathBuf,
        /// Database folder to create.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Import the authors' published CNN Filter DB (`dataset.h5` with `filterinfo.csv` and,
    /// optionally, the per-model meta CSV), streaming the filters model by model.
    ImportH5 {
        /// HDF5 file with a `filters` (or `filter`) dataset, `N×3×3` or `N×9` float32/float64.
        h5: PathBuf,
        /// One row per (model, conv depth): `model` or `model_id`, `conv_depth`,
        /// `conv_depth_norm`, `first_filter_id`, `last_filter_id`, and meta columns.
        #[arg(long)]
        info: PathBuf,
        /// One row per model (`model`, `model_id` or `Name` column), joined to `--info`.
        #[arg(long)]
        meta: Option<PathBuf>,
        /// Database folder to create.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Show what the database holds and every model that is not in it, with the reason.
    Status {
        /// Database folder.
        db: PathBuf,
    },
}

/// Model selection shared by the analysis commands.
#[derive(clap::Args, Clone)]
struct SelectArgs {
    /// Keep only models whose meta column equals a value (repeatable): `--where Training-Dataset=cifar10`.
    #[arg(long = "where")]
    conditions: Vec<Condition>,
    /// Keep only models of complete robust ↔ normal pairs from this table (`Robust`, `Normal` columns).
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Kernel size to analyse.
    #[arg(long, default_value = "3x3", value_parser = db_cmd::parse_kernel)]
    kernel: [usize; 2],
}

impl SelectArgs {
    fn scope(self) -> convlens::compare::study::Scope {
        db_cmd::scope(self.conditions, self.pairs, self.kernel)
    }
}

/// Density estimate.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum DensityArg {
    /// 70-bin histograms (the papers').
    Hist,
    /// Gaussian kernel density estimate (Silverman bandwidth).
    Kde,
}

impl From<DensityArg> for Density {
    fn from(d: DensityArg) -> Density {
        match d {
            DensityArg::Hist => Density::Histogram,
            DensityArg::Kde => Density::Kde,
        }
    }
}

/// Replaces every folder argument by the model files found under it.
fn expand(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let found = convlens::read::find_models(a)
                .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", a.display()))?;
            if found.is_empty() {
                anyhow::bail!("{}: no model files found in this folder", a.display());
            }
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Parses `I/N` with `0 <= I < N`.
fn parse_part(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("invalid part {s:?}: expected I/N with 0 <= I < N, such as 0/8");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Reads a list of files, one per line (`-`: stdin); blank lines and `#` comments are skipped.
fn read_file_list(list: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = if list == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the file list from stdin")?
    } else {
        std::fs::read_to_string(list)
            .with_context(|| format!("--files {}: cannot read the list", list.display()))?
    };
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(PathBuf::from)
        .collect())
}

fn report_excluded(excluded: &[(String, String)]) {
    for (m, why) in excluded {
        eprintln!("excluded: {m}: {why}");
    }
}

fn run_db(command: DbCommand) -> anyhow::Result<usize> {
    match command {
        DbCommand::Build {
            zoo,
            meta,
            name_col,
            output,
            formats,
            kernel,
            force,
            file_lists,
            file,
            part,
        } => {
            let mut files = file;
            for list in &file_lists {
                files.extend(read_file_list(list)?);
            }
            if !file_lists.is_empty() && files.is_empty() {
                anyhow::bail!("--files: the lists name no file");
            }
            let opts = convlens::db::build::BuildOptions {
                meta,
                name_column: name_col,
                formats,
                kernel,
                force,
                files,
                part,
                entry: None,
            };
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} models {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = convlens::db::build::build(&zoo, &output, &opts, &|done, total, name| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(name.to_string());
            })?;
            bar.finish_and_clear();
            Ok(db_cmd::print_build(&report))
        }
        DbCommand::Merge { dbs, output, link } => {
            use convlens::db::merge::{merge_with, ShardTransfer};
            let transfer = if link {
                ShardTransfer::HardLink
            } else {
                ShardTransfer::Copy
            };
            let r = merge_with(&dbs, &output, transfer)?;
            for m in &r.deduplicated {
                eprintln!("deduplicated: {m} (identical in several inputs, stored once)");
            }
            let failed = r
                .status
                .iter()
                .filter(|e| e.outcome == Outcome::Failed)
                .count();
            eprintln!(
                "merged {} databases into {}: {} models, {failed} failed",
                dbs.len(),
                output.display(),
                r.models
            );
            for (k, n) in &r.filters {
                eprintln!("  {}x{} filters: {n}", k[0], k[1]);
            }
            Ok(failed)
        }
        DbCommand::ImportNpy {
            filters,
            info,
            output,
        } => {
            let n = convlens::db::import::import_npy(&filters, &info, &output)?;
            eprintln!("imported {n} models into {}", output.display());
            Ok(0)
        }
        DbCommand::ImportH5 {
            h5,
            info,
            meta,
            output,
        } => {
            let n = convlens::db::import::import_h5(&h5, &info, meta.as_deref(), &output)?;
            eprintln!("imported {n} models into {}", output.display());
            Ok(0)
        }
        DbCommand::Status { db } => {
            let d = convlens::db::Db::open(&db)?;
            let status = db.join("status.csv");
            let text = std::fs::read_to_string(&status)
                .map_err(|e| anyhow::anyhow!("{}: {e}", status.display()))?;
            print!("{text}");
            let n: u64 = d
                .models
                .iter()
                .flat_map(|m| m.kernels.iter().map(|k| k.n_filters))
                .sum();
            eprintln!("{} models, {n} filters in {}", d.models.len(), db.display());
            Ok(text
                .lines()
                .skip(1)
                .filter(|l| l.contains(",failed,"))
                .count())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
        {
            eprintln!("error: cannot start {n} threads: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Inspect {
            files,
            kernel,
            entry,
            format,
            output,
        } => {
            let read = ReadOptions::entry(entry.as_deref());
            expand(&files)
                .and_then(|f| output::inspect(&f, kernel, &read, format, output.as_deref()))
        }
        Command::Quality {
            files,
            kernel,
            entry,
            format,
            groups,
            output,
        } => {
            let read = ReadOptions::entry(entry.as_deref());
            expand(&files)
                .and_then(|f| output::quality(&f, kernel, &read, format, groups, output.as_deref()))
        }
        Command::Db { command } => run_db(command),
        Command::Stem(args) => stem_cmd::run(args),
        Command::Fingerprint(args) => fingerprint_cmd::run(args, &expand),
        Command::Report {
            input,
            output,
            compare,
            meta,
            pairs,
            bootstrap,
            images,
            figures,
            entry,
        } => (|| {
            let opts = convlens::report::ReportOptions {
                compare,
                meta,
                pairs,
                bootstrap,
                images,
                figures,
                entry: ReadOptions::entry(entry.as_deref()).entry,
                ..Default::default()
            };
            let r = convlens::report::report(&input, &output, &opts)?;
            let failed = match &r.build {
                Some(b) => db_cmd::print_build(b),
                None => 0,
            };
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!(
                "report: {} ({} figures as SVG, PNG and PDF in {})",
                r.index.display(),
                r.figures.len(),
                output.join("figures").display()
            );
            Ok(failed)
        })(),
        Command::Basis {
            db,
            sel,
            by,
            output,
        } => (|| {
            let d = convlens::db::Db::open(&db)?;
            let r = convlens::compare::study::basis(&d, &sel.scope(), by.as_deref())?;
            report_excluded(&r.excluded);
            if let Some(out) = &output {
                db_cmd::write_table(out, "basis", &convlens::tables::basis(&r)?)?;
            }
            db_cmd::write_json(output.as_deref(), "basis", &r)?;
            Ok(0)
        })(),
        Command::Shift {
            db,
            by,
            within,
            sel,
            density,
            splits,
            bootstrap,
            seed,
            permutations,
            random_permutations,
            replicate_col,
            match_cols,
            output,
        } => (|| {
            let d = convlens::db::Db::open(&db)?;
            let opts = convlens::compare::study::ShiftOptions {
                by,
                within,
                density: density.into(),
                splits,
                bootstrap,
                seed,
                replicate_column: replicate_col,
                match_columns: match_cols,
                permutations,
                exact_permutations: !random_permutations,
            };
            let r = convlens::compare::study::shift(&d, &sel.scope(), &opts)?;
            report_excluded(&r.excluded);
            if let Some(out) = &output {
                let (cells, pairs) = convlens::tables::shift(&r)?;
                db_cmd::write_table(out, "shift", &cells)?;
                if !r.pairs.is_empty() {
                    db_cmd::write_table(out, "shift_pairs", &pairs)?;
                }
            }
            db_cmd::write_json(output.as_deref(), "shift", &r)?;
            Ok(0)
        })(),
        Command::KlMatrix {
            db,
            by,
            cell,
            sel,
            density,
            output,
        } => (|| {
            let d = convlens::db::Db::open(&db)?;
            let r =
                convlens::compare::study::kl_matrix(&d, &sel.scope(), &by, &cell, density.into())?;
            report_excluded(&r.excluded);
            if let Some(out) = &output {
                db_cmd::write_table(out, "kl_matrix", &convlens::tables::kl_matrix(&r)?)?;
            }
            db_cmd::write_json(output.as_deref(), "kl_matrix", &r)?;
            Ok(0)
        })(),
        Command::Aggregate {
            db,
            by,
            sel,
            permutations,
            seed,
            within,
            output,
        } => (|| {
            let d = convlens::db::Db::open(&db)?;
            let r = convlens::compare::study::aggregate_with(
                &d,
                &sel.scope(),
                by.as_deref(),
                &convlens::compare::study::AggregateOptions {
                    permutations,
                    seed,
                    within,
                },
            )?;
            report_excluded(&r.excluded);
            if let Some(out) = &output {
                db_cmd::write_table(out, "aggregate", &convlens::tables::aggregate(&r)?)?;
                if !r.tests.is_empty() {
                    db_cmd::write_table(
                        out,
                        "aggregate_tests",
                        &convlens::tables::aggregate_tests(&r)?,
                    )?;
                }
            }
            db_cmd::write_json(output.as_deref(), "aggregate", &r)?;
            Ok(0)
        })(),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("error: {failed} file(s) could not be analysed (listed above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
