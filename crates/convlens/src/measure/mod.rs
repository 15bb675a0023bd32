//! Per-layer filter-quality metrics (placeholder, being written).
