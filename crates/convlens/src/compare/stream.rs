//! Streaming passes over the filter shards of a database: the coefficient range and the
//! per-model coefficient histograms. Memory is independent of the number of filters.

use super::basis::Basis;
use super::divergence::Bins;
use crate::db::record::ModelRecord;
use crate::db::shard::ShardReader;
use crate::db::{Db, DbError};
use crate::depth::DepthBin;
use crate::measure::scale_filter;
use rayon::prelude::*;

/// Histogram cells: overall, then the depth groups (first, ten deciles).
pub const CELLS: usize = 12;

/// Cell labels in order.
pub fn cell_labels() -> Vec<String> {
    let mut v = vec!["overall".to_string()];
    v.extend(crate::depth::ALL_BINS.iter().map(|b| b.label()));
    v
}

const CHUNK: usize = 1 << 16;

/// Per-layer facts needed while streaming.
struct LayerView {
    start: u64,
    end: u64,
    limit: f64,
    cell: Option<usize>,
    skip: bool,
}

fn layer_views(m: &ModelRecord, kernel: [usize; 2]) -> Vec<LayerView> {
    let mut v: Vec<LayerView> = m
        .layers
        .iter()
        .filter(|l| l.kernel == kernel)
        .map(|l| LayerView {
            start: l.shard_start,
            end: l.shard_end,
            limit: l.layer_norm / 100.0,
            cell: l
                .depth_group
                .as_deref()
                .and_then(DepthBin::from_label)
                .map(|b| 1 + b.index()),
            skip: l.transposed,
        })
        .collect();
    v.sort_by_key(|l| l.start);
    v
}

/// Calls `f(layer, filter, sparse)` for every filter of a model's shard of `kernel`.
fn for_each_filter(
    db: &Db,
    m: &ModelRecord,
    kernel: [usize; 2],
    mut f: impl FnMut(&LayerView, &[f32], bool),
) -> Result<(), DbError> {
    let Some(shard) = m.kernel(kernel) else {
        return Ok(());
    };
    let k = kernel[0] * kernel[1];
    let path = db.dir.join(&shard.shard);
    let mut r = ShardReader::open(&path, shard.n_filters, kernel[0], kernel[1])
        .map_err(|e| DbError::Io(path.clone(), e))?;
    let layers = layer_views(m, kernel);
    let mut buf = Vec::new();
    let mut id: u64 = 0;
    let mut li = 0;
    loop {
        let n = r
            .next_chunk(CHUNK, &mut buf)
            .map_err(|e| DbError::Io(path.clone(), e))?;
        if n == 0 {
            break;
        }
        for filt in buf.chunks_exact(k) {
            while li < layers.len() && id >= layers[li].end {
                li += 1;
            }
            if let Some(l) = layers.get(li).filter(|l| id >= l.start) {
                if !l.skip {
                    let linf = filt.iter().fold(0f32, |a, &x| a.max(x.abs()));
                    let sparse = f64::from(linf) <= l.limit;
                    f(l, filt, sparse);
                }
            }
            id += 1;
        }
    }
    Ok(())
}

