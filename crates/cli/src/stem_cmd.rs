//! `convlens stem`: first-layer (stem) perturbation analysis of model files on clean and
//! perturbed images.

use anyhow::{anyhow, bail, Context};
use convlens::stem::{
    analyse, choose_normalization, image_array, zoo_summary, AnalysisOptions, BnChoice, ImageSet,
    LoadOptions, PgdOptions, StemModel, StemReport,
};
use convlens_table::{Column, Table};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest PNG image accepted, in decoded bytes.
const MAX_PNG_BYTES: usize = 1 << 28;

/// Arguments of `convlens stem`.
#[derive(clap::Args, Clone, Debug)]
pub struct StemArgs {
    /// Model files, or folders to search for model files.
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Images: an .npz with `x` (clean, N×C×H×W in [0, 1]) and perturbed arrays of the same shape
    /// (e.g. the zoo's adv_examples.npz, one array per model), or a clean .npy / .png image file
    /// (then --perturbed is the file of its perturbed version).
    #[arg(long, required = true)]
    pub images: PathBuf,
    /// Perturbed images: the .npz key (default: the model's name, i.e. its file name without
    /// format suffixes), `none` for none, or with .npy / .png images the perturbed file.
    #[arg(long)]
    pub perturbed: Option<String>,
    /// Input mean per channel, e.g. `0.4914,0.4822,0.4465` (default: the meta table's
    /// `Input Mean`, else the npz's `mean`, else no normalisation).
    #[arg(long, value_delimiter = ',', requires = "std")]
    pub mean: Option<Vec<f64>>,
    /// Input standard deviation per channel (see --mean).
    #[arg(long, value_delimiter = ',', requires = "mean")]
    pub std: Option<Vec<f64>>,
    /// Meta table (CSV): `Name`, and optionally `Robust`, `Input Mean`, `Input Std`.
    #[arg(long)]
    pub meta: Option<PathBuf>,
    /// L∞ radius of the worst-case search in image units: a number or a fraction (`8/255`).
    #[arg(long, default_value = "8/255", value_parser = parse_fraction)]
    pub eps: f64,
    /// Projected-gradient steps of the worst-case search on the stem alone (0 = no search).
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Step size of the search (default ε/4): a number or a fraction.
    #[arg(long, value_parser = parse_fraction)]
    pub step_size: Option<f64>,
    /// Seed of the search's random start.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stride of the stem: assumed 1 for files without a graph; overrides the graph's.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Symmetric padding of the stem: assumed k/2 for files without a graph; overrides the
    /// graph's.
    #[arg(long)]
    pub padding: Option<usize>,
    /// Analyse this convolution (layer or weight name) instead of the first layer.
    #[arg(long)]
    pub layer: Option<String>,
    /// Checkpoint entry holding the model (e.g. `model_ema`, `D`; default: the documented
    /// choice, listed in the notes with the other candidates).
    #[arg(long)]
    pub entry: Option<String>,
    /// BatchNorm to fold into the stem: `auto`, `none`, or the name prefix of its tensors.
    #[arg(long, default_value = "auto")]
    pub bn: String,
    /// Cosine similarity from which two filters count as near-duplicates.
    #[arg(long, default_value_t = 0.9)]
    pub dup_threshold: f64,
    /// Index of the image shown in the figure.
    #[arg(long, default_value_t = 0)]
    pub figure_image: usize,
    /// Output folder: stem.json, stem_filters.{csv,parquet}, stem_models.{csv,parquet} and the
    /// figure of each model, stem_<model>.{svg,png,pdf}. Without it only the table is printed.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let bad = || format!("invalid number {s:?}: expected e.g. 0.03 or 8/255");
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| bad())?;
            let b: f64 = b.trim().parse().map_err(|_| bad())?;
            if b == 0.0 {
                return Err(bad());
            }
            a / b
        }
        None => s.trim().parse().map_err(|_| bad())?,
    };
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(bad())
    }
}

