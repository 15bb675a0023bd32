//! Statistics that tell a group difference from seed noise: permutation tests over models
//! (labels shuffled between the two groups, within exchangeable blocks such as robust ↔ normal
//! pairs), Benjamini–Hochberg control of the false discovery rate across cells, and a
//! bias-reduced divergence for cells with few filters (KL between Gaussian-smoothed histograms).

use crate::numeric::{np_sum, Bins, Rng};
use serde::Serialize;

/// Default number of label permutations per test.
pub const PERMUTATIONS: usize = 1000;

/// False discovery rate at which cells are marked significant.
pub const FDR: f64 = 0.05;

/// Relative tolerance under which a permuted statistic counts as equal to the observed one
/// (the same counts summed in another order).
const TIE_REL: f64 = 1e-12;

/// Outcome of a permutation test of one statistic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Permutation {
    /// Share of labellings whose statistic is at least the observed one: exact when every
    /// labelling was evaluated, else `(1 + #{≥}) / (1 + permutations)`.
    pub p_value: f64,
    /// Labellings evaluated (the observed one included when exact).
    pub permutations: usize,
    /// True when every distinct labelling was evaluated.
    pub exact: bool,
    /// Mean of the statistic over the evaluated labellings (the null distribution).
    pub null_mean: f64,
    /// Standard deviation of the statistic under the null.
    pub null_sd: f64,
    /// Standardised effect `(observed − null_mean) / null_sd` (`None` when the null is flat).
    pub effect_size: Option<f64>,
}

/// Which labellings a permutation test draws from: models (units) with their group label
/// (`true` = first group), partitioned into blocks within which labels are exchangeable.
#[derive(Debug, Clone)]
pub struct Design {
    /// Observed label of each unit.
    pub labels: Vec<bool>,
    /// Blocks of unit indices (a partition of `0..labels.len()`).
    pub blocks: Vec<Vec<usize>>,
}

impl Design {
    /// One block holding every unit: labels shuffled freely.
    pub fn unrestricted(labels: Vec<bool>) -> Design {
        let blocks = vec![(0..labels.len()).collect()];
        Design { labels, blocks }
    }

