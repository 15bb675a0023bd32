//! The robustness fingerprint: how likely a checkpoint is to be adversarially trained, judged
//! from its filters alone.
//!
//! The features are the first explained-variance ratios of the 9-component PCA spectrum of the
//! model's l∞-scaled non-sparse 3×3 filters (the per-model bases the robustness study published:
//! robust models spread their variance over more components). A ridge-penalised logistic
//! regression on the standardised features is fitted to the authors' published per-model bases
//! ([`read_training`]); the fitted model is plain data ([`FingerprintModel`], shipped as
//! `data/fingerprint.json` and rebuilt by `convlens fingerprint --train`), with its validation:
//! leave-one-paper-out and leave-one-architecture-out on the published table, and the transfer
//! to checkpoint zoos given at training time.

use crate::compare::basis::Basis;
use crate::db::build::MetaTable;
use crate::extract::KernelSelect;
use crate::numeric::np_sum;
use crate::numeric::Moments;
use crate::quality::{analyse_file, AnalyseError, ModelReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Names of the features, in model order.
pub const FEATURES: [&str; 3] = ["evr0", "evr1", "evr2"];

/// Fewest non-sparse 3×3 filters whose spectrum is used (fewer: the ratios are too noisy; the
/// published models have at least 5·10⁵).
pub const MIN_FILTERS: u64 = 1000;

/// Ridge penalty `λ/2 · ‖w‖²` on the standardised coefficients (the intercept is free).
pub const RIDGE: f64 = 1.0;

/// Reliability-diagram bins of the validation.
pub const RELIABILITY_BINS: usize = 10;

/// Largest fingerprint model file read.
pub const MAX_MODEL_BYTES: u64 = 16 << 20;

/// Newton iterations at most.
const MAX_ITER: usize = 100;

/// The bundled model (`data/fingerprint.json`).
pub const BUNDLED: &str = include_str!("../data/fingerprint.json");

/// Why a fingerprint could not be computed or trained; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// The checkpoint could not be analysed.
    #[error(transparent)]
    Analyse(#[from] AnalyseError),
    /// Too few 3×3 filters for a spectrum.
    #[error("{}: {got} non-sparse 3x3 filters; the fingerprint needs at least {needed} (its explained-variance spectrum is too noisy below that)", path.display())]
    TooFewFilters {
        /// The file.
        path: PathBuf,
        /// Filters found.
        got: u64,
        /// Filters needed.
        needed: u64,
    },
    /// A table or model file is malformed.
    #[error("{}: {reason}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn bad(path: &Path, reason: impl Into<String>) -> FingerprintError {
    FingerprintError::Bad {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// One model of the training table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRow {
    /// Model name.
    pub name: String,
    /// Adversarially trained.
    pub robust: bool,
    /// Paper (the normal twins carry their robust model's paper).
    pub paper: String,
    /// Architecture.
    pub backbone: String,
    /// Training data set.
    pub dataset: String,
    /// Filters of the basis.
    pub n_samples: u64,
    /// The 9 explained-variance ratios.
    pub evr: Vec<f64>,
}

/// Largest training table read (rows).
const MAX_TRAINING_ROWS: usize = 100_000;

/// Reads `model_spectra.csv` (Name, Robust, Paper, Backbone, Training-Dataset, n_samples,
/// evr0..evr8).
pub fn read_training(path: &Path) -> Result<Vec<TrainingRow>, FingerprintError> {
    let t = convlens_table::Table::read_csv(path, false).map_err(|e| bad(path, e.to_string()))?;
    if t.n_rows() > MAX_TRAINING_ROWS {
        return Err(bad(path, format!("more than {MAX_TRAINING_ROWS} rows")));
    }
    let col = |n: &str| -> Result<&[Option<String>], FingerprintError> {
        t.column(n)
            .and_then(|c| c.as_str())
            .ok_or_else(|| bad(path, format!("no column {n:?}")))
    };
    let (name, robust, paper, backbone, dataset, ns) = (
        col("Name")?,
        col("Robust")?,
        col("Paper")?,
        col("Backbone")?,
        col("Training-Dataset")?,
        col("n_samples")?,
    );
    let evr: Vec<&[Option<String>]> = (0..9)
        .map(|i| col(&format!("evr{i}")))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::with_capacity(t.n_rows());
    for r in 0..t.n_rows() {
        let get = |c: &[Option<String>]| c[r].clone().unwrap_or_default();
        let row_err = |what: &str| bad(path, format!("row {}: {what}", r + 2));
        let robust = parse_bool(&get(robust)).ok_or_else(|| row_err("Robust is not a boolean"))?;
        let n_samples = get(ns)
            .trim()
            .parse()
            .map_err(|_| row_err("n_samples is not a count"))?;
        let mut v = Vec::with_capacity(9);
        for c in &evr {
            let x: f64 = get(c)
                .trim()
                .parse()
                .map_err(|_| row_err("an evr value is not a number"))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(row_err("an evr value is outside [0, 1]"));
            }
            v.push(x);
        }
        rows.push(TrainingRow {
            name: get(name),
            robust,
            paper: non_empty(get(paper)),
            backbone: non_empty(get(backbone)),
            dataset: get(dataset),
            n_samples,
            evr: v,
        });
    }
    if rows.iter().all(|r| r.robust) || rows.iter().all(|r| !r.robust) {
        return Err(bad(path, "the table needs robust and normal models"));
    }
    Ok(rows)
}

fn non_empty(s: String) -> String {
    if s.trim().is_empty() {
        "(none)".into()
    } else {
        s
    }
}

/// `True`/`False`, `1`/`0`, `yes`/`no` (any case).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// The features of an explained-variance spectrum.
pub fn features(evr: &[f64]) -> Vec<f64> {
    (0..FEATURES.len())
        .map(|i| evr.get(i).copied().unwrap_or(0.0))
        .collect()
}

/// A fitted logistic regression on standardised features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// Feature means of the training set.
    pub mean: Vec<f64>,
    /// Feature standard deviations (population) of the training set.
    pub sd: Vec<f64>,
    /// Intercept (logit units).
    pub intercept: f64,
    /// Coefficient per standardised feature (logit units per standard deviation).
    pub coefficients: Vec<f64>,
    /// Newton iterations used.
    pub iterations: usize,
}