/// What the meta table says about one model.
#[derive(Debug, Default, Clone)]
struct MetaRow {
    robust: Option<bool>,
    norm: Option<(Vec<f64>, Vec<f64>)>,
}

fn parse_values(s: &str) -> Option<Vec<f64>> {
    let v: Result<Vec<f64>, _> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::parse)
        .collect();
    v.ok().filter(|v| !v.is_empty())
}

fn read_meta(path: &Path) -> anyhow::Result<BTreeMap<String, MetaRow>> {
    let t = Table::read_csv(path, false)?;
    let col = |name: &str| t.column(name).and_then(Column::as_str);
    let names = col("Name").ok_or_else(|| anyhow!("{}: no `Name` column", path.display()))?;
    let robust = col("Robust");
    let mean = col("Input Mean");
    let std = col("Input Std");
    let mut out = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        let Some(n) = n else { continue };
        let cell = |c: Option<&[Option<String>]>| c.and_then(|c| c.get(i).cloned().flatten());
        let r = cell(robust).and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        });
        let norm = match (
            cell(mean).as_deref().and_then(parse_values),
            cell(std).as_deref().and_then(parse_values),
        ) {
            (Some(m), Some(s)) => Some((m, s)),
            _ => None,
        };
        out.insert(n.trim().to_string(), MetaRow { robust: r, norm });
    }
    Ok(out)
}

/// A PNG as a 1 × C × H × W image in [0, 1] (grey → 1 channel, RGB → 3; alpha dropped).
fn read_png(path: &Path) -> anyhow::Result<(Vec<f32>, [usize; 4])> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    dec.set_limits(png::Limits {
        bytes: MAX_PNG_BYTES,
    });
    let mut reader = dec
        .read_info()
        .with_context(|| format!("{}: not a readable PNG", path.display()))?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("{}: not a readable PNG", path.display()))?;
    let (chans, keep) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        png::ColorType::Indexed => bail!("{}: palette PNG was not expanded", path.display()),
    };
    let sample = if info.bit_depth == png::BitDepth::Sixteen {
        2
    } else {
        1
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let need = w * h * chans * sample;
    let data = buf
        .get(..need)
        .ok_or_else(|| anyhow!("{}: truncated PNG frame", path.display()))?;
    let mut out = vec![0f32; keep * h * w];
    for p in 0..h * w {
        for c in 0..keep {
            let i = (p * chans + c) * sample;
            out[c * h * w + p] = if sample == 2 {
                f32::from(u16::from_be_bytes([data[i], data[i + 1]])) / 65535.0
            } else {
                f32::from(data[i]) / 255.0
            };
        }
    }
    Ok((out, [1, keep, h, w]))
}

/// An .npy or .png file as images.
fn read_image_file(path: &Path) -> anyhow::Result<(Vec<f32>, [usize; 4])> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "png" => read_png(path),
        "npy" => {
            let ck = convlens::read::read(path)?;
            let t = ck
                .tensors
                .first()
                .ok_or_else(|| anyhow!("{}: no array", path.display()))?;
            Ok(image_array(&t.tensor, &path.display().to_string())?)
        }
        _ => bail!(
            "{}: images must be .npz (x + perturbed arrays), .npy or .png",
            path.display()
        ),
    }
}

/// The images and, for image pairs, the key of the perturbed version.
fn load_images(args: &StemArgs) -> anyhow::Result<(ImageSet, Option<String>)> {
    let is_npz = args
        .images
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if is_npz {
        let set = ImageSet::load_npz(&args.images)?;
        return Ok((set, None));
    }
    let (clean, dims) = read_image_file(&args.images)?;
    let mut perturbed = Vec::new();
    let mut key = None;
    if let Some(p) = args.perturbed.as_deref().filter(|p| *p != "none") {
        let path = PathBuf::from(p);
        let (v, d) = read_image_file(&path)?;
        if d != dims {
            bail!(
                "{} is {d:?} but {} is {dims:?}",
                path.display(),
                args.images.display()
            );
        }
        let k = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.to_string());
        perturbed.push((k.clone(), v));
        key = Some(k);
    }
    let set = ImageSet::from_arrays(clean, dims, perturbed, &args.images.display().to_string())?;
    Ok((set, key))
}

