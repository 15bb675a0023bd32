//! The forward pass: output geometry, the convolution (and its transpose, for gradients), conv
//! + ReLU, the per-filter activation change under a perturbation, and the filter shapes.

use super::{images_err, Batch, Normalization, StemError, StemInfo, StemModel, MAX_ACTIVATIONS};
use rayon::prelude::*;
use serde::Serialize;

impl StemModel {
    /// Padding `(top, left, bottom, right)` for an `h × w` input (resolves `auto_pad`).
    pub fn pads_for(&self, h: usize, w: usize) -> [usize; 4] {
        if self.info.pads[0] != usize::MAX {
            return self.info.pads;
        }
        let same = |size: usize, s: usize, d: usize, k: usize| -> (usize, usize) {
            let out = size.div_ceil(s);
            let need = (out.saturating_sub(1) * s + d * (k - 1) + 1).saturating_sub(size);
            (need / 2, need - need / 2)
        };
        let (t, b) = same(h, self.info.stride[0], self.info.dilation[0], self.info.kh);
        let (l, r) = same(w, self.info.stride[1], self.info.dilation[1], self.info.kw);
        // SAME_UPPER puts the extra pixel at the end (the only flavour exporters write)
        [t, l, b, r]
    }

    /// Output size `(ho, wo)` for an `h × w` input.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize), StemError> {
        let p = self.pads_for(h, w);
        let i = &self.info;
        let o = |size: usize, a: usize, b: usize, d: usize, k: usize, s: usize| -> Option<usize> {
            let padded = size.checked_add(a)?.checked_add(b)?;
            let span = d.checked_mul(k - 1)?.checked_add(1)?;
            padded.checked_sub(span).map(|x| x / s + 1)
        };
        match (
            o(h, p[0], p[2], i.dilation[0], i.kh, i.stride[0]),
            o(w, p[1], p[3], i.dilation[1], i.kw, i.stride[1]),
        ) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(images_err(format!(
                "a {h}x{w} image is smaller than the {}x{} kernel (padding {p:?}, dilation {:?})",
                i.kh, i.kw, i.dilation
            ))),
        }
    }

    pub(super) fn check_batch(&self, b: &Batch<'_>) -> Result<Geometry, StemError> {
        // the fields are public: check them again
        Batch::new(b.data, b.n, b.c, b.h, b.w)?;
        if b.c != self.info.in_channels {
            return Err(images_err(format!(
                "the images have {} channel(s) but the stem {} expects {}",
                b.c, self.info.layer, self.info.in_channels
            )));
        }
        let (ho, wo) = self.output_size(b.h, b.w)?;
        let per = self
            .info
            .out_channels
            .checked_mul(ho)
            .and_then(|x| x.checked_mul(wo));
        match per.and_then(|p| p.checked_mul(b.n)) {
            Some(t) if t <= MAX_ACTIVATIONS => {}
            _ => {
                return Err(images_err(format!(
                    "{} images give more than {MAX_ACTIVATIONS} activation values",
                    b.n
                )))
            }
        }
        Ok(Geometry {
            h: b.h,
            w: b.w,
            ho,
            wo,
            pads: self.pads_for(b.h, b.w),
        })
    }

    /// Pre-activation of one normalised image (`c × h × w`) into `out` (`O × ho × wo`).
    pub(super) fn conv_image(&self, g: &Geometry, x: &[f64], out: &mut [f64]) {
        let i = &self.info;
        let (o_n, groups) = (i.out_channels, i.groups);
        let (opg, ipg) = (o_n / groups, i.in_channels / groups);
        let (kh, kw, sx) = (i.kh, i.kw, i.stride[1]);
        let plane = g.ho * g.wo;
        let ranges: Vec<(usize, usize, usize)> = (0..kw).map(|kx| g.x_range(i, kx)).collect();
        for o in 0..o_n {
            let c0 = (o / opg) * ipg;
            let wo_ = &self.weight[o * ipg * kh * kw..(o + 1) * ipg * kh * kw];
            let dst = &mut out[o * plane..(o + 1) * plane];
            dst.fill(self.bias[o]);
            for ci in 0..ipg {
                let src = &x[(c0 + ci) * g.h * g.w..(c0 + ci + 1) * g.h * g.w];
                for ky in 0..kh {
                    for oy in 0..g.ho {
                        let Some(iy) = g.in_y(i, oy, ky) else {
                            continue;
                        };
                        let row = &src[iy * g.w..(iy + 1) * g.w];
                        let drow = &mut dst[oy * g.wo..(oy + 1) * g.wo];
                        for (kx, &(lo, hi, first)) in ranges.iter().enumerate() {
                            let wv = wo_[(ci * kh + ky) * kw + kx];
                            if wv == 0.0 || lo >= hi {
                                continue;
                            }
                            let d = &mut drow[lo..hi];
                            if sx == 1 {
                                for (d, &v) in d.iter_mut().zip(&row[first..first + (hi - lo)]) {
                                    *d += wv * v;
                                }
                            } else {
                                for (j, d) in d.iter_mut().enumerate() {
                                    *d += wv * row[first + j * sx];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Gradient with respect to the normalised input of `Σ gz · conv(x)` (a transposed
    /// convolution without bias), into `gx` (`c × h × w`).
    pub(super) fn conv_transpose_image(&self, g: &Geometry, gz: &[f64], gx: &mut [f64]) {
        let i = &self.info;
        let (o_n, groups) = (i.out_channels, i.groups);
        let (opg, ipg) = (o_n / groups, i.in_channels / groups);
        let (kh, kw, sx) = (i.kh, i.kw, i.stride[1]);
        let plane = g.ho * g.wo;
        let ranges: Vec<(usize, usize, usize)> = (0..kw).map(|kx| g.x_range(i, kx)).collect();
        gx.fill(0.0);
        for o in 0..o_n {
            let c0 = (o / opg) * ipg;
            let wo_ = &self.weight[o * ipg * kh * kw..(o + 1) * ipg * kh * kw];
            let src = &gz[o * plane..(o + 1) * plane];
            for ci in 0..ipg {
                let dst = &mut gx[(c0 + ci) * g.h * g.w..(c0 + ci + 1) * g.h * g.w];
                for ky in 0..kh {
                    for oy in 0..g.ho {
                        let Some(iy) = g.in_y(i, oy, ky) else {
                            continue;
                        };
                        let srow = &src[oy * g.wo..(oy + 1) * g.wo];
                        let drow = &mut dst[iy * g.w..(iy + 1) * g.w];
                        for (kx, &(lo, hi, first)) in ranges.iter().enumerate() {
                            let wv = wo_[(ci * kh + ky) * kw + kx];
                            if wv == 0.0 || lo >= hi {
                                continue;
                            }
                            let s = &srow[lo..hi];
                            if sx == 1 {
                                for (d, &v) in drow[first..first + (hi - lo)].iter_mut().zip(s) {
                                    *d += wv * v;
                                }
                            } else {
                                for (j, &v) in s.iter().enumerate() {
                                    drow[first + j * sx] += wv * v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs the stem (conv with bias, BatchNorm folded) and a ReLU on network inputs (already
    /// normalised), `n × c × h × w`. Activations are computed in `f64` and returned as `f32`.
    pub fn forward(&self, x: &Batch<'_>) -> Result<Activations, StemError> {
        let g = self.check_batch(x)?;
        let per = self.info.out_channels * g.ho * g.wo;
        let pre: Vec<Vec<f32>> = (0..x.n)
            .into_par_iter()
            .map(|k| {
                let img: Vec<f64> = x.image(k).iter().map(|&v| f64::from(v)).collect();
                let mut z = vec![0.0; per];
                self.conv_image(&g, &img, &mut z);
                z.into_iter().map(|v| v as f32).collect()
            })
            .collect();
        let pre: Vec<f32> = pre.concat();
        let post = pre.iter().map(|&v| v.max(0.0)).collect();
        Ok(Activations {
            n: x.n,
            channels: self.info.out_channels,
            h: g.ho,
            w: g.wo,
            pre,
            post,
        })
    }

    /// Shape of the filters: centre-tap share and pairwise cosine similarity (effective
    /// weights), with `threshold` the cosine from which two filters count as near-duplicates.
    pub fn filter_shapes(&self, threshold: f64) -> Vec<FilterShape> {
        let i = &self.info;
        let per = self.weight.len() / i.out_channels;
        let (ys, xs) = (centre(i.kh), centre(i.kw));
        let norms: Vec<f64> = self
            .weight
            .chunks(per)
            .map(|f| f.iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect();
        (0..i.out_channels)
            .into_par_iter()
            .map(|o| {
                let f = &self.weight[o * per..(o + 1) * per];
                let total: f64 = f.iter().map(|v| v * v).sum();
                let mut centre_e = 0.0;
                for c in 0..per / (i.kh * i.kw) {
                    for &y in &ys {
                        for &x in &xs {
                            let v = f[(c * i.kh + y) * i.kw + x];
                            centre_e += v * v;
                        }
                    }
                }
                let mut best: Option<(usize, f64)> = None;
                let mut dups = 0;
                for p in 0..i.out_channels {
                    if p == o || norms[o] == 0.0 || norms[p] == 0.0 {
                        continue;
                    }
                    let g = &self.weight[p * per..(p + 1) * per];
                    let dot: f64 = f.iter().zip(g).map(|(a, b)| a * b).sum();
                    let cos = dot / (norms[o] * norms[p]);
                    if cos >= threshold {
                        dups += 1;
                    }
                    if best.is_none_or(|(_, b)| cos > b) {
                        best = Some((p, cos));
                    }
                }
                FilterShape {
                    channel: o,
                    norm: norms[o],
                    centre_share: (total > 0.0).then(|| centre_e / total),
                    max_similarity: best.map(|b| b.1),
                    most_similar: best.map(|b| b.0),
                    near_duplicates: dups,
                }
            })
            .collect()
    }

    /// Per-filter sums of one image pair (clean, perturbed), both normalised network inputs.
    fn pair_sums(&self, g: &Geometry, clean: &[f64], pert: &[f64]) -> Vec<ChannelSums> {
        let per = self.info.out_channels * g.ho * g.wo;
        let mut z = vec![0.0; per];
        let mut zp = vec![0.0; per];
        self.conv_image(g, clean, &mut z);
        self.conv_image(g, pert, &mut zp);
        channel_sums(&z, &zp, self.info.out_channels)
    }

    /// How much a perturbation changes the stem's activation, per filter and in total.
    /// `clean` and `perturbed` are images in [0, 1] (same shape); `norm` turns them into network
    /// inputs.
    pub fn perturbation(
        &self,
        clean: &Batch<'_>,
        perturbed: &Batch<'_>,
        norm: &Normalization,
    ) -> Result<Perturbation, StemError> {
        if (clean.n, clean.c, clean.h, clean.w)
            != (perturbed.n, perturbed.c, perturbed.h, perturbed.w)
        {
            return Err(images_err(format!(
                "clean images are {}x{}x{}x{} but perturbed ones {}x{}x{}x{}",
                clean.n,
                clean.c,
                clean.h,
                clean.w,
                perturbed.n,
                perturbed.c,
                perturbed.h,
                perturbed.w
            )));
        }
        let g = self.check_batch(clean)?;
        self.check_batch(perturbed)?;
        norm.check(clean.c)?;
        let sums: Vec<Vec<ChannelSums>> = (0..clean.n)
            .into_par_iter()
            .map(|k| {
                let a = norm.apply(clean.image(k));
                let b = norm.apply(perturbed.image(k));
                self.pair_sums(&g, &a, &b)
            })
            .collect();
        Ok(Perturbation::from_sums(&sums, self.info.out_channels))
    }
}

/// The centre rows (or columns) of a kernel side: the middle one for odd sizes, the middle two
/// for even sizes.
fn centre(k: usize) -> Vec<usize> {
    if k % 2 == 1 {
        vec![k / 2]
    } else {
        vec![k / 2 - 1, k / 2]
    }
}

/// Size information of one convolution call.
pub(super) struct Geometry {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
    pads: [usize; 4],
}

impl Geometry {
    #[inline]
    fn in_y(&self, i: &StemInfo, oy: usize, ky: usize) -> Option<usize> {
        (oy * i.stride[0] + ky * i.dilation[0])
            .checked_sub(self.pads[0])
            .filter(|&y| y < self.h)
    }
    /// The output columns `lo..hi` whose input column for kernel column `kx` lies inside the
    /// image, and the input column of `lo`.
    fn x_range(&self, i: &StemInfo, kx: usize) -> (usize, usize, usize) {
        let s = i.stride[1];
        let off = kx * i.dilation[1];
        let pl = self.pads[1];
        // ox·s + off − pl ∈ [0, w)
        let lo = pl.saturating_sub(off).div_ceil(s);
        let hi = (pl + self.w).saturating_sub(off).div_ceil(s).min(self.wo);
        if lo >= hi {
            return (0, 0, 0);
        }
        (lo, hi, lo * s + off - pl)
    }
}

/// Sums of one filter over positions (and images): `Σz²`, `Σ(Δz)²`, `Σa²`, `Σ(Δa)²`, active
/// positions and positions.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ChannelSums {
    z2: f64,
    dz2: f64,
    a2: f64,
    da2: f64,
    active: u64,
    count: u64,
}

pub(super) fn channel_sums(z: &[f64], zp: &[f64], channels: usize) -> Vec<ChannelSums> {
    let plane = z.len() / channels.max(1);
    (0..channels)
        .map(|o| {
            let mut s = ChannelSums::default();
            for (&a, &b) in z[o * plane..(o + 1) * plane]
                .iter()
                .zip(&zp[o * plane..(o + 1) * plane])
            {
                let (ra, rb) = (a.max(0.0), b.max(0.0));
                s.z2 += a * a;
                s.dz2 += (b - a) * (b - a);
                s.a2 += ra * ra;
                s.da2 += (rb - ra) * (rb - ra);
                s.active += u64::from(a > 0.0);
                s.count += 1;
            }
            s
        })
        .collect()
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| (num / den).sqrt())
}

fn removed(da2: f64, dz2: f64) -> Option<f64> {
    (dz2 > 0.0).then(|| 1.0 - da2 / dz2)
}

/// Pre- and post-ReLU activations of a batch, `n × channels × h × w`.
#[derive(Debug, Clone, PartialEq)]
pub struct Activations {
    /// Images.
    pub n: usize,
    /// Output channels.
    pub channels: usize,
    /// Output height.
    pub h: usize,
    /// Output width.
    pub w: usize,
    /// conv(x) + bias.
    pub pre: Vec<f32>,
    /// relu(pre).
    pub post: Vec<f32>,
}

/// Shape of one stem filter (effective weights).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FilterShape {
    /// Output channel.
    pub channel: usize,
    /// L2 norm of the filter.
    pub norm: f64,
    /// Share of the filter's energy (squared weights, all input channels) in its centre tap
    /// (the middle 2×2 for even sides): 1 for a 1×1-like filter. `None` for a zero filter.
    pub centre_share: Option<f64>,
    /// Largest cosine similarity to another filter of the stem.
    pub max_similarity: Option<f64>,
    /// The channel of that filter.
    pub most_similar: Option<usize>,
    /// Other filters with cosine similarity ≥ the threshold.
    pub near_duplicates: usize,
}

/// Change of one filter's activation (or of the whole stem) under a perturbation. Norms are
/// over all images and positions.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct Change {
    /// ‖conv(x+δ) − conv(x)‖ / ‖conv(x)‖ (pre-ReLU, bias included in conv).
    pub pre_change: Option<f64>,
    /// ‖relu(conv(x+δ)) − relu(conv(x))‖ / ‖relu(conv(x))‖.
    pub post_change: Option<f64>,
    /// Share of the perturbation's energy the ReLU removes:
    /// `1 − ‖Δ post‖² / ‖Δ pre‖²` (in [0, 1]; the ReLU is 1-Lipschitz).
    pub relu_removed: Option<f64>,
    /// ‖Δ post‖² per image.
    pub post_energy: f64,
    /// Share of positive pre-activations on the clean images.
    pub active_share: Option<f64>,
}

impl Change {
    fn from(s: &ChannelSums, n: usize) -> Change {
        Change {
            pre_change: ratio(s.dz2, s.z2),
            post_change: ratio(s.da2, s.a2),
            relu_removed: removed(s.da2, s.dz2),
            post_energy: s.da2 / n.max(1) as f64,
            active_share: (s.count > 0).then(|| s.active as f64 / s.count as f64),
        }
    }
}

/// Activation change under a perturbation: per filter and for the whole stem.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Perturbation {
    /// Per output channel.
    pub filters: Vec<Change>,
    /// All channels together.
    pub total: Change,
}

impl Perturbation {
    pub(super) fn from_sums(sums: &[Vec<ChannelSums>], channels: usize) -> Perturbation {
        let mut per = vec![ChannelSums::default(); channels];
        for img in sums {
            for (acc, s) in per.iter_mut().zip(img) {
                acc.z2 += s.z2;
                acc.dz2 += s.dz2;
                acc.a2 += s.a2;
                acc.da2 += s.da2;
                acc.active += s.active;
                acc.count += s.count;
            }
        }
        let mut tot = ChannelSums::default();
        for s in &per {
            tot.z2 += s.z2;
            tot.dz2 += s.dz2;
            tot.a2 += s.a2;
            tot.da2 += s.da2;
            tot.active += s.active;
            tot.count += s.count;
        }
        let n = sums.len();
        Perturbation {
            filters: per.iter().map(|s| Change::from(s, n)).collect(),
            total: Change::from(&tot, n),
        }
    }
}
