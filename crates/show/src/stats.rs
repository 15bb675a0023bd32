//! Tukey box-plot statistics.

/// Box-plot statistics of a sample: quartiles by linear interpolation (numpy's default
/// `percentile` method), whiskers at the furthest data points within 1.5 IQR of the box
/// (matplotlib's rule), outliers beyond them and the mean.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxStats {
    /// Number of finite values used.
    pub n: usize,
    /// 25th percentile.
    pub q1: f64,
    /// 50th percentile.
    pub median: f64,
    /// 75th percentile.
    pub q3: f64,
    /// Smallest value ≥ q1 − 1.5 IQR.
    pub lo_whisker: f64,
    /// Largest value ≤ q3 + 1.5 IQR.
    pub hi_whisker: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Values outside the whiskers, ascending.
    pub outliers: Vec<f64>,
}

/// numpy's `_lerp`: exact at both ends and monotone.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Percentile `p` (0..=1) of ascending, non-empty `sorted` by linear interpolation.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * p;
    let lo = (h.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let (a, b) = match (sorted.get(lo), sorted.get(hi)) {
        (Some(a), Some(b)) => (*a, *b),
        _ => return f64::NAN,
    };
    lerp(a, b, h - lo as f64)
}

/// Box statistics of `values`; NaN and infinite values are ignored. With no finite value every
/// statistic is NaN and `n` is 0.
pub fn box_stats(values: &[f64]) -> BoxStats {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return BoxStats {
            n,
            q1: f64::NAN,
            median: f64::NAN,
            q3: f64::NAN,
            lo_whisker: f64::NAN,
            hi_whisker: f64::NAN,
            mean: f64::NAN,
            outliers: Vec::new(),
        };
    }
    let q1 = percentile(&v, 0.25);
    let median = percentile(&v, 0.5);
    let q3 = percentile(&v, 0.75);
    let iqr = q3 - q1;
    let lo_fence = q1 - 1.5 * iqr;
    let hi_fence = q3 + 1.5 * iqr;
    let lo_whisker = v.iter().copied().find(|&x| x >= lo_fence).unwrap_or(q1);
    let hi_whisker = v
        .iter()
        .rev()
        .copied()
        .find(|&x| x <= hi_fence)
        .unwrap_or(q3);
    let outliers = v
        .iter()
        .copied()
        .filter(|&x| x < lo_fence || x > hi_fence)
        .collect();
    let mean = v.iter().sum::<f64>() / n as f64;
    BoxStats {
        n,
        q1,
        median,
        q3,
        lo_whisker,
        hi_whisker,
        mean,
        outliers,
    }
}
