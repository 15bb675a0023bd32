//! The distribution-shift study: variance-weighted symmetric KL between the coefficient
//! distributions of two groups of models, overall, for the first layer and per depth decile,
//! with a noise floor from within-group comparisons and a bootstrap over models.

use super::basis::Basis;
use super::divergence::{weighted_kl_sym, Bins, EPS_F32};
use super::stats::{permutation_test, sd_from_sums, smoothed_probabilities, Design, Permutation};
use super::stream::{cell_labels, ModelHists, CELLS};
use rayon::prelude::*;
use serde::Serialize;

pub use crate::numeric::Rng;

/// How a coefficient distribution is estimated from its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Density {
    /// 70-bin histogram, empty bins filled with float32 epsilon (the authors' method).
    Histogram,
    /// Gaussian kernel density (Silverman bandwidth) on a fine grid, evaluated at the bin
    /// centres, then filled and normalised like the histogram.
    Kde,
}

/// Fine-grid points used for kernel density estimates.
pub const KDE_GRID: usize = 2048;

/// Discrete distribution of one (group, cell, component) from merged histograms; `None` if the
/// cell holds no filter.
pub fn distribution(
    h: &ModelHists,
    cell: usize,
    comp: usize,
    bins: &Bins,
    fine: Option<&Bins>,
    density: Density,
) -> Option<Vec<f64>> {
    if h.n[cell] == 0 {
        return None;
    }
    match density {
        Density::Histogram => bins.probabilities(h.counts(cell, comp)),
        Density::Kde => {
            let fine = fine?;
            let n = h.n[cell] as f64;
            let i = cell * h.comps + comp;
            let mean = h.sum[i] / n;
            let var = if n > 1.0 {
                ((h.sum_sq[i] - n * mean * mean) / (n - 1.0)).max(0.0)
            } else {
                0.0
            };
            // scipy gaussian_kde, bw_method="silverman", one dimension
            let factor = (n * 3.0 / 4.0).powf(-1.0 / 5.0);
            let bw = (var.sqrt() * factor).max(f64::MIN_POSITIVE);
            let fe = fine.edges();
            let centres: Vec<f64> = fe.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
            let counts = h.fine(cell, comp);
            let e = bins.edges();
            let mut v: Vec<f64> = e
                .windows(2)
                .map(|w| {
                    let x = 0.5 * (w[0] + w[1]);
                    let mut s = 0.0;
                    for (&c, &g) in counts.iter().zip(&centres) {
                        if c > 0 {
                            let z = (x - g) / bw;
                            s += c as f64 * (-0.5 * z * z).exp();
                        }
                    }
                    s / (n * bw * (2.0 * std::f64::consts::PI).sqrt())
                })
                .collect();
            for x in v.iter_mut() {
                if *x == 0.0 {
                    *x = EPS_F32;
                }
            }
            let s = super::divergence::np_sum(&v);
            Some(v.into_iter().map(|x| x / s).collect())
        }
    }
}

/// KL of one cell between two merged histogram sets: (weighted, per component), `None` if a
/// side is empty.
pub fn cell_kl(
    a: &ModelHists,
    b: &ModelHists,
    cell: usize,
    weights: &[f64],
    bins: &Bins,
    fine: Option<&Bins>,
    density: Density,
) -> Option<(f64, Vec<f64>)> {
    let comps = a.comps;
    let mut p = Vec::with_capacity(comps);
    let mut q = Vec::with_capacity(comps);
    for j in 0..comps {
        p.push(distribution(a, cell, j, bins, fine, density)?);
        q.push(distribution(b, cell, j, bins, fine, density)?);
    }
    Some(weighted_kl_sym(&p, &q, weights))
}

/// Sums the histograms of a list of models.
pub fn merge(hists: &[ModelHists], members: &[usize]) -> ModelHists {
    let mut out = hists[0].empty_like();
    for &i in members {
        out.merge(&hists[i]);
    }
    out
}

/// [`merge`] of one cell only (the other cells stay empty): what [`cell_kl`] of that cell reads,
/// with the same sums.
fn merge_cell(hists: &[ModelHists], members: &[usize], cell: usize) -> ModelHists {
    let mut out = hists[0].empty_like();
    for &i in members {
        out.merge_cell(&hists[i], cell);
    }
    out
}

