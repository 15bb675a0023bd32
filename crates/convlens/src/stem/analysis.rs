//! The analysis of one model and of a zoo: the options, the per-filter and per-model rows, the
//! report, and the robust-vs-normal summary of a zoo.

use super::figure::{figure_data, StemFigure};
use super::{
    choose_normalization, images_err, Batch, Change, FilterShape, ImageSet, LoadOptions,
    Normalization, PgdOptions, StemError, StemInfo, StemModel, WorstCase,
};
use serde::Serialize;
use std::path::PathBuf;

/// Options of [`analyse`] / [`analyse_zoo`].
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    /// How to load each stem.
    pub load: LoadOptions,
    /// Normalisation for every model (overrides the meta table and the image file).
    pub norm: Option<(Vec<f64>, Vec<f64>)>,
    /// Key of the perturbed images (default: the model's name).
    pub perturbed_key: Option<String>,
    /// Worst-case search; `None` skips it.
    pub pgd: Option<PgdOptions>,
    /// Cosine similarity from which two filters count as near-duplicates.
    pub dup_threshold: f64,
    /// Centre-tap share from which a filter counts as 1×1-like.
    pub centre_threshold: f64,
    /// Image shown in the figure.
    pub figure_image: usize,
    /// Most channels shown in the figure.
    pub figure_columns: usize,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            load: LoadOptions::default(),
            norm: None,
            perturbed_key: None,
            pgd: Some(PgdOptions::default()),
            dup_threshold: 0.9,
            centre_threshold: 0.5,
            figure_image: 0,
            figure_columns: 16,
        }
    }
}

/// One row of the per-filter table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FilterRow {
    /// Output channel.
    pub channel: usize,
    /// Filter shape.
    #[serde(flatten)]
    pub shape: FilterShape,
    /// Change under the given perturbed images.
    pub perturbed: Option<Change>,
    /// Change under the worst-case δ.
    pub worst: Option<Change>,
}

/// The per-model summary row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelRow {
    /// Model name.
    pub model: String,
    /// Robust (from the meta table), when known.
    pub robust: Option<bool>,
    /// Layer used.
    pub layer: String,
    /// Filters.
    pub filters: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Kernel size `kh x kw`.
    pub kernel: String,
    /// Stride (vertical).
    pub stride: usize,
    /// Padding (top).
    pub padding: Option<usize>,
    /// BatchNorm folded.
    pub batch_norm: Option<String>,
    /// Mean centre-tap share over filters.
    pub centre_share: Option<f64>,
    /// Filters whose centre-tap share ≥ the threshold.
    pub centred_filters: usize,
    /// Mean over filters of the largest cosine similarity to another filter.
    pub mean_max_similarity: Option<f64>,
    /// Pairs of filters with cosine ≥ the threshold.
    pub near_duplicate_pairs: usize,
    /// Filters with at least one near-duplicate.
    pub filters_with_duplicate: usize,
    /// Filters never active on the clean images.
    pub dead_filters: usize,
    /// Key of the perturbed images used.
    pub perturbed_key: Option<String>,
    /// Largest |x' − x| of the perturbed images.
    pub perturbation_linf: Option<f64>,
    /// Pre-ReLU change under the perturbed images.
    pub pre_change: Option<f64>,
    /// Post-ReLU change under the perturbed images.
    pub post_change: Option<f64>,
    /// Share of the perturbation energy removed by the ReLU.
    pub relu_removed: Option<f64>,
    /// L∞ radius of the worst case.
    pub eps: Option<f64>,
    /// Stem gain: post-ReLU change under the worst-case δ.
    pub stem_gain: Option<f64>,
    /// Pre-ReLU change under the worst-case δ.
    pub worst_pre_change: Option<f64>,
    /// Share removed by the ReLU under the worst-case δ.
    pub worst_relu_removed: Option<f64>,
}

/// The stem analysis of one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StemReport {
    /// Model name.
    pub model: String,
    /// File read.
    pub file: String,
    /// Robust, when known.
    pub robust: Option<bool>,
    /// The stem used and how.
    pub stem: StemInfo,
    /// Normalisation used.
    pub normalization: Normalization,
    /// Images analysed.
    pub n_images: usize,
    /// Per-filter metrics.
    pub filters: Vec<FilterRow>,
    /// Per-model summary.
    pub summary: ModelRow,
    /// The worst case, when searched.
    pub worst_case: Option<WorstCase>,
    /// The figure's data.
    pub figure: StemFigure,
}

