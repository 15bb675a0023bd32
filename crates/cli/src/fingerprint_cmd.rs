//! `convlens fingerprint`: how likely each checkpoint is to be adversarially trained, and the
//! training of the fingerprint model itself (`--train`).

use crate::OutFormat;
use anyhow::Context;
use convlens::fingerprint::{
    fingerprint_file, read_training, Fingerprint, FingerprintError, FingerprintModel,
};
use convlens::quality::AnalyseError;
use std::path::PathBuf;

/// Arguments of `convlens fingerprint`.
#[derive(clap::Args)]
pub struct FingerprintArgs {
    /// Model files, or folders to search for model files.
    #[arg(required_unless_present = "train")]
    files: Vec<PathBuf>,
    /// Fingerprint model (default: the bundled data/fingerprint.json).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output format (table or json).
    #[arg(short, long, value_enum, default_value_t = OutFormat::Table)]
    format: OutFormat,
    /// Train a model on this table (fixtures/paper/model_spectra.csv) instead of predicting.
    #[arg(long, conflicts_with_all = ["files", "model"])]
    train: Option<PathBuf>,
    /// With --train: also validate on this zoo folder (meta.csv with Name, Robust); repeatable.
    #[arg(long, requires = "train")]
    validate: Vec<PathBuf>,
    /// Write here instead of standard output (the model with --train).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

fn write(out: Option<&PathBuf>, text: String) -> anyhow::Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn table(results: &[Result<Fingerprint, FingerprintError>]) -> String {
    let mut s = String::new();
    for r in results {
        let Ok(f) = r else { continue };
        let p = &f.prediction;
        s.push_str(&format!(
            "{}\n  P(adversarially trained) = {:.3}: {} ({} non-sparse 3x3 filters in {} layers)\n",
            f.model, p.probability_robust, p.verdict, f.n_filters, f.layers
        ));
        for e in &p.evidence {
            s.push_str(&format!(
                "  {:<5} = {:.4}  robust median {:.4} [{:.4}, {:.4}], normal median {:.4} [{:.4}, {:.4}]; percentile {:.0} among robust, {:.0} among normal models; nearer {}; logit term {:+.2}\n",
                e.feature,
                e.value,
                e.robust_median,
                e.robust_range[0],
                e.robust_range[1],
                e.normal_median,
                e.normal_range[0],
                e.normal_range[1],
                100.0 * e.percentile_in_robust,
                100.0 * e.percentile_in_normal,
                e.closer_to,
                e.contribution
            ));
        }
        if let Some(w) = &p.warning {
            s.push_str(&format!("  warning: {w}\n"));
        }
    }
    s
}

/// Runs the command; returns the number of refused files.
pub fn run(
    args: FingerprintArgs,
    expand: &dyn Fn(&[PathBuf]) -> anyhow::Result<Vec<PathBuf>>,
) -> anyhow::Result<usize> {
    if let Some(table_path) = &args.train {
        let rows = read_training(table_path)?;
        let zoos: Vec<(String, PathBuf)> = args
            .validate
            .iter()
            .map(|d| (d.display().to_string(), d.clone()))
            .collect();
        let m = FingerprintModel::train(&table_path.display().to_string(), &rows, &zoos)?;
        let v = &m.validation;
        eprintln!(
            "trained on {} models ({} robust, {} normal): leave-one-paper-out accuracy {:.3} ({} folds), leave-one-architecture-out {:.3} ({} folds)",
            rows.len(),
            m.training_models[0],
            m.training_models[1],
            v.leave_one_paper_out.accuracy,
            v.leave_one_paper_out.folds,
            v.leave_one_architecture_out.accuracy,
            v.leave_one_architecture_out.folds
        );
        for t in &v.transfer {
            eprintln!(
                "transfer to {}: accuracy {} on {} models",
                t.zoo,
                t.accuracy.map_or("–".into(), |a| format!("{a:.3}")),
                t.n
            );
        }
        write(
            args.output.as_ref(),
            serde_json::to_string_pretty(&m)? + "\n",
        )?;
        return Ok(0);
    }
    let model = match &args.model {
        Some(p) => FingerprintModel::load(p)?,
        None => FingerprintModel::bundled()?,
    };
    // files found in a folder without any 3x3 convolution (e.g. image archives) are skipped, as
    // `db build` does
    let mut files = Vec::new();
    let mut results: Vec<Result<Fingerprint, FingerprintError>> = Vec::new();
    let mut refused = 0;
    for arg in &args.files {
        let from_dir = arg.is_dir();
        for f in expand(std::slice::from_ref(arg))? {
            let r = fingerprint_file(&model, &f);
            match &r {
                Err(FingerprintError::Analyse(AnalyseError::NoConvLayers { .. }))
                | Err(FingerprintError::TooFewFilters { got: 0, .. })
                    if from_dir =>
                {
                    eprintln!("skipped (no 3x3 convolution): {}", f.display());
                    continue;
                }
                Err(e) => {
                    refused += 1;
                    eprintln!("refused: {e}");
                }
                Ok(_) => {}
            }
            files.push(f);
            results.push(r);
        }
    }
    let text = match args.format {
        OutFormat::Json => {
            let v: Vec<serde_json::Value> = results
                .iter()
                .zip(&files)
                .map(|(r, f)| match r {
                    Ok(x) => serde_json::to_value(x).unwrap_or(serde_json::Value::Null),
                    Err(e) => {
                        serde_json::json!({"file": f.display().to_string(), "error": e.to_string()})
                    }
                })
                .collect();
            serde_json::to_string_pretty(&v)? + "\n"
        }
        _ => table(&results),
    };
    write(args.output.as_ref(), text)?;
    Ok(refused)
}