/// Global `[min, max]` of the coefficients of all scaled filters (sparse ones included) of
/// the given models, as the notebook computes it. `None` when there is no filter.
pub fn coefficient_range(
    db: &Db,
    models: &[usize],
    kernel: [usize; 2],
    basis: &Basis,
) -> Result<Option<(f64, f64)>, DbError> {
    let mp = basis.mean_projection();
    let k = kernel[0] * kernel[1];
    let parts: Vec<Result<(f64, f64), DbError>> = models
        .par_iter()
        .map(|&i| {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            let mut x = vec![0.0; k];
            let mut c = vec![0.0; k];
            for_each_filter(db, &db.models[i], kernel, |_, filt, _| {
                scale_filter(filt, &mut x);
                basis.transform_into(&x, &mp, &mut c);
                for &v in &c {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            })?;
            Ok((lo, hi))
        })
        .collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in parts {
        let (a, b) = p?;
        lo = lo.min(a);
        hi = hi.max(b);
    }
    Ok((lo <= hi).then_some((lo, hi)))
}

/// Coefficient histograms of one model's non-sparse filters: per cell (overall, depth groups)
/// and component, counts over the shared bins; optionally a fine grid for density estimates
/// and the first two moments of the coefficients per cell and component.
#[derive(Debug, Clone)]
pub struct ModelHists {
    /// Components.
    pub comps: usize,
    /// Bins per histogram.
    pub bins: usize,
    /// Non-sparse filters per cell.
    pub n: [u64; CELLS],
    /// Counts, `[cell][component][bin]` flattened.
    pub counts: Vec<u64>,
    /// Fine-grid points per histogram (0 when not collected).
    pub fine_bins: usize,
    /// Fine-grid counts, `[cell][component][fine bin]` flattened.
    pub fine: Vec<u32>,
    /// Σc per `[cell][component]`.
    pub sum: Vec<f64>,
    /// Σc² per `[cell][component]`.
    pub sum_sq: Vec<f64>,
}

impl ModelHists {
    fn new(comps: usize, bins: usize, fine_bins: usize) -> Self {
        ModelHists {
            comps,
            bins,
            n: [0; CELLS],
            counts: vec![0; CELLS * comps * bins],
            fine_bins,
            fine: vec![0; CELLS * comps * fine_bins],
            sum: vec![0.0; CELLS * comps],
            sum_sq: vec![0.0; CELLS * comps],
        }
    }

    /// Adds another model's histograms.
    pub fn merge(&mut self, o: &ModelHists) {
        for (a, b) in self.n.iter_mut().zip(&o.n) {
            *a += b;
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        for (a, b) in self.fine.iter_mut().zip(&o.fine) {
            *a += b;
        }
        for (a, b) in self.sum.iter_mut().zip(&o.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&o.sum_sq) {
            *a += b;
        }
    }

    /// An empty set of histograms shaped like `self`.
    pub fn empty_like(&self) -> ModelHists {
        ModelHists::new(self.comps, self.bins, self.fine_bins)
    }

    /// Counts of one cell and component.
    pub fn counts(&self, cell: usize, comp: usize) -> &[u64] {
        let o = (cell * self.comps + comp) * self.bins;
        &self.counts[o..o + self.bins]
    }

    /// Fine-grid counts of one cell and component.
    pub fn fine(&self, cell: usize, comp: usize) -> &[u32] {
        let o = (cell * self.comps + comp) * self.fine_bins;
        &self.fine[o..o + self.fine_bins]
    }
}

/// Per-model coefficient histograms of the non-sparse filters (pass 2 of the shift).
pub fn model_histograms(
    db: &Db,
    models: &[usize],
    kernel: [usize; 2],
    basis: &Basis,
    bins: &Bins,
    fine: Option<&Bins>,
) -> Result<Vec<ModelHists>, DbError> {
    let mp = basis.mean_projection();
    let k = kernel[0] * kernel[1];
    let comps = basis.components.len();
    models
        .par_iter()
        .map(|&i| {
            let mut h = ModelHists::new(comps, bins.len(), fine.map_or(0, |f| f.len()));
            let mut x = vec![0.0; k];
            let mut c = vec![0.0; k];
            for_each_filter(db, &db.models[i], kernel, |l, filt, sparse| {
                if sparse {
                    return;
                }
                scale_filter(filt, &mut x);
                basis.transform_into(&x, &mp, &mut c);
                for cell in [Some(0), l.cell].into_iter().flatten() {
                    h.n[cell] += 1;
                    for (j, &v) in c.iter().enumerate() {
                        if let Some(b) = bins.index(v) {
                            h.counts[(cell * comps + j) * h.bins + b] += 1;
                        }
                        if let Some(fb) = fine.and_then(|f| f.index(v)) {
                            h.fine[(cell * comps + j) * h.fine_bins + fb] += 1;
                        }
                        h.sum[cell * comps + j] += v;
                        h.sum_sq[cell * comps + j] += v * v;
                    }
                }
            })?;
            Ok(h)
        })
        .collect()
}