/// Summary of a set of noise-floor values.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// How many comparisons.
    pub n: usize,
    /// Mean.
    pub mean: Option<f64>,
    /// 95th percentile (linear interpolation).
    pub p95: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.len() == 1 {
        return sorted[0];
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Floor {
    /// Summarises values (non-finite ones dropped).
    pub fn of(mut v: Vec<f64>) -> Floor {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Floor {
                n: 0,
                mean: None,
                p95: None,
                max: None,
            };
        }
        Floor {
            n: v.len(),
            mean: Some(v.iter().sum::<f64>() / v.len() as f64),
            p95: Some(percentile(&v, 0.95)),
            max: v.last().copied(),
        }
    }
}

/// One cell (overall, first, a decile) of a shift between two groups.
#[derive(Debug, Clone, Serialize)]
pub struct ShiftCell {
    /// `overall`, `first` or a decile label.
    pub bin: String,
    /// Non-sparse filters of each group in the cell.
    pub n: [u64; 2],
    /// Variance-weighted symmetric KL, `None` when a group has no filter in the cell.
    pub kl: Option<f64>,
    /// Symmetric KL per component.
    pub kl_per_component: Option<Vec<f64>>,
    /// `ok` or why the KL is missing.
    pub status: String,
    /// KL between random halves of the same group (both groups pooled): the noise floor.
    pub within_group: Floor,
    /// KL between replicate models (same configuration, different seed) of the same group.
    pub replicates: Floor,
    /// 2.5 % and 97.5 % quantiles of the KL when the models of each group are resampled with
    /// replacement.
    pub bootstrap_ci: Option<[f64; 2]>,
    /// Bias-reduced weighted KL: the same divergence between Gaussian-smoothed histograms
    /// (Silverman bandwidth), far less inflated than `kl` when a cell holds few filters.
    pub kl_smoothed: Option<f64>,
    /// Bias-reduced KL per component.
    pub kl_smoothed_per_component: Option<Vec<f64>>,
    /// Permutation test of `kl` over models (group labels shuffled, within pairs when given).
    pub permutation: Option<Permutation>,
    /// Benjamini–Hochberg q-value of the permutation p-value within its family (the depth
    /// cells of every comparison, or the `overall` cells).
    pub q_value: Option<f64>,
    /// `q_value ≤ 0.05`.
    pub significant: Option<bool>,
    /// `kl` divided by the noise floor's mean (replicates when there are any, else random
    /// halves): how many times the seed noise the shift is.
    pub kl_over_floor: Option<f64>,
    /// Which floor `kl_over_floor` uses: `replicates` or `within_group`.
    pub floor_source: Option<String>,
}

/// Inputs shared by every cell of a shift.
pub struct ShiftInputs<'a> {
    /// Per-model histograms (indexed like the caller's model list).
    pub hists: &'a [ModelHists],
    /// Members of group A and group B (indices into `hists`).
    pub groups: [&'a [usize]; 2],
    /// Replicate pairs (indices into `hists`) for the seed-noise floor.
    pub replicates: &'a [(usize, usize)],
    /// Component weights (explained-variance ratios of the basis).
    pub weights: &'a [f64],
    /// Histogram bins.
    pub bins: &'a Bins,
    /// Fine grid for KDE.
    pub fine: Option<&'a Bins>,
    /// Density estimate.
    pub density: Density,
    /// Random half-splits per group for the within-group floor.
    pub splits: usize,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Seed of the random generator.
    pub seed: u64,
    /// Label permutations per cell (0: no test); all labellings when there are at most this many.
    pub permutations: usize,
    /// Robust ↔ normal pairs (indices into `hists`): labels are only swapped within pairs.
    pub links: &'a [(usize, usize)],
    /// Enumerate every labelling when there are at most `permutations` (else always random).
    pub exact: bool,
}

