//! 2-D histogram of the first two PCA coefficients of the non-sparse filters.

use super::basis::Basis;
use super::divergence::Bins;
use crate::db::shard::ShardReader;
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
            let m = &db.models[i];
            let mut counts = vec![0u64; bins * bins];
            let Some(shard) = m.kernel(kernel) else {
                return Ok(counts);
            };
            let path = db.dir.join(&shard.shard);
            let mut r = ShardReader::open(&path, shard.n_filters, kernel[0], kernel[1])
                .map_err(|e| DbError::Io(path.clone(), e))?;
            let mut layers: Vec<_> = m.layers.iter().filter(|l| l.kernel == kernel).collect();
            layers.sort_by_key(|l| l.shard_start);
            let (mut buf, mut x, mut c) = (Vec::new(), vec![0.0; k], vec![0.0; k]);
            let (mut id, mut li) = (0u64, 0usize);
            while r
                .next_chunk(1 << 16, &mut buf)
                .map_err(|e| DbError::Io(path.clone(), e))?
                > 0
            {
                for f in buf.chunks_exact(k) {
                    while li < layers.len() && id >= layers[li].shard_end {
                        li += 1;
                    }
                    id += 1;
                    let Some(l) = layers.get(li) else { continue };
                    let linf = f.iter().fold(0f32, |a, &v| a.max(v.abs()));
                    if l.transposed || f64::from(linf) <= l.layer_norm / 100.0 {
                        continue;
                    }
                    scale_filter(f, &mut x);
                    basis.transform_into(&x, &mp, &mut c);
                    if let (Some(ix), Some(iy)) = (b.index(c[0]), b.index(c[1])) {
                        counts[ix * bins + iy] += 1;
                    }
                }
            }
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