/// One model of a zoo for [`analyse_zoo`].
#[derive(Debug, Clone)]
pub struct ZooEntry {
    /// Model name (also the default key of its perturbed images).
    pub name: String,
    /// Model file.
    pub path: PathBuf,
    /// Robust, when known.
    pub robust: Option<bool>,
    /// Normalisation of this model (e.g. from the meta table), used unless the options give one.
    pub norm: Option<(Vec<f64>, Vec<f64>)>,
    /// The checkpoint entry holding the model (`None`: the load options' entry).
    pub entry: Option<String>,
}

fn mean_of(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Analyses the stem of one model on `images`: filter shapes, the activation change under the
/// perturbed images `perturbed` (a key of `images`; `None` = none), the worst case, the summary
/// row and the figure data.
pub fn analyse(
    model: &StemModel,
    images: &ImageSet,
    perturbed: Option<&str>,
    norm: &Normalization,
    robust: Option<bool>,
    opts: &AnalysisOptions,
) -> Result<StemReport, StemError> {
    // the fields are public: check them again
    Batch::new(&images.clean, images.n, images.c, images.h, images.w)?;
    if let Some((k, _)) = images
        .perturbed
        .iter()
        .find(|(_, v)| v.len() != images.clean.len())
    {
        return Err(images_err(format!(
            "perturbed images {k:?} do not have the clean images' size"
        )));
    }
    let clean = images.clean_batch();
    norm.check(images.c)?;
    let pert = match perturbed {
        Some(k) => Some((
            k,
            images.perturbed_batch(k).ok_or_else(|| {
                images_err(format!(
                    "{} has no perturbed images {k:?} (it has: {})",
                    images.source,
                    images.keys().join(", ")
                ))
            })?,
        )),
        None => None,
    };
    if !(opts.dup_threshold.is_finite() && opts.centre_threshold.is_finite()) {
        return Err(StemError::Options("thresholds must be finite".into()));
    }
    let shapes = model.filter_shapes(opts.dup_threshold);
    let p = match &pert {
        Some((_, b)) => Some(model.perturbation(&clean, b, norm)?),
        None => None,
    };
    let worst = match &opts.pgd {
        Some(pgd) => Some(model.worst_case_gain(&clean, norm, pgd)?),
        None => None,
    };
    // dead filters: never active on the clean images (from either pass)
    let base;
    let clean_stats = match (&p, &worst) {
        (Some(p), _) => &p.filters,
        (None, Some(w)) => &w.perturbation.filters,
        (None, None) => {
            base = model.perturbation(&clean, &clean, norm)?;
            &base.filters
        }
    };
    let dead = clean_stats
        .iter()
        .filter(|c| c.active_share == Some(0.0))
        .count();
    let filters: Vec<FilterRow> = shapes
        .iter()
        .enumerate()
        .map(|(o, s)| FilterRow {
            channel: o,
            shape: s.clone(),
            perturbed: p.as_ref().and_then(|p| p.filters.get(o).copied()),
            worst: worst
                .as_ref()
                .and_then(|w| w.perturbation.filters.get(o).copied()),
        })
        .collect();
    let linf = pert.as_ref().map(|(_, b)| {
        b.data
            .iter()
            .zip(clean.data)
            .map(|(a, c)| f64::from((a - c).abs()))
            .fold(0.0, f64::max)
    });
    let info = &model.info;
    let summary = ModelRow {
        model: model.name.clone(),
        robust,
        layer: info.layer.clone(),
        filters: info.out_channels,
        in_channels: info.in_channels,
        kernel: format!("{}x{}", info.kh, info.kw),
        stride: info.stride[0],
        padding: (info.pads[0] != usize::MAX).then_some(info.pads[0]),
        batch_norm: info.batch_norm.clone(),
        centre_share: mean_of(shapes.iter().filter_map(|s| s.centre_share)),
        centred_filters: shapes
            .iter()
            .filter(|s| s.centre_share.is_some_and(|c| c >= opts.centre_threshold))
            .count(),
        mean_max_similarity: mean_of(shapes.iter().filter_map(|s| s.max_similarity)),
        near_duplicate_pairs: shapes.iter().map(|s| s.near_duplicates).sum::<usize>() / 2,
        filters_with_duplicate: shapes.iter().filter(|s| s.near_duplicates > 0).count(),
        dead_filters: dead,
        perturbed_key: pert.as_ref().map(|(k, _)| k.to_string()),
        perturbation_linf: linf,
        pre_change: p.as_ref().and_then(|p| p.total.pre_change),
        post_change: p.as_ref().and_then(|p| p.total.post_change),
        relu_removed: p.as_ref().and_then(|p| p.total.relu_removed),
        eps: worst.as_ref().map(|w| w.eps),
        stem_gain: worst.as_ref().and_then(|w| w.gain),
        worst_pre_change: worst.as_ref().and_then(|w| w.perturbation.total.pre_change),
        worst_relu_removed: worst
            .as_ref()
            .and_then(|w| w.perturbation.total.relu_removed),
    };
    let figure = figure_data(model, images, &pert, worst.as_ref(), norm, opts)?;
    Ok(StemReport {
        model: model.name.clone(),
        file: model.file.display().to_string(),
        robust,
        stem: model.info.clone(),
        normalization: norm.clone(),
        n_images: images.n,
        filters,
        summary,
        worst_case: worst,
        figure,
    })
}

/// Analyses every model of a zoo on the same images, in order; a failing model gives its
/// error and the others go on. The perturbed images of a model are those keyed by
/// `opts.perturbed_key`, else by the model's name when the image file has them, else none
/// (when it has no perturbed images at all).
pub fn analyse_zoo(
    models: &[ZooEntry],
    images: &ImageSet,
    opts: &AnalysisOptions,
) -> Vec<Result<StemReport, StemError>> {
    models
        .iter()
        .map(|e| {
            let model = match &e.entry {
                Some(entry) => {
                    let load = LoadOptions {
                        entry: Some(entry.clone()),
                        ..opts.load.clone()
                    };
                    StemModel::load(&e.path, &load)?
                }
                None => StemModel::load(&e.path, &opts.load)?,
            };
            let norm = choose_normalization(opts.norm.as_ref(), e.norm.as_ref(), images)?;
            let key = match &opts.perturbed_key {
                Some(k) => Some(k.as_str()),
                None if images.perturbed.is_empty() => None,
                None => Some(e.name.as_str()),
            };
            let mut r = analyse(&model, images, key, &norm, e.robust, opts)?;
            r.model = e.name.clone();
            r.summary.model = e.name.clone();
            Ok(r)
        })
        .collect()
}

/// Means of the per-model metrics of one group of models.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct GroupMeans {
    /// Models in the group.
    pub models: usize,
    /// Mean centre-tap share.
    pub centre_share: Option<f64>,
    /// Mean of the per-model mean max similarity.
    pub mean_max_similarity: Option<f64>,
    /// Mean share of filters with a near-duplicate.
    pub duplicate_share: Option<f64>,
    /// Mean pre-ReLU change under the perturbed images.
    pub pre_change: Option<f64>,
    /// Mean post-ReLU change under the perturbed images.
    pub post_change: Option<f64>,
    /// Mean share removed by the ReLU.
    pub relu_removed: Option<f64>,
    /// Mean stem gain.
    pub stem_gain: Option<f64>,
    /// Mean share removed by the ReLU under the worst case.
    pub worst_relu_removed: Option<f64>,
}

