//! Images and their normalisation: batches of images, the per-channel normalisation applied
//! before the stem (and how it is chosen), and image sets read from arrays or `.npz` files.

use super::{images_err, StemError, MAX_IMAGE_SIDE, MAX_IN_CHANNELS};
use convlens_core::{Blob, DType, RawTensor};
use serde::Serialize;
use std::path::Path;

/// A batch of images or network inputs, `n × c × h × w`, C-contiguous.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl<'a> Batch<'a> {
    /// A batch view; checks that `data` holds `n·c·h·w` values within the caps.
    pub fn new(data: &'a [f32], n: usize, c: usize, h: usize, w: usize) -> Result<Self, StemError> {
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(images_err(format!("empty batch {n}x{c}x{h}x{w}")));
        }
        if c > MAX_IN_CHANNELS || h > MAX_IMAGE_SIDE || w > MAX_IMAGE_SIDE {
            return Err(images_err(format!(
                "batch {n}x{c}x{h}x{w} exceeds the caps ({MAX_IN_CHANNELS} channels, {MAX_IMAGE_SIDE} pixels per side)"
            )));
        }
        let len = [n, c, h, w]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(data.len()) {
            return Err(images_err(format!(
                "batch {n}x{c}x{h}x{w} needs {} values, got {}",
                len.map_or("too many".to_string(), |l| l.to_string()),
                data.len()
            )));
        }
        Ok(Batch { data, n, c, h, w })
    }

    /// Image `k` (`c × h × w` values).
    pub fn image(&self, k: usize) -> &'a [f32] {
        let per = self.c * self.h * self.w;
        &self.data[k * per..(k + 1) * per]
    }
}

/// Input normalisation `(x − mean[c]) / std[c]`, applied to images in [0, 1] before the stem.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f64>,
    /// Standard deviation per channel.
    pub std: Vec<f64>,
    /// Where it comes from (options, meta table, image file, none).
    pub source: String,
}

impl Normalization {
    /// A normalisation; one value is broadcast to every channel later. Checks values.
    pub fn new(mean: Vec<f64>, std: Vec<f64>, source: &str) -> Result<Self, StemError> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(StemError::Options(format!(
                "mean has {} values and std {} (need the same number, one per channel)",
                mean.len(),
                std.len()
            )));
        }
        if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(StemError::Options(format!(
                "mean {mean:?} / std {std:?}: means must be finite and stds positive"
            )));
        }
        Ok(Normalization {
            mean,
            std,
            source: source.to_string(),
        })
    }

    /// No normalisation (`mean 0, std 1`) for `c` channels.
    pub fn none(c: usize) -> Self {
        Normalization {
            mean: vec![0.0; c.max(1)],
            std: vec![1.0; c.max(1)],
            source: "none (images used as they are)".to_string(),
        }
    }

    /// Broadcasts a single value to `c` channels; errors when the count does not fit.
    pub(super) fn check(&self, c: usize) -> Result<(), StemError> {
        if self.mean.len() != self.std.len()
            || self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(images_err(format!(
                "normalisation mean {:?} / std {:?} is not usable",
                self.mean, self.std
            )));
        }
        if self.mean.len() == c || self.mean.len() == 1 {
            Ok(())
        } else {
            Err(images_err(format!(
                "normalisation has {} values but the images have {c} channels",
                self.mean.len()
            )))
        }
    }

    fn at(&self, c: usize) -> (f64, f64) {
        let i = if self.mean.len() == 1 { 0 } else { c };
        (self.mean[i], self.std[i])
    }

    /// Normalises one image (`c × h × w`), channels given by position.
    pub(super) fn apply(&self, img: &[f32]) -> Vec<f64> {
        self.apply_f64(img, &[])
    }

    /// Normalises `img + delta` (delta empty = 0).
    pub(super) fn apply_f64(&self, img: &[f32], delta: &[f64]) -> Vec<f64> {
        let c = if self.mean.len() == 1 {
            1
        } else {
            self.mean.len()
        };
        let hw = img.len() / c;
        img.iter()
            .enumerate()
            .map(|(i, &v)| {
                let (m, s) = self.at(if c == 1 { 0 } else { i / hw });
                let d = delta.get(i).copied().unwrap_or(0.0);
                (f64::from(v) + d - m) / s
            })
            .collect()
    }

    /// Normalised copy of a batch (network inputs for
    /// [`StemModel::forward`](super::StemModel::forward)).
    pub fn apply_batch(&self, b: &Batch<'_>) -> Result<Vec<f32>, StemError> {
        self.check(b.c)?;
        Ok((0..b.n)
            .flat_map(|k| self.apply(b.image(k)).into_iter().map(|v| v as f32))
            .collect())
    }

    /// The standard deviation of channel `c`.
    pub(super) fn std_of(&self, c: usize) -> f64 {
        self.at(c).1
    }
}

/// Clean images in [0, 1] and named perturbed versions of them (e.g. `adv_examples.npz`).
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Clean images, `n × c × h × w`.
    pub clean: Vec<f32>,
    /// Perturbed versions (same shape), by name.
    pub perturbed: Vec<(String, Vec<f32>)>,
    /// Normalisation stored with the images (`mean`, `std` arrays of an npz).
    pub mean: Option<Vec<f64>>,
    /// See `mean`.
    pub std: Option<Vec<f64>>,
    /// Where the images come from.
    pub source: String,
}