impl Logistic {
    /// Fits `P(robust) = σ(b + w·z)`, `z` the standardised features, by Newton's method on the
    /// ridge-penalised log-likelihood.
    pub fn fit(x: &[Vec<f64>], y: &[bool], ridge: f64) -> Logistic {
        let n = x.len();
        let k = x.first().map_or(0, |r| r.len());
        let mut mean = vec![0.0; k];
        let mut sd = vec![0.0; k];
        for j in 0..k {
            let col: Vec<f64> = x.iter().map(|r| r[j]).collect();
            mean[j] = np_sum(&col) / n as f64;
            let dev: Vec<f64> = col.iter().map(|v| (v - mean[j]).powi(2)).collect();
            sd[j] = (np_sum(&dev) / n as f64).sqrt();
            if sd[j] <= 0.0 {
                sd[j] = 1.0;
            }
        }
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| {
                std::iter::once(1.0)
                    .chain(r.iter().enumerate().map(|(j, v)| (v - mean[j]) / sd[j]))
                    .collect()
            })
            .collect();
        let d = k + 1;
        let mut w = vec![0.0; d];
        let mut iterations = 0;
        for it in 0..MAX_ITER {
            iterations = it + 1;
            let mut h = nalgebra::DMatrix::<f64>::zeros(d, d);
            let mut g = nalgebra::DVector::<f64>::zeros(d);
            for (zi, &yi) in z.iter().zip(y) {
                let p = sigmoid(dot(&w, zi));
                let r = p - if yi { 1.0 } else { 0.0 };
                let s = p * (1.0 - p);
                for a in 0..d {
                    g[a] += r * zi[a];
                    for b in 0..d {
                        h[(a, b)] += s * zi[a] * zi[b];
                    }
                }
            }
            for a in 1..d {
                g[a] += ridge * w[a];
                h[(a, a)] += ridge;
            }
            let Some(step) = h.lu().solve(&g) else {
                break;
            };
            let mut largest = 0.0f64;
            for a in 0..d {
                w[a] -= step[a];
                largest = largest.max(step[a].abs());
            }
            if largest < 1e-12 {
                break;
            }
        }
        Logistic {
            mean,
            sd,
            intercept: w[0],
            coefficients: w[1..].to_vec(),
            iterations,
        }
    }

    /// Standardised features.
    pub fn standardise(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(j, v)| (v - self.mean[j]) / self.sd[j])
            .collect()
    }

    /// Logit of `P(robust)`.
    pub fn logit(&self, x: &[f64]) -> f64 {
        self.intercept + dot(&self.coefficients, &self.standardise(x))
    }

    /// `P(robust)`.
    pub fn probability(&self, x: &[f64]) -> f64 {
        sigmoid(self.logit(x))
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of predicted probability.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Models in the bin.
    pub n: usize,
    /// Mean predicted probability (`None` when empty).
    pub mean_predicted: Option<f64>,
    /// Share of robust models (`None` when empty).
    pub observed: Option<f64>,
}