    /// Blocks from links between units (e.g. robust ↔ normal pairs): units connected by links
    /// form one block; unlinked units are blocks of their own (their label never moves).
    pub fn linked(labels: Vec<bool>, links: &[(usize, usize)]) -> Design {
        let n = labels.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        for &(a, b) in links {
            if a < n && b < n {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                if ra != rb {
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
        let mut blocks: Vec<Vec<usize>> = Vec::new();
        let mut block_of = vec![usize::MAX; n];
        for i in 0..n {
            let r = root(&mut parent, i);
            if block_of[r] == usize::MAX {
                block_of[r] = blocks.len();
                blocks.push(Vec::new());
            }
            blocks[block_of[r]].push(i);
        }
        Design { labels, blocks }
    }

    /// Number of distinct labellings, if it is at most `cap`.
    pub fn labellings(&self, cap: usize) -> Option<usize> {
        let mut total: usize = 1;
        for b in &self.blocks {
            let k = b.iter().filter(|&&u| self.labels[u]).count();
            total = total.checked_mul(binomial(b.len(), k, cap)?)?;
            if total > cap {
                return None;
            }
        }
        Some(total)
    }
}

/// `C(n, k)` if it is at most `cap`.
fn binomial(n: usize, k: usize, cap: usize) -> Option<usize> {
    let k = k.min(n - k.min(n));
    let mut c: u128 = 1;
    for i in 0..k {
        c = c * (n - i) as u128 / (i + 1) as u128;
        if c > cap as u128 {
            return None;
        }
    }
    Some(c as usize)
}

/// All `k`-subsets of `0..n` as label masks over the block's positions.
fn subsets(n: usize, k: usize) -> Vec<Vec<bool>> {
    let mut out = Vec::new();
    let mut idx: Vec<usize> = (0..k).collect();
    loop {
        let mut m = vec![false; n];
        for &i in &idx {
            m[i] = true;
        }
        out.push(m);
        // next combination in lexicographic order
        let mut i = k;
        loop {
            if i == 0 {
                return out;
            }
            i -= 1;
            if idx[i] != i + n - k {
                break;
            }
            if i == 0 && idx[0] == n - k {
                return out;
            }
        }
        idx[i] += 1;
        for j in i + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// Permutation test of `stat` (larger = more different): with `exact`, every distinct labelling
/// of the design when there are at most `permutations` of them; otherwise `permutations` random
/// labellings drawn with a generator seeded by `seed`. Labellings for which `stat` is `None` are
/// left out. `None` when the observed statistic is `None` or `permutations` is 0.
pub fn permutation_test(
    design: &Design,
    permutations: usize,
    seed: u64,
    exact: bool,
    mut stat: impl FnMut(&[bool]) -> Option<f64>,
) -> Option<Permutation> {
    if permutations == 0 {
        return None;
    }
    let observed = stat(&design.labels)?;
    let tol = TIE_REL * observed.abs();
    let mut null = Vec::new();
    let enumerable = if exact {
        design.labellings(permutations)
    } else {
        None
    };
    let exact = match enumerable {
        Some(_) => {
            let per_block: Vec<Vec<Vec<bool>>> = design
                .blocks
                .iter()
                .map(|b| {
                    let k = b.iter().filter(|&&u| design.labels[u]).count();
                    subsets(b.len(), k)
                })
                .collect();
            let mut digit = vec![0usize; per_block.len()];
            let mut labels = design.labels.clone();
            'all: loop {
                for (b, block) in design.blocks.iter().enumerate() {
                    for (pos, &u) in block.iter().enumerate() {
                        labels[u] = per_block[b][digit[b]][pos];
                    }
                }
                if let Some(v) = stat(&labels) {
                    null.push(v);
                }
                for b in 0..digit.len() {
                    digit[b] += 1;
                    if digit[b] < per_block[b].len() {
                        continue 'all;
                    }
                    digit[b] = 0;
                }
                break;
            }
            true
        }
        None => {
            let mut rng = Rng::new(seed);
            let mut labels = design.labels.clone();
            let mut scratch = Vec::new();
            for _ in 0..permutations {
                for block in &design.blocks {
                    scratch.clear();
                    scratch.extend(block.iter().map(|&u| labels[u]));
                    rng.shuffle(&mut scratch);
                    for (&u, &l) in block.iter().zip(&scratch) {
                        labels[u] = l;
                    }
                }
                if let Some(v) = stat(&labels) {
                    null.push(v);
                }
            }
            false
        }
    };
    if null.is_empty() {
        return None;
    }
    let ge = null.iter().filter(|&&v| v >= observed - tol).count();
    let p_value = if exact {
        ge as f64 / null.len() as f64
    } else {
        (1 + ge) as f64 / (1 + null.len()) as f64
    };
    let n = null.len() as f64;
    let mean = np_sum(&null) / n;
    let dev: Vec<f64> = null.iter().map(|v| (v - mean) * (v - mean)).collect();
    let sd = if null.len() > 1 {
        (np_sum(&dev) / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    // flat: every null value ties with every other (the tie tolerance of the p-value); the
    // standard deviation of such a null is rounding (the mean of n copies of c can be off c)
    let (lo, hi) = null
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let flat = hi - lo <= TIE_REL * lo.abs().max(hi.abs());
    Some(Permutation {
        p_value,
        permutations: null.len(),
        exact,
        null_mean: mean,
        null_sd: sd,
        effect_size: (sd > 0.0 && !flat).then(|| (observed - mean) / sd),
    })
}

/// Benjamini–Hochberg adjusted p-values (q-values) of a family; `None` entries are not tests
/// and stay `None`.
pub fn benjamini_hochberg(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    idx.sort_by(|&a, &b| p[a].unwrap_or(1.0).total_cmp(&p[b].unwrap_or(1.0)));
    let m = idx.len() as f64;
    let mut q = vec![None; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let v = p[i].unwrap_or(1.0) * m / (rank + 1) as f64;
        running = running.min(v).min(1.0);
        q[i] = Some(running);
    }
    q
}

/// Silverman's rule-of-thumb bandwidth `0.9 · min(σ, IQR / 1.34) · n^(−1/5)` of `n` samples
/// with standard deviation `sd` and interquartile range `iqr` (σ alone when the IQR is 0).
pub fn silverman_bandwidth(n: u64, sd: f64, iqr: f64) -> f64 {
    let spread = if iqr > 0.0 { sd.min(iqr / 1.34) } else { sd };
    0.9 * spread * (n as f64).powf(-0.2)
}

/// Interquartile range of binned samples (linear interpolation inside a bin).
fn binned_iqr(counts: &[u64], edges: &[f64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let quantile = |q: f64| {
        let target = q * total as f64;
        let mut acc = 0.0;
        for (i, &c) in counts.iter().enumerate() {
            let next = acc + c as f64;
            if next >= target && c > 0 {
                let f = (target - acc) / c as f64;
                return edges[i] + f * (edges[i + 1] - edges[i]);
            }
            acc = next;
        }
        edges[edges.len() - 1]
    };
    quantile(0.75) - quantile(0.25)
}

/// Smallest probability of a smoothed bin (keeps every log finite).
const SMOOTH_FLOOR: f64 = 1e-300;

/// Bin probabilities of a Gaussian kernel density estimate of binned samples: each count sits at
/// its bin centre, the kernel's variance is `h² + w²/12` (Silverman bandwidth `h` from `n`,
/// `sd` and the binned IQR, plus the variance of a uniform spread over a bin of width `w`), the
/// density is evaluated at the bin centres and normalised over the bins. `None` for no samples.
pub fn smoothed_probabilities(counts: &[u64], bins: &Bins, sd: f64) -> Option<Vec<f64>> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let e = bins.edges();
    let w = (e[e.len() - 1] - e[0]) / bins.len() as f64;
    let h = silverman_bandwidth(n, sd, binned_iqr(counts, e));
    let s = (h * h + w * w / 12.0).sqrt().max(f64::MIN_POSITIVE);
    let centres: Vec<f64> = e.windows(2).map(|x| 0.5 * (x[0] + x[1])).collect();
    let mut v: Vec<f64> = centres
        .iter()
        .map(|&x| {
            let mut acc = 0.0;
            for (&c, &g) in counts.iter().zip(&centres) {
                if c > 0 {
                    let z = (x - g) / s;
                    acc += c as f64 * (-0.5 * z * z).exp();
                }
            }
            acc.max(SMOOTH_FLOOR)
        })
        .collect();
    let total = np_sum(&v);
    for x in v.iter_mut() {
        *x /= total;
    }
    Some(v)
}

/// Standard deviation from a count, Σx and Σx² (0 for fewer than two samples).
pub fn sd_from_sums(n: u64, sum: f64, sum_sq: f64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let nf = n as f64;
    let mean = sum / nf;
    ((sum_sq - nf * mean * mean) / (nf - 1.0)).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_matches_hand_values() {
        // p = 0.01, 0.04, 0.03, 0.2 (m = 4): sorted 0.01, 0.03, 0.04, 0.2
        // raw 0.04, 0.06, 0.0533, 0.2 -> step-up minima 0.04, 0.0533, 0.0533, 0.2
        let q = benjamini_hochberg(&[Some(0.01), Some(0.04), None, Some(0.03), Some(0.2)]);
        let want = [
            Some(0.04),
            Some(0.16 / 3.0),
            None,
            Some(0.16 / 3.0),
            Some(0.2),
        ];
        for (a, b) in q.iter().zip(want) {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-15, "{a} vs {b}"),
                (None, None) => {}
                _ => panic!("{q:?}"),
            }
        }
        assert_eq!(
            benjamini_hochberg(&[Some(0.9), Some(0.95)]),
            [Some(0.95), Some(0.95)]
        );
    }

    /// Found by the property tests (`tests/properties/stats.rs`): a statistic that ignores the
    /// labels has a null whose standard deviation is rounding (the mean of three copies of this
    /// value is one ulp off it); it got an effect size of −0.8 instead of none.
    #[test]
    fn a_flat_null_has_no_effect_size() {
        let c = 0.24603587916010677;
        let d = Design::unrestricted(vec![false, false, true]);
        let p = permutation_test(&d, 100, 1, true, |_| Some(c)).unwrap();
        assert_eq!(p.permutations, 3);
        assert!(p.null_sd > 0.0, "the rounding this test is about");
        assert_eq!(p.p_value, 1.0);
        assert_eq!(p.effect_size, None);
    }

    #[test]
    fn exact_enumeration_counts_labellings() {
        // 2 vs 2 unrestricted: C(4,2) = 6 labellings; statistic = sum of the first group's values
        let vals = [1.0, 2.0, 3.0, 4.0];
        let d = Design::unrestricted(vec![false, false, true, true]);
        assert_eq!(d.labellings(100), Some(6));
        let p = permutation_test(&d, 100, 1, true, |l| {
            Some(vals.iter().zip(l).filter(|(_, &a)| a).map(|(v, _)| v).sum())
        })
        .unwrap();
        // observed 7 is the largest of {3,4,5,5,6,7}: p = 1/6
        assert!(p.exact);
        assert_eq!(p.permutations, 6);
        assert!((p.p_value - 1.0 / 6.0).abs() < 1e-15);
        assert!((p.null_mean - 5.0).abs() < 1e-15);
        // pairs (0,2), (1,3): 4 labellings, observed 7 is the largest of {3,5,5,7}
        let d = Design::linked(vec![false, false, true, true], &[(0, 2), (1, 3)]);
        assert_eq!(d.blocks, vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(d.labellings(100), Some(4));
        let p = permutation_test(&d, 100, 1, true, |l| {
            Some(vals.iter().zip(l).filter(|(_, &a)| a).map(|(v, _)| v).sum())
        })
        .unwrap();
        assert_eq!(p.permutations, 4);
        assert!((p.p_value - 0.25).abs() < 1e-15);
        // Monte Carlo when the cap is below the number of labellings
        let p = permutation_test(&d, 3, 1, true, |l| {
            Some(vals.iter().zip(l).filter(|(_, &a)| a).map(|(v, _)| v).sum())
        })
        .unwrap();
        assert!(!p.exact);
        assert_eq!(p.permutations, 3);
    }

    #[test]
    fn subsets_and_binomials() {
        assert_eq!(subsets(4, 2).len(), 6);
        assert_eq!(subsets(3, 0), vec![vec![false; 3]]);
        assert_eq!(subsets(3, 3), vec![vec![true; 3]]);
        assert_eq!(binomial(12, 6, 10_000), Some(924));
        assert_eq!(binomial(114, 71, 10_000), None);
    }
}
