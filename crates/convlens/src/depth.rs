//! Depth groups: the first convolution layer on its own, then deciles of the normalised depth.
//!
//! Deciles follow `pd.cut(conv_depth_norm, np.arange(0, 1.1, 0.1))` as in the authors'
//! notebooks: right-closed intervals `(a, b]` whose edges are `i · 0.1` in f64 (so the third edge
//! is 0.30000000000000004), applied to the layers with `conv_depth > 0`.

use serde::Serialize;

/// A depth group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepthBin {
    /// The layers with `conv_depth == 0`.
    First,
    /// Decile `i` (0..10): `conv_depth_norm` in `(i/10, (i+1)/10]`.
    Decile(u8),
}

/// All depth groups in display order: first, then the ten deciles.
pub const ALL_BINS: [DepthBin; 11] = [
    DepthBin::First,
    DepthBin::Decile(0),
    DepthBin::Decile(1),
    DepthBin::Decile(2),
    DepthBin::Decile(3),
    DepthBin::Decile(4),
    DepthBin::Decile(5),
    DepthBin::Decile(6),
    DepthBin::Decile(7),
    DepthBin::Decile(8),
    DepthBin::Decile(9),
];

fn edge(i: u8) -> f64 {
    // np.arange(0, 1.1, 0.1)[i] == i * 0.1 in float64
    i as f64 * 0.1
}

impl DepthBin {
    /// The group of a layer, `None` when `conv_depth_norm` lies outside `(0, 1]`.
    pub fn of(conv_depth: usize, conv_depth_norm: f64) -> Option<DepthBin> {
        if conv_depth == 0 {
            return Some(DepthBin::First);
        }
        (0..10u8)
            .find(|&i| edge(i) < conv_depth_norm && conv_depth_norm <= edge(i + 1))
            .map(DepthBin::Decile)
    }

    /// The label used in every output: `first` or pandas' interval label such as `(0.2, 0.3]`.
    pub fn label(self) -> String {
        match self {
            DepthBin::First => "first".to_string(),
            DepthBin::Decile(i) => format!("({:.1}, {:.1}]", edge(i), edge(i + 1)),
        }
    }

    /// Position in [`ALL_BINS`].
    pub fn index(self) -> usize {
        match self {
            DepthBin::First => 0,
            DepthBin::Decile(i) => 1 + i as usize,
        }
    }

    /// Parses a label produced by [`DepthBin::label`].
    pub fn from_label(s: &str) -> Option<DepthBin> {
        ALL_BINS.into_iter().find(|b| b.label() == s)
    }
}

impl Serialize for DepthBin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

/// Per-model aggregate of layer metrics over one depth group, weighted as the notebooks do:
/// sparsity = Σ sparse / Σ filters, entropy weighted by non-sparse filters, orthogonality
/// weighted by output channels.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DepthAggregate {
    /// Number of layers in the group.
    pub layers: usize,
    /// Filters in the group.
    pub filters: usize,
    /// Sparse filters in the group.
    pub sparse_filters: usize,
    /// Non-sparse filters in the group.
    pub nonsparse_filters: usize,
    /// Σ sparse / Σ filters.
    pub sparsity: f64,
    /// Entropy weighted by non-sparse filter count (`None` when the group has none).
    pub variance_entropy: Option<f64>,
    /// Orthogonality weighted by output channels.
    pub orthogonality: f64,
}

/// Accumulates [`DepthAggregate`]s.
#[derive(Debug, Clone, Default)]
pub struct AggregateAcc {
    layers: usize,
    filters: usize,
    sparse: usize,
    nonsparse: usize,
    entropy_sum: f64,
    ortho_sum: f64,
    out_channels: usize,
}

impl AggregateAcc {
    /// Adds one layer.
    pub fn add(
        &mut self,
        filters: usize,
        sparse: usize,
        nonsparse: usize,
        entropy: f64,
        ortho: f64,
        out_channels: usize,
    ) {
        self.layers += 1;
        self.filters += filters;
        self.sparse += sparse;
        self.nonsparse += nonsparse;
        self.entropy_sum += entropy * nonsparse as f64;
        self.ortho_sum += ortho * out_channels as f64;
        self.out_channels += out_channels;
    }

    /// The weighted means.
    pub fn finish(&self) -> DepthAggregate {
        DepthAggregate {
            layers: self.layers,
            filters: self.filters,
            sparse_filters: self.sparse,
            nonsparse_filters: self.nonsparse,
            sparsity: self.sparse as f64 / self.filters as f64,
            variance_entropy: (self.nonsparse > 0)
                .then(|| self.entropy_sum / self.nonsparse as f64),
            orthogonality: self.ortho_sum / self.out_channels as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_are_right_closed_with_float_edges() {
        assert_eq!(DepthBin::of(0, 0.0), Some(DepthBin::First));
        assert_eq!(DepthBin::of(1, 0.1), Some(DepthBin::Decile(0)));
        assert_eq!(DepthBin::of(1, 0.1000001), Some(DepthBin::Decile(1)));
        // 3/10 = 0.3 <= 0.30000000000000004: third decile (0.2, 0.3]
        assert_eq!(DepthBin::of(3, 3.0 / 10.0), Some(DepthBin::Decile(2)));
        assert_eq!(DepthBin::of(9, 1.0), Some(DepthBin::Decile(9)));
        assert_eq!(DepthBin::of(2, 1.5), None);
        assert_eq!(DepthBin::Decile(2).label(), "(0.2, 0.3]");
        assert_eq!(
            DepthBin::from_label("(0.9, 1.0]"),
            Some(DepthBin::Decile(9))
        );
    }

    #[test]
    fn aggregate_weights_like_the_notebooks() {
        let mut a = AggregateAcc::default();
        a.add(10, 1, 9, 0.5, 0.8, 4);
        a.add(30, 3, 27, 0.9, 0.6, 12);
        let r = a.finish();
        assert_eq!(r.sparsity, 4.0 / 40.0);
        assert!((r.variance_entropy.unwrap() - (0.5 * 9.0 + 0.9 * 27.0) / 36.0).abs() < 1e-15);
        assert!((r.orthogonality - (0.8 * 4.0 + 0.6 * 12.0) / 16.0).abs() < 1e-15);
    }
}