/// Reliability diagram of probabilities against outcomes, in equal-width bins.
pub fn reliability(p: &[f64], y: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    (0..bins)
        .map(|b| {
            let lo = b as f64 / bins as f64;
            let hi = (b + 1) as f64 / bins as f64;
            let members: Vec<usize> = (0..p.len())
                .filter(|&i| {
                    let k = ((p[i] * bins as f64) as usize).min(bins - 1);
                    k == b
                })
                .collect();
            let n = members.len();
            let mp: Vec<f64> = members.iter().map(|&i| p[i]).collect();
            let ob: Vec<f64> = members
                .iter()
                .map(|&i| if y[i] { 1.0 } else { 0.0 })
                .collect();
            ReliabilityBin {
                lo,
                hi,
                n,
                mean_predicted: (n > 0).then(|| np_sum(&mp) / n as f64),
                observed: (n > 0).then(|| np_sum(&ob) / n as f64),
            }
        })
        .collect()
}

/// A cross-validation by held-out groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    /// Grouping column (`Paper` or `Backbone`).
    pub grouping: String,
    /// Folds (distinct groups).
    pub folds: usize,
    /// Models.
    pub n: usize,
    /// Share of models whose out-of-fold probability is on the right side of 0.5.
    pub accuracy: f64,
    /// Mean squared error of the out-of-fold probabilities.
    pub brier: f64,
    /// Mean negative log-likelihood of the out-of-fold probabilities.
    pub log_loss: f64,
    /// Reliability diagram of the out-of-fold probabilities.
    pub reliability: Vec<ReliabilityBin>,
    /// Out-of-fold probability per model, in training-table order.
    pub predictions: Vec<f64>,
}

fn scores(p: &[f64], y: &[bool]) -> (f64, f64, f64) {
    let n = p.len() as f64;
    let hit: Vec<f64> = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| if (p > 0.5) == y { 1.0 } else { 0.0 })
        .collect();
    let sq: Vec<f64> = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| (p - if y { 1.0 } else { 0.0 }).powi(2))
        .collect();
    let ll: Vec<f64> = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| {
            let q = if y { p } else { 1.0 - p };
            -q.max(1e-300).ln()
        })
        .collect();
    (np_sum(&hit) / n, np_sum(&sq) / n, np_sum(&ll) / n)
}

