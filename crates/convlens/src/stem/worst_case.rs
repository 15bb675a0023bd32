//! The worst case for the stem alone: the options of the projected-gradient search, its result,
//! and the search itself.

use super::forward::{channel_sums, ChannelSums, Perturbation};
use super::{Batch, Normalization, StemError, StemModel, MAX_STEPS};
use rayon::prelude::*;
use serde::Serialize;

/// Options of the worst-case search ([`StemModel::worst_case_gain`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PgdOptions {
    /// L∞ radius in image units ([0, 1] scale), e.g. 8/255.
    pub eps: f64,
    /// Gradient steps.
    pub steps: usize,
    /// Step size; `None` = ε / 4.
    pub step_size: Option<f64>,
    /// Seed of the random start.
    pub seed: u64,
}

impl Default for PgdOptions {
    fn default() -> Self {
        PgdOptions {
            eps: 8.0 / 255.0,
            steps: 40,
            step_size: None,
            seed: 0,
        }
    }
}

impl PgdOptions {
    fn step_size(&self) -> f64 {
        self.step_size.unwrap_or(self.eps / 4.0)
    }

    fn check(&self) -> Result<(), StemError> {
        if !(self.eps.is_finite() && (0.0..=1.0).contains(&self.eps)) {
            return Err(StemError::Options(format!(
                "eps {} is outside [0, 1]",
                self.eps
            )));
        }
        if self.steps > MAX_STEPS {
            return Err(StemError::Options(format!(
                "{} steps is more than {MAX_STEPS}",
                self.steps
            )));
        }
        let s = self.step_size();
        if !(s.is_finite() && s >= 0.0) {
            return Err(StemError::Options(format!("step size {s} is not valid")));
        }
        Ok(())
    }
}

/// The worst-case perturbation of the stem alone and its effect.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorstCase {
    /// L∞ radius.
    pub eps: f64,
    /// Steps.
    pub steps: usize,
    /// Step size used.
    pub step_size: f64,
    /// Seed of the random start.
    pub seed: u64,
    /// The stem gain: post-ReLU activation change ‖Δ post‖ / ‖post‖ under the worst δ found.
    pub gain: Option<f64>,
    /// Activation change under that δ.
    pub perturbation: Perturbation,
    /// The δ found, `n × c × h × w` (image units).
    #[serde(skip)]
    pub delta: Vec<f32>,
}

impl StemModel {
    /// The worst case for the stem alone: the perturbation δ with ‖δ‖∞ ≤ ε (and `x + δ` in
    /// [0, 1]) that maximises `Σ_images ‖relu(conv(x + δ)) − relu(conv(x))‖²`, found by
    /// projected gradient ascent with sign steps, separately for each image.
    ///
    /// Start: δ uniform in [−ε, ε] from a SplitMix64 generator seeded with `seed` and the
    /// image index (the gradient vanishes at δ = 0), projected; then `steps` steps of
    /// `step_size · sign(∇)`, each followed by the projection. The best δ seen (start
    /// included) is kept per image. Deterministic for a given seed, whatever the thread count;
    /// ε = 0 gives δ = 0 and a gain of 0. The objective is convex in the pre-activation, so the
    /// ascent ends in a local maximum: the gain is a lower bound of the true worst case.
    pub fn worst_case_gain(
        &self,
        clean: &Batch<'_>,
        norm: &Normalization,
        pgd: &PgdOptions,
    ) -> Result<WorstCase, StemError> {
        pgd.check()?;
        let g = self.check_batch(clean)?;
        norm.check(clean.c)?;
        let step = pgd.step_size();
        let per = self.info.out_channels * g.ho * g.wo;
        let results: Vec<(Vec<f32>, Vec<ChannelSums>)> = (0..clean.n)
            .into_par_iter()
            .map(|k| {
                let x = clean.image(k);
                let xn = norm.apply(x);
                let mut z = vec![0.0; per];
                self.conv_image(&g, &xn, &mut z);
                let mut rng = crate::numeric::Rng::new(
                    pgd.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let mut delta: Vec<f64> = x
                    .iter()
                    .map(|&xv| {
                        let d = (rng.next_f64() * 2.0 - 1.0) * pgd.eps;
                        project(f64::from(xv), d, pgd.eps)
                    })
                    .collect();
                let mut zp = vec![0.0; per];
                let mut gz = vec![0.0; per];
                let mut gx = vec![0.0; x.len()];
                let mut best = (-1.0f64, delta.clone());
                for t in 0..=pgd.steps {
                    let xpn = norm.apply_f64(x, &delta);
                    self.conv_image(&g, &xpn, &mut zp);
                    let mut loss = 0.0;
                    for ((gzv, &zv), &zpv) in gz.iter_mut().zip(&z).zip(&zp) {
                        let r = zpv.max(0.0) - zv.max(0.0);
                        loss += r * r;
                        *gzv = if zpv > 0.0 { 2.0 * r } else { 0.0 };
                    }
                    if loss > best.0 {
                        best = (loss, delta.clone());
                    }
                    if t == pgd.steps {
                        break;
                    }
                    self.conv_transpose_image(&g, &gz, &mut gx);
                    let hw = g.h * g.w;
                    for (idx, d) in delta.iter_mut().enumerate() {
                        let grad = gx[idx] / norm.std_of(idx / hw);
                        let s = if grad > 0.0 {
                            1.0
                        } else if grad < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                        *d = project(f64::from(x[idx]), *d + step * s, pgd.eps);
                    }
                }
                let delta = best.1;
                let xpn = norm.apply_f64(x, &delta);
                self.conv_image(&g, &xpn, &mut zp);
                let sums = channel_sums(&z, &zp, self.info.out_channels);
                (delta.into_iter().map(|d| d as f32).collect(), sums)
            })
            .collect();
        let (deltas, sums): (Vec<Vec<f32>>, Vec<Vec<ChannelSums>>) = results.into_iter().unzip();
        let p = Perturbation::from_sums(&sums, self.info.out_channels);
        Ok(WorstCase {
            eps: pgd.eps,
            steps: pgd.steps,
            step_size: step,
            seed: pgd.seed,
            gain: p.total.post_change,
            perturbation: p,
            delta: deltas.concat(),
        })
    }
}

/// `x + d` kept in [0, 1] and `d` in [−ε, ε]: the projected perturbation.
fn project(x: f64, d: f64, eps: f64) -> f64 {
    let d = d.clamp(-eps, eps);
    (x + d).clamp(0.0, 1.0) - x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_keeps_the_box() {
        assert!((project(0.5, 0.2, 0.1) - 0.1).abs() < 1e-12);
        assert!((project(0.95, 0.1, 0.1) - 0.05).abs() < 1e-12);
        assert_eq!(project(0.0, -0.1, 0.1), 0.0);
    }
}
