//! Stage 4 — compare: PCA basis of filters across models, coefficient distributions and the
//! symmetric-KL distribution shift between groups, with the statistics that tell it from seed
//! noise.

pub mod basis;
pub mod density2d;
pub mod divergence;
pub mod shift;
pub mod stats;
pub mod stream;
pub mod study;