/// Robust vs normal stems of a zoo.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ZooSummary {
    /// Models marked robust.
    pub robust: GroupMeans,
    /// Models marked normal.
    pub normal: GroupMeans,
    /// Models whose robustness is unknown.
    pub unknown: usize,
}

fn group_means(rows: &[&ModelRow]) -> GroupMeans {
    let m = |f: &dyn Fn(&ModelRow) -> Option<f64>| mean_of(rows.iter().filter_map(|r| f(r)));
    GroupMeans {
        models: rows.len(),
        centre_share: m(&|r| r.centre_share),
        mean_max_similarity: m(&|r| r.mean_max_similarity),
        duplicate_share: m(&|r| {
            (r.filters > 0).then(|| r.filters_with_duplicate as f64 / r.filters as f64)
        }),
        pre_change: m(&|r| r.pre_change),
        post_change: m(&|r| r.post_change),
        relu_removed: m(&|r| r.relu_removed),
        stem_gain: m(&|r| r.stem_gain),
        worst_relu_removed: m(&|r| r.worst_relu_removed),
    }
}

/// Robust-vs-normal means of the per-model rows.
pub fn zoo_summary(reports: &[StemReport]) -> ZooSummary {
    let rows = |want: bool| -> Vec<&ModelRow> {
        reports
            .iter()
            .filter(|r| r.robust == Some(want))
            .map(|r| &r.summary)
            .collect()
    };
    ZooSummary {
        robust: group_means(&rows(true)),
        normal: group_means(&rows(false)),
        unknown: reports.iter().filter(|r| r.robust.is_none()).count(),
    }
}