/// Leave-one-group-out cross-validation of the fingerprint on the training table.
pub fn cross_validate(rows: &[TrainingRow], grouping: &str) -> CrossValidation {
    let group = |r: &TrainingRow| -> String {
        match grouping {
            "Backbone" => r.backbone.clone(),
            _ => r.paper.clone(),
        }
    };
    let mut folds: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        folds.entry(group(r)).or_default().push(i);
    }
    let mut pred = vec![0.0; rows.len()];
    for held in folds.values() {
        let train: Vec<&TrainingRow> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| !held.contains(i))
            .map(|(_, r)| r)
            .collect();
        let x: Vec<Vec<f64>> = train.iter().map(|r| features(&r.evr)).collect();
        let y: Vec<bool> = train.iter().map(|r| r.robust).collect();
        let m = Logistic::fit(&x, &y, RIDGE);
        for &i in held {
            pred[i] = m.probability(&features(&rows[i].evr));
        }
    }
    let y: Vec<bool> = rows.iter().map(|r| r.robust).collect();
    let (accuracy, brier, log_loss) = scores(&pred, &y);
    CrossValidation {
        grouping: grouping.to_string(),
        folds: folds.len(),
        n: rows.len(),
        accuracy,
        brier,
        log_loss,
        reliability: reliability(&pred, &y, RELIABILITY_BINS),
        predictions: pred,
    }
}

/// One feature's reference populations: the sorted training values of each class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    /// Feature name.
    pub feature: String,
    /// What it is.
    pub description: String,
    /// Sorted values of the robust training models.
    pub robust: Vec<f64>,
    /// Sorted values of the normal training models.
    pub normal: Vec<f64>,
}

/// A zoo checkpoint's prediction in a transfer validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZooPrediction {
    /// Model name.
    pub model: String,
    /// File used, relative to the zoo folder.
    pub file: String,
    /// Its meta table's `Robust` value.
    pub robust: bool,
    /// `P(robust)`, `None` when refused.
    pub probability: Option<f64>,
    /// First explained-variance ratios.
    pub features: Option<Vec<f64>>,
    /// Why the fingerprint was refused.
    pub refused: Option<String>,
}

/// Accuracy on a zoo of checkpoints trained elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferValidation {
    /// Zoo folder as given.
    pub zoo: String,
    /// Models predicted.
    pub n: usize,
    /// Share predicted on the right side of 0.5 (`None` when nothing was predicted).
    pub accuracy: Option<f64>,
    /// Per model.
    pub models: Vec<ZooPrediction>,
}

/// The validation shipped with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Leave-one-paper-out on the published table.
    pub leave_one_paper_out: CrossValidation,
    /// Leave-one-architecture-out on the published table.
    pub leave_one_architecture_out: CrossValidation,
    /// Transfer to checkpoint zoos.
    pub transfer: Vec<TransferValidation>,
}

/// The fitted fingerprint with its evidence populations and validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FingerprintModel {
    /// What this is.
    pub description: String,
    /// Feature names.
    pub features: Vec<String>,
    /// The regression.
    pub model: Logistic,
    /// Ridge penalty used.
    pub ridge: f64,
    /// Fewest non-sparse 3×3 filters accepted.
    pub min_filters: u64,
    /// Training table as given.
    pub training_table: String,
    /// Training models: robust, normal.
    pub training_models: [usize; 2],
    /// Training model names, in table order (the order of the validation predictions).
    pub training_names: Vec<String>,
    /// Their labels.
    pub training_labels: Vec<bool>,
    /// Reference populations per feature.
    pub reference: Vec<FeatureReference>,
    /// Validation.
    pub validation: Validation,
}

const FEATURE_TEXT: [&str; 3] = [
    "share of the filter variance on the first principal component",
    "share on the second component",
    "share on the third component",
];