#[derive(Serialize)]
struct Failure {
    model: String,
    file: String,
    error: String,
}

#[derive(Serialize)]
struct Output<'a> {
    images: &'a str,
    n_images: usize,
    eps: Option<f64>,
    steps: usize,
    reports: &'a [StemReport],
    failed: &'a [Failure],
    robust_vs_normal: convlens::stem::ZooSummary,
}

fn expand(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let found = convlens::read::find_models(a)
                .with_context(|| format!("cannot list {}", a.display()))?;
            if found.is_empty() {
                bail!("{}: no model files found in this folder", a.display());
            }
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Runs `convlens stem`; returns the number of failed models.
pub fn run(args: StemArgs) -> anyhow::Result<usize> {
    let files = expand(&args.models)?;
    let (images, pair_key) = load_images(&args)?;
    let meta = match &args.meta {
        Some(p) => read_meta(p)?,
        None => BTreeMap::new(),
    };
    let bn = match args.bn.as_str() {
        "auto" => BnChoice::Auto,
        "none" | "off" => BnChoice::Off,
        name => BnChoice::Named(name.to_string()),
    };
    let opts = AnalysisOptions {
        load: LoadOptions {
            stride: args.stride,
            padding: args.padding,
            layer: args.layer.clone(),
            bn,
            entry: args.entry.clone(),
        },
        norm: args.mean.clone().zip(args.std.clone()),
        perturbed_key: None,
        pgd: (args.steps > 0).then_some(PgdOptions {
            eps: args.eps,
            steps: args.steps,
            step_size: args.step_size,
            seed: args.seed,
        }),
        dup_threshold: args.dup_threshold,
        figure_image: args.figure_image,
        ..Default::default()
    };
    if let Some(out) = &args.output {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    let mut figure_names = BTreeSet::new();
    for path in &files {
        let name = convlens::read::model_name(path);
        let m = meta.get(&name).cloned().unwrap_or_default();
        let result = (|| -> anyhow::Result<StemReport> {
            let model = StemModel::load(path, &opts.load)?;
            let norm = choose_normalization(opts.norm.as_ref(), m.norm.as_ref(), &images)?;
            let key: Option<String> = if pair_key.is_some() {
                pair_key.clone()
            } else {
                match args.perturbed.as_deref() {
                    Some("none") => None,
                    Some(k) => Some(k.to_string()),
                    None if images.perturbed.is_empty() => None,
                    None => Some(name.clone()),
                }
            };
            let report = analyse(&model, &images, key.as_deref(), &norm, m.robust, &opts)?;
            describe(&report);
            if let Some(out) = &args.output {
                let mut stem = format!("stem_{name}");
                if !figure_names.insert(stem.clone()) {
                    let file = path.file_name().unwrap_or_default().to_string_lossy();
                    stem = format!("stem_{file}");
                    figure_names.insert(stem.clone());
                }
                write_figure(&report, &out.join(stem))?;
            }
            Ok(report)
        })();
        match result {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("failed: {}: {e:#}", path.display());
                failed.push(Failure {
                    model: name,
                    file: path.display().to_string(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    print_table(&reports);
    let summary = zoo_summary(&reports);
    print_summary(&summary);
    if let Some(out) = &args.output {
        let doc = Output {
            images: &images.source,
            n_images: images.n,
            eps: opts.pgd.as_ref().map(|p| p.eps),
            steps: args.steps,
            reports: &reports,
            failed: &failed,
            robust_vs_normal: summary,
        };
        let p = out.join("stem.json");
        std::fs::write(&p, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
        let (filters, models) = convlens::tables::stem(&reports)?;
        for (stem, t) in [("stem_filters", &filters), ("stem_models", &models)] {
            t.write_csv(&out.join(format!("{stem}.csv")))?;
            t.write_parquet(&out.join(format!("{stem}.parquet")))?;
        }
    }
    Ok(failed.len())
}

/// Says on standard error which layer was used and what was assumed.
fn describe(r: &StemReport) {
    let s = &r.stem;
    let bn = match &s.batch_norm {
        Some(b) => format!("BatchNorm {b} folded ({})", s.batch_norm_rule),
        None => format!("no BatchNorm folded ({})", s.batch_norm_rule),
    };
    eprintln!(
        "{}: stem {} ({}×{}×{}×{}, groups {}), stride {:?}, pads {}, {}; {bn}; normalisation: {}",
        r.model,
        s.layer,
        s.out_channels,
        s.in_channels / s.groups,
        s.kh,
        s.kw,
        s.groups,
        s.stride,
        if s.pads[0] == usize::MAX {
            "auto".to_string()
        } else {
            format!("{:?}", s.pads)
        },
        s.geometry,
        r.normalization.source
    );
    for n in &s.notes {
        eprintln!("  note: {n}");
    }
}

fn write_figure(r: &StemReport, stem: &Path) -> anyhow::Result<()> {
    convlens::stem::figure(r)?.save_all(stem)?;
    Ok(())
}

fn f3(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.3}"))
}

fn print_table(reports: &[StemReport]) {
    if reports.is_empty() {
        return;
    }
    let mw = reports
        .iter()
        .map(|r| r.summary.model.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let lw = reports
        .iter()
        .map(|r| r.summary.layer.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<mw$} {:>6} {:<lw$} {:>7} {:>6} {:>7} {:>7} {:>5} {:>8} {:>8} {:>8} {:>8}",
        "model",
        "robust",
        "layer",
        "filters",
        "kernel",
        "centre",
        "max_cos",
        "dups",
        "pre_chg",
        "post_chg",
        "removed",
        "gain"
    );
    for r in reports {
        let s = &r.summary;
        println!(
            "{:<mw$} {:>6} {:<lw$} {:>7} {:>6} {:>7} {:>7} {:>5} {:>8} {:>8} {:>8} {:>8}",
            s.model,
            s.robust.map_or("-".to_string(), |b| b.to_string()),
            s.layer,
            s.filters,
            s.kernel,
            f3(s.centre_share),
            f3(s.mean_max_similarity),
            s.filters_with_duplicate,
            f3(s.pre_change),
            f3(s.post_change),
            f3(s.relu_removed),
            f3(s.stem_gain)
        );
    }
}

fn print_summary(z: &convlens::stem::ZooSummary) {
    if z.robust.models == 0 || z.normal.models == 0 {
        return;
    }
    println!();
    println!(
        "{:<8} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "group", "models", "centre", "max_cos", "pre_chg", "post_chg", "removed", "gain"
    );
    for (name, g) in [("robust", &z.robust), ("normal", &z.normal)] {
        println!(
            "{:<8} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
            name,
            g.models,
            f3(g.centre_share),
            f3(g.mean_max_similarity),
            f3(g.pre_change),
            f3(g.post_change),
            f3(g.relu_removed),
            f3(g.stem_gain)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse() {
        assert!((parse_fraction("8/255").unwrap() - 8.0 / 255.0).abs() < 1e-15);
        assert_eq!(parse_fraction("0.5").unwrap(), 0.5);
        assert!(parse_fraction("1/0").is_err());
        assert!(parse_fraction("-1").is_err());
        assert!(parse_fraction("x").is_err());
    }

    #[test]
    fn meta_values_parse() {
        assert_eq!(
            parse_values("0.4914 0.4822 0.4465"),
            Some(vec![0.4914, 0.4822, 0.4465])
        );
        assert_eq!(parse_values("1,2"), Some(vec![1.0, 2.0]));
        assert_eq!(parse_values(""), None);
        assert_eq!(parse_values("a b"), None);
    }
}
