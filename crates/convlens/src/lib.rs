//! convlens: look inside trained CNNs through their convolution filters.
//!
//! The pipeline is **read → extract → measure → compare → show**:
//! [`read`] opens a checkpoint of any supported format, [`extract`] finds its convolution layers
//! and their depth, [`measure`] computes the per-layer filter-quality metrics of Gavrikov &
//! Keuper, [`depth`] aggregates them by depth group.

pub mod measure;
