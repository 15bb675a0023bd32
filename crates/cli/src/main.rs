//! `convlens`: a thin command-line front end to the convlens library.

mod output;

use clap::{Parser, Subcommand, ValueEnum};
use convlens::extract::KernelSelect;
use std::path::PathBuf;
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
            format,
            output,
        } => expand(&files).and_then(|f| output::inspect(&f, kernel, format, output.as_deref())),
        Command::Quality {
            files,
            kernel,
            format,
            groups,
            output,
        } => expand(&files)
            .and_then(|f| output::quality(&f, kernel, format, groups, output.as_deref())),
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