impl FingerprintModel {
    /// Fits the model on a training table, cross-validates it, and validates it on the given
    /// zoos (`(name as given, folder)`).
    pub fn train(
        table: &str,
        rows: &[TrainingRow],
        zoos: &[(String, PathBuf)],
    ) -> Result<FingerprintModel, FingerprintError> {
        let x: Vec<Vec<f64>> = rows.iter().map(|r| features(&r.evr)).collect();
        let y: Vec<bool> = rows.iter().map(|r| r.robust).collect();
        let model = Logistic::fit(&x, &y, RIDGE);
        let reference = FEATURES
            .iter()
            .enumerate()
            .map(|(j, f)| {
                let mut robust: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.robust)
                    .map(|r| features(&r.evr)[j])
                    .collect();
                let mut normal: Vec<f64> = rows
                    .iter()
                    .filter(|r| !r.robust)
                    .map(|r| features(&r.evr)[j])
                    .collect();
                robust.sort_by(f64::total_cmp);
                normal.sort_by(f64::total_cmp);
                FeatureReference {
                    feature: f.to_string(),
                    description: FEATURE_TEXT[j].to_string(),
                    robust,
                    normal,
                }
            })
            .collect();
        let mut fm = FingerprintModel {
            description: "P(adversarially trained) from the explained-variance spectrum of a model's l-inf-scaled non-sparse 3x3 filters: ridge logistic regression on the first three ratios, fitted to the robustness study's published per-model PCA bases".into(),
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            model,
            ridge: RIDGE,
            min_filters: MIN_FILTERS,
            training_table: table.to_string(),
            training_models: [
                y.iter().filter(|&&r| r).count(),
                y.iter().filter(|&&r| !r).count(),
            ],
            training_names: rows.iter().map(|r| r.name.clone()).collect(),
            training_labels: y,
            reference,
            validation: Validation {
                leave_one_paper_out: cross_validate(rows, "Paper"),
                leave_one_architecture_out: cross_validate(rows, "Backbone"),
                transfer: Vec::new(),
            },
        };
        for (name, dir) in zoos {
            let v = validate_zoo(&fm, name, dir)?;
            fm.validation.transfer.push(v);
        }
        Ok(fm)
    }

    /// The model shipped with convlens (`data/fingerprint.json`).
    pub fn bundled() -> Result<FingerprintModel, FingerprintError> {
        let path = Path::new("data/fingerprint.json");
        let m: FingerprintModel =
            serde_json::from_str(BUNDLED).map_err(|e| bad(path, format!("not a model: {e}")))?;
        m.check().map_err(|r| bad(path, r))?;
        Ok(m)
    }

    /// Reads a model written by `convlens fingerprint --train`.
    pub fn load(path: &Path) -> Result<FingerprintModel, FingerprintError> {
        let size = std::fs::metadata(path)
            .map_err(|e| bad(path, e.to_string()))?
            .len();
        if size > MAX_MODEL_BYTES {
            return Err(bad(
                path,
                format!("{size} bytes: a fingerprint model has at most {MAX_MODEL_BYTES}"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
        let m: FingerprintModel =
            serde_json::from_str(&text).map_err(|e| bad(path, format!("not a model: {e}")))?;
        m.check().map_err(|r| bad(path, r))?;
        Ok(m)
    }

    /// Checks that the parts of a model agree (a loaded file is untrusted).
    pub fn check(&self) -> Result<(), String> {
        let k = self.features.len();
        if k == 0
            || k > FEATURES.len()
            || self.model.mean.len() != k
            || self.model.sd.len() != k
            || self.model.coefficients.len() != k
            || self.reference.len() != k
        {
            return Err("feature counts disagree".into());
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !finite(&self.model.mean)
            || !finite(&self.model.coefficients)
            || !self.model.intercept.is_finite()
            || self.model.sd.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err("regression parameters are not finite (or a zero sd)".into());
        }
        for r in &self.reference {
            if r.robust.is_empty()
                || r.normal.is_empty()
                || !finite(&r.robust)
                || !finite(&r.normal)
            {
                return Err(format!("reference populations of {} are empty", r.feature));
            }
        }
        Ok(())
    }

    /// The verdict on an explained-variance spectrum.
    pub fn predict(&self, evr: &[f64]) -> Prediction {
        let x = features(evr);
        let z = self.model.standardise(&x);
        let logit = self.model.logit(&x);
        let p = sigmoid(logit);
        let evidence = self
            .reference
            .iter()
            .enumerate()
            .map(|(j, r)| {
                let v = x[j];
                let pr = percentile(&r.robust, v);
                let pn = percentile(&r.normal, v);
                let (mr, mn) = (median(&r.robust), median(&r.normal));
                Evidence {
                    feature: r.feature.clone(),
                    description: r.description.clone(),
                    value: v,
                    robust_median: mr,
                    normal_median: mn,
                    robust_range: [r.robust[0], r.robust[r.robust.len() - 1]],
                    normal_range: [r.normal[0], r.normal[r.normal.len() - 1]],
                    percentile_in_robust: pr,
                    percentile_in_normal: pn,
                    position: if mr == mn {
                        0.5
                    } else {
                        ((v - mn) / (mr - mn)).clamp(-1.0, 2.0)
                    },
                    closer_to: if (v - mr).abs() <= (v - mn).abs() {
                        "robust".into()
                    } else {
                        "normal".into()
                    },
                    contribution: self.model.coefficients[j] * z[j],
                }
            })
            .collect::<Vec<Evidence>>();
        let outside: Vec<String> = evidence
            .iter()
            .filter(|e| {
                let lo = e.robust_range[0].min(e.normal_range[0]);
                let hi = e.robust_range[1].max(e.normal_range[1]);
                e.value < lo || e.value > hi
            })
            .map(|e| e.feature.clone())
            .collect();
        Prediction {
            probability_robust: p,
            logit,
            verdict: if p > 0.5 {
                "looks adversarially trained".into()
            } else {
                "looks normally trained".into()
            },
            evidence,
            warning: (!outside.is_empty()).then(|| {
                format!(
                    "{} outside every reference model's range: the probability is an extrapolation",
                    outside.join(", ")
                )
            }),
        }
    }
}

/// Share of a sorted population at or below `v`.
fn percentile(sorted: &[f64], v: f64) -> f64 {
    sorted.iter().filter(|&&x| x <= v).count() as f64 / sorted.len().max(1) as f64
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// Where one feature of a checkpoint falls between the reference populations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Feature name.
    pub feature: String,
    /// What it is.
    pub description: String,
    /// The checkpoint's value.
    pub value: f64,
    /// Median of the robust reference models.
    pub robust_median: f64,
    /// Median of the normal reference models.
    pub normal_median: f64,
    /// [min, max] of the robust reference models.
    pub robust_range: [f64; 2],
    /// [min, max] of the normal reference models.
    pub normal_range: [f64; 2],
    /// Share of robust reference models at or below the value.
    pub percentile_in_robust: f64,
    /// Share of normal reference models at or below the value.
    pub percentile_in_normal: f64,
    /// 0 at the normal median, 1 at the robust median (clamped to [−1, 2]).
    pub position: f64,
    /// Which median is nearer.
    pub closer_to: String,
    /// Its term in the logit (positive: towards robust).
    pub contribution: f64,
}

/// The model's verdict on one spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// `P(adversarially trained)`.
    pub probability_robust: f64,
    /// Its logit.
    pub logit: f64,
    /// In words.
    pub verdict: String,
    /// Per feature.
    pub evidence: Vec<Evidence>,
    /// Set when a feature lies outside the reference populations.
    pub warning: Option<String>,
}

/// The fingerprint of one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// File or model name.
    pub model: String,
    /// Non-sparse 3×3 filters of the spectrum.
    pub n_filters: u64,
    /// 3×3 layers used.
    pub layers: usize,
    /// The 9 explained-variance ratios.
    pub spectrum: Vec<f64>,
    /// The verdict.
    #[serde(flatten)]
    pub prediction: Prediction,
}

/// Moments of a measured model's l∞-scaled non-sparse 3×3 filters (transposed layers left out,
/// as in the database).
pub fn model_moments(report: &ModelReport) -> (Moments, usize) {
    let mut m = Moments::new(9);
    let mut layers = 0;
    for l in report
        .layers
        .iter()
        .filter(|l| l.kernel == [3, 3] && !l.transposed)
    {
        if let Some(lm) = &l.basis_moments {
            m.merge(lm);
            layers += 1;
        }
    }
    (m, layers)
}

/// Fingerprint from a model's filter moments; refuses fewer than the model's `min_filters`.
pub fn fingerprint_moments(
    fm: &FingerprintModel,
    path: &Path,
    name: &str,
    moments: &Moments,
    layers: usize,
) -> Result<Fingerprint, FingerprintError> {
    if moments.dim != 9 || moments.n < fm.min_filters {
        return Err(FingerprintError::TooFewFilters {
            path: path.to_path_buf(),
            got: if moments.dim == 9 { moments.n } else { 0 },
            needed: fm.min_filters,
        });
    }
    let basis = Basis::fit(moments).map_err(|e| bad(path, e.to_string()))?;
    let spectrum = basis.explained_variance_ratio;
    if spectrum.iter().any(|v| !v.is_finite()) {
        return Err(bad(path, "the filter spectrum is not finite"));
    }
    Ok(Fingerprint {
        model: name.to_string(),
        n_filters: moments.n,
        layers,
        prediction: fm.predict(&spectrum),
        spectrum,
    })
}

/// Fingerprint of a checkpoint file (any supported format).
pub fn fingerprint_file(
    fm: &FingerprintModel,
    path: &Path,
) -> Result<Fingerprint, FingerprintError> {
    let report = analyse_file(path, KernelSelect::Size(3, 3))?;
    let (m, layers) = model_moments(&report);
    fingerprint_moments(fm, path, &path.display().to_string(), &m, layers)
}

/// Predicts every model of a zoo folder (its `meta.csv` gives `Name` and `Robust`; one file per
/// model, chosen as `db build` does).
pub fn validate_zoo(
    fm: &FingerprintModel,
    name: &str,
    dir: &Path,
) -> Result<TransferValidation, FingerprintError> {
    let meta_path = dir.join("meta.csv");
    let meta = MetaTable::read(&meta_path, "Name").map_err(|e| bad(&meta_path, e.to_string()))?;
    let robust_col = meta
        .columns
        .iter()
        .position(|c| c == "Robust")
        .ok_or_else(|| bad(&meta_path, "no Robust column"))?;
    let files = crate::read::find_models(dir).map_err(|e| bad(dir, e.to_string()))?;
    let mut by_model: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        by_model
            .entry(crate::read::model_name(&f))
            .or_default()
            .push(f);
    }
    let mut models = Vec::new();
    for (model, row) in &meta.rows {
        let Some(robust) = parse_bool(&row[robust_col]) else {
            continue;
        };
        let Some(mut paths) = by_model.get(model).cloned() else {
            continue;
        };
        paths.sort_by_key(|p| crate::db::build::preference(p));
        let file = &paths[0];
        let rel = file.strip_prefix(dir).unwrap_or(file).display().to_string();
        let (probability, features_v, refused) = match fingerprint_file(fm, file) {
            Ok(f) => (
                Some(f.prediction.probability_robust),
                Some(features(&f.spectrum)),
                None,
            ),
            Err(e) => (
                None,
                None,
                Some(e.to_string().replace(&file.display().to_string(), &rel)),
            ),
        };
        models.push(ZooPrediction {
            model: model.clone(),
            file: rel,
            robust,
            probability,
            features: features_v,
            refused,
        });
    }
    let judged: Vec<f64> = models
        .iter()
        .filter_map(|m| {
            m.probability
                .map(|p| if (p > 0.5) == m.robust { 1.0 } else { 0.0 })
        })
        .collect();
    Ok(TransferValidation {
        zoo: name.to_string(),
        n: judged.len(),
        accuracy: (!judged.is_empty()).then(|| np_sum(&judged) / judged.len() as f64),
        models,
    })
}
