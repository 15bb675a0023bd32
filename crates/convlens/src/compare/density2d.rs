//! 2-D histogram of the first two PCA coefficients of the non-sparse filters.

use super::basis::Basis;
use super::divergence::Bins;
use super::stream::for_each_filter;
use crate::db::{Db, DbError};
use crate::measure::scale_filter;
use rayon::prelude::*;

/// Counts of (c0, c1) over `bins × bins` cells spanning `range` on both axes
/// (`counts[ix][iy]`, numpy `histogram2d` layout).
pub fn coefficient_density(
    db: &Db,
    models: &[usize],
    kernel: [usize; 2],
    basis: &Basis,
    range: (f64, f64),
    bins: usize,
) -> Result<Vec<Vec<f64>>, DbError> {
    let b = Bins::new(range.0, range.1, bins);
    let mp = basis.mean_projection();
    let k = kernel[0] * kernel[1];
    let parts: Vec<Result<Vec<u64>, DbError>> = models
        .par_iter()
        .map(|&i| {
            let mut counts = vec![0u64; bins * bins];
            let (mut x, mut c) = (vec![0.0; k], vec![0.0; k]);
            for_each_filter(db, &db.models[i], kernel, |_, f, sparse| {
                if sparse {
                    return;
                }
                scale_filter(f, &mut x);
                basis.transform_into(&x, &mp, &mut c);
                if let (Some(ix), Some(iy)) = (b.index(c[0]), b.index(c[1])) {
                    counts[ix * bins + iy] += 1;
                }
            })?;
            Ok(counts)
        })
        .collect();
    let mut total = vec![0u64; bins * bins];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p?) {
            *t += v;
        }
    }
    Ok(total
        .chunks(bins)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect())
}