/// An array as images: `N×C×H×W`, `C×H×W` (one image) or `H×W` (one grey image); integer
/// arrays are divided by 255. Returns the values and `[n, c, h, w]`.
pub fn image_array(t: &RawTensor, what: &str) -> Result<(Vec<f32>, [usize; 4]), StemError> {
    let dims = match *t.shape() {
        [n, c, h, w] => [n, c, h, w],
        [c, h, w] => [1, c, h, w],
        [h, w] => [1, 1, h, w],
        ref s => {
            return Err(images_err(format!(
                "{what} has shape {s:?}; expected N×C×H×W, C×H×W or H×W"
            )))
        }
    };
    let mut v = t.to_f32();
    match t.dtype() {
        DType::U8 => v.iter_mut().for_each(|x| *x /= 255.0),
        d if d.is_float() => {}
        d => {
            return Err(images_err(format!(
                "{what} has type {}; expected floats in [0, 1] or uint8",
                d.name()
            )))
        }
    }
    Batch::new(&v, dims[0], dims[1], dims[2], dims[3])
        .map_err(|e| images_err(format!("{what}: {e}")))?;
    Ok((v, dims))
}

fn check_unit_range(v: &[f32], what: &str) -> Result<(), StemError> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &x in v {
        if !x.is_finite() {
            return Err(images_err(format!("{what} holds NaN or infinite values")));
        }
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo < -1e-6 || hi > 1.0 + 1e-6 {
        return Err(images_err(format!(
            "{what} holds values in [{lo}, {hi}]; images must be in [0, 1] before normalisation"
        )));
    }
    Ok(())
}

impl ImageSet {
    /// Images from arrays; checks shapes and the [0, 1] range.
    pub fn from_arrays(
        clean: Vec<f32>,
        dims: [usize; 4],
        perturbed: Vec<(String, Vec<f32>)>,
        source: &str,
    ) -> Result<ImageSet, StemError> {
        let [n, c, h, w] = dims;
        Batch::new(&clean, n, c, h, w)?;
        check_unit_range(&clean, "clean images")?;
        for (k, p) in &perturbed {
            if p.len() != clean.len() {
                return Err(images_err(format!(
                    "perturbed images {k:?} hold {} values, the clean ones {}",
                    p.len(),
                    clean.len()
                )));
            }
            check_unit_range(p, &format!("perturbed images {k:?}"))?;
        }
        Ok(ImageSet {
            n,
            c,
            h,
            w,
            clean,
            perturbed,
            mean: None,
            std: None,
            source: source.to_string(),
        })
    }

    /// Images from the bytes of an `.npz`: `x` (clean, N×C×H×W in [0, 1]), every other array of
    /// the same shape as a perturbed version named by its key, and `mean` / `std` when present.
    pub fn from_npz(data: Blob, source: &str) -> Result<ImageSet, StemError> {
        let ck = convlens_numpy::read_npz(data)
            .map_err(|e| images_err(format!("{source}: not a readable .npz: {e}")))?;
        let x = ck
            .tensor("x")
            .ok_or_else(|| images_err(format!("{source} has no array `x` (the clean images)")))?;
        let (clean, dims) = image_array(x, "array `x`")?;
        let mut perturbed = Vec::new();
        for t in &ck.tensors {
            if t.name == "x" || t.tensor.numel() != clean.len() || t.tensor.shape() != x.shape() {
                continue;
            }
            let (v, _) = image_array(&t.tensor, &format!("array `{}`", t.name))?;
            perturbed.push((t.name.clone(), v));
        }
        let mut set = Self::from_arrays(clean, dims, perturbed, source)?;
        let stat = |k: &str| -> Option<Vec<f64>> {
            ck.tensor(k)
                .filter(|t| t.dtype().is_float() && t.shape().len() == 1)
                .map(|t| t.to_f64())
        };
        set.mean = stat("mean");
        set.std = stat("std");
        Ok(set)
    }

    /// Reads an `.npz` file (see [`ImageSet::from_npz`]).
    pub fn load_npz(path: &Path) -> Result<ImageSet, StemError> {
        let bytes = std::fs::read(path).map_err(|source| StemError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_npz(Blob::from_vec(bytes), &path.display().to_string())
    }

    /// The clean images.
    pub fn clean_batch(&self) -> Batch<'_> {
        Batch {
            data: &self.clean,
            n: self.n,
            c: self.c,
            h: self.h,
            w: self.w,
        }
    }

    /// The perturbed images called `key`.
    pub fn perturbed_batch(&self, key: &str) -> Option<Batch<'_>> {
        self.perturbed
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| Batch {
                data: v,
                n: self.n,
                c: self.c,
                h: self.h,
                w: self.w,
            })
    }

    /// Names of the perturbed versions.
    pub fn keys(&self) -> Vec<&str> {
        self.perturbed.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Picks the normalisation: the options', else the entry's (meta table), else the image
/// file's, else none.
pub fn choose_normalization(
    opts: Option<&(Vec<f64>, Vec<f64>)>,
    entry: Option<&(Vec<f64>, Vec<f64>)>,
    images: &ImageSet,
) -> Result<Normalization, StemError> {
    if let Some((m, s)) = opts {
        return Normalization::new(m.clone(), s.clone(), "options");
    }
    if let Some((m, s)) = entry {
        return Normalization::new(m.clone(), s.clone(), "meta table");
    }
    if let (Some(m), Some(s)) = (&images.mean, &images.std) {
        return Normalization::new(
            m.clone(),
            s.clone(),
            &format!("{} (mean, std)", images.source),
        );
    }
    Ok(Normalization::none(images.c))
}
