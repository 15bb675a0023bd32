//! convlens: look inside trained CNNs through their convolution filters.
//!
//! The pipeline is **read → extract → measure → compare → show**:
//! [`read`] opens a checkpoint of any supported format, [`extract`] finds its convolution layers
//! and their depth, [`measure`] computes the per-layer filter-quality metrics of Gavrikov &
//! Keuper, [`depth`] defines the depth groups and their per-model aggregates, and [`quality`]
//! runs the whole chain for one model file. [`fingerprint`] judges from a checkpoint's filters
//! how likely it is to be adversarially trained.

pub mod compare;
pub mod db;
pub mod depth;
pub mod extract;
pub mod fingerprint;
pub mod measure;
pub mod numeric;
pub mod quality;
pub mod read;
pub mod report;
pub mod stem;
pub mod tables;

pub use convlens_core as core;
