//! First-layer (stem) perturbation analysis (placeholder, being written).
