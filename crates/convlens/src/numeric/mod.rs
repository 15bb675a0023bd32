//! Statistics that several stages share: streamed second moments (the PCA basis input of
//! `measure`, `db` and `compare`), histograms on a fixed grid with numpy's rules, numpy's
//! summation order and a deterministic random number generator.
//!
//! This module sits below every pipeline stage: it imports none of them.

mod bins;
mod moments;
mod rng;
mod sum;

pub use bins::{Bins, EPS_F32};
pub use moments::Moments;
pub use rng::Rng;
pub use sum::np_sum;