/// Bias-reduced weighted KL of one cell: KL between Gaussian-smoothed histograms of the two
/// merged sides, `None` if a side is empty.
pub fn cell_kl_smoothed(
    a: &ModelHists,
    b: &ModelHists,
    cell: usize,
    weights: &[f64],
    bins: &Bins,
) -> Option<(f64, Vec<f64>)> {
    if a.n[cell] == 0 || b.n[cell] == 0 {
        return None;
    }
    let side = |h: &ModelHists, j: usize| {
        let i = cell * h.comps + j;
        smoothed_probabilities(
            h.counts(cell, j),
            bins,
            sd_from_sums(h.n[cell], h.sum[i], h.sum_sq[i]),
        )
    };
    let mut p = Vec::with_capacity(a.comps);
    let mut q = Vec::with_capacity(a.comps);
    for j in 0..a.comps {
        p.push(side(a, j)?);
        q.push(side(b, j)?);
    }
    Some(weighted_kl_sym(&p, &q, weights))
}

/// Permutation test of one cell's weighted KL: units are `groups[0]` then `groups[1]`.
fn cell_permutation(inp: &ShiftInputs, cell: usize) -> Option<Permutation> {
    if inp.permutations == 0 {
        return None;
    }
    let units: Vec<usize> = inp.groups[0].iter().chain(inp.groups[1]).copied().collect();
    let labels: Vec<bool> = (0..units.len()).map(|i| i < inp.groups[0].len()).collect();
    let unit_of = |h: usize| units.iter().position(|&u| u == h);
    let links: Vec<(usize, usize)> = inp
        .links
        .iter()
        .filter_map(|&(x, y)| Some((unit_of(x)?, unit_of(y)?)))
        .collect();
    let design = if inp.links.is_empty() {
        Design::unrestricted(labels)
    } else {
        Design::linked(labels, &links)
    };
    let seed = inp.seed ^ 0xA076_1D64_78BD_642F ^ (cell as u64).wrapping_mul(0x9E37_79B9);
    match inp.density {
        Density::Histogram => {
            let h0 = &inp.hists[units[0]];
            let (comps, nb) = (h0.comps, h0.bins);
            let cc = comps * nb;
            let off = cell * cc;
            let mut sa = vec![0u64; cc];
            let mut sb = vec![0u64; cc];
            permutation_test(&design, inp.permutations, seed, inp.exact, |l| {
                sa.fill(0);
                sb.fill(0);
                for (&u, &is_a) in units.iter().zip(l) {
                    let src = inp.hists[u].counts.get(off..off + cc)?;
                    let dst = if is_a { &mut sa } else { &mut sb };
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
                let mut p = Vec::with_capacity(comps);
                let mut q = Vec::with_capacity(comps);
                for j in 0..comps {
                    p.push(inp.bins.probabilities(&sa[j * nb..(j + 1) * nb])?);
                    q.push(inp.bins.probabilities(&sb[j * nb..(j + 1) * nb])?);
                }
                Some(weighted_kl_sym(&p, &q, inp.weights).0)
            })
        }
        Density::Kde => {
            let mut ma = Vec::new();
            let mut mb = Vec::new();
            permutation_test(&design, inp.permutations, seed, inp.exact, |l| {
                ma.clear();
                mb.clear();
                for (&u, &is_a) in units.iter().zip(l) {
                    if is_a { &mut ma } else { &mut mb }.push(u);
                }
                cell_kl(
                    &merge_cell(inp.hists, &ma, cell),
                    &merge_cell(inp.hists, &mb, cell),
                    cell,
                    inp.weights,
                    inp.bins,
                    inp.fine,
                    inp.density,
                )
                .map(|v| v.0)
            })
        }
    }
}

/// Computes every cell of a two-group shift.
pub fn shift_cells(inp: &ShiftInputs) -> Vec<ShiftCell> {
    let a = merge(inp.hists, inp.groups[0]);
    let b = merge(inp.hists, inp.groups[1]);
    let labels = cell_labels();
    let kl = |x: &ModelHists, y: &ModelHists, cell: usize| {
        cell_kl(x, y, cell, inp.weights, inp.bins, inp.fine, inp.density)
    };
    (0..CELLS)
        .into_par_iter()
        .map(|cell| {
            let mut rng = Rng::new(inp.seed ^ (cell as u64).wrapping_mul(0x1234_5678_9ABC));
            let main = kl(&a, &b, cell);
            let status = match (&main, a.n[cell], b.n[cell]) {
                (Some(_), _, _) => "ok".to_string(),
                (None, 0, 0) => "empty: no filters in either group".to_string(),
                (None, 0, _) => "empty: no filters in the first group".to_string(),
                _ => "empty: no filters in the second group".to_string(),
            };
            // within-group floor: random halves of each group with >= 2 models
            let mut within = Vec::new();
            for g in inp.groups {
                if g.len() < 2 {
                    continue;
                }
                let mut members = g.to_vec();
                for _ in 0..inp.splits {
                    rng.shuffle(&mut members);
                    let (x, y) = members.split_at(members.len() / 2);
                    if let Some((v, _)) = kl(
                        &merge_cell(inp.hists, x, cell),
                        &merge_cell(inp.hists, y, cell),
                        cell,
                    ) {
                        within.push(v);
                    }
                }
            }
            let reps: Vec<f64> = inp
                .replicates
                .iter()
                .filter_map(|&(x, y)| {
                    kl(
                        &merge_cell(inp.hists, &[x], cell),
                        &merge_cell(inp.hists, &[y], cell),
                        cell,
                    )
                    .map(|v| v.0)
                })
                .collect();
            let mut boot = Vec::new();
            if main.is_some() {
                for _ in 0..inp.bootstrap {
                    let sample = |g: &[usize], rng: &mut Rng| -> Vec<usize> {
                        (0..g.len()).map(|_| g[rng.below(g.len())]).collect()
                    };
                    let sa = sample(inp.groups[0], &mut rng);
                    let sb = sample(inp.groups[1], &mut rng);
                    if let Some((v, _)) = kl(
                        &merge_cell(inp.hists, &sa, cell),
                        &merge_cell(inp.hists, &sb, cell),
                        cell,
                    ) {
                        boot.push(v);
                    }
                }
            }
            boot.sort_by(f64::total_cmp);
            let ci =
                (!boot.is_empty()).then(|| [percentile(&boot, 0.025), percentile(&boot, 0.975)]);
            let (klv, per) = match main {
                Some((v, p)) => (Some(v), Some(p)),
                None => (None, None),
            };
            let (kl_smoothed, smoothed_per) =
                match cell_kl_smoothed(&a, &b, cell, inp.weights, inp.bins) {
                    Some((v, p)) => (Some(v), Some(p)),
                    None => (None, None),
                };
            let permutation = klv.and_then(|_| cell_permutation(inp, cell));
            let within_group = Floor::of(within);
            let replicates = Floor::of(reps);
            let (floor, floor_source) = match (replicates.mean, within_group.mean) {
                (Some(r), _) => (Some(r), Some("replicates".to_string())),
                (None, Some(w)) => (Some(w), Some("within_group".to_string())),
                _ => (None, None),
            };
            let kl_over_floor = match (klv, floor) {
                (Some(k), Some(f)) if f > 0.0 => Some(k / f),
                _ => None,
            };
            ShiftCell {
                bin: labels[cell].clone(),
                n: [a.n[cell], b.n[cell]],
                kl: klv,
                kl_per_component: per,
                status,
                within_group,
                replicates,
                bootstrap_ci: ci,
                kl_smoothed,
                kl_smoothed_per_component: smoothed_per,
                permutation,
                q_value: None,
                significant: None,
                kl_over_floor,
                floor_source: floor_source.filter(|_| kl_over_floor.is_some()),
            }
        })
        .collect()
}

/// The basis summary written with every analysis.
#[derive(Debug, Clone, Serialize)]
pub struct BasisSummary {
    /// Filters the basis was fitted on.
    pub n_samples: u64,
    /// Explained-variance ratios (the KL weights).
    pub explained_variance_ratio: Vec<f64>,
}

impl From<&Basis> for BasisSummary {
    fn from(b: &Basis) -> Self {
        BasisSummary {
            n_samples: b.n_samples,
            explained_variance_ratio: b.explained_variance_ratio.clone(),
        }
    }
}
