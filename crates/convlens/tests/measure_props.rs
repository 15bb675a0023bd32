//! Invariants of the per-layer metrics on pseudo-random layers (hand-rolled, no proptest):
//! out-channel permutations, per-filter / per-row scaling, thread-count independence.

use convlens::measure::{measure_layer, orthogonality, LayerMetrics, LayerShape};

/// Small deterministic generator (PCG-style LCG), values in [-0.5, 0.5).
struct Lcg(u64);

impl Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
    fn unit(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u32() as usize) % n
    }
}

/// Layers of different shapes; a few filters are shrunk so that some are sparse.
fn layers() -> Vec<(LayerShape, Vec<f32>)> {
    let shapes = [
        (16, 3, 3, 3),
        (32, 16, 3, 3),
        (24, 8, 5, 5),
        (70, 80, 3, 3),
        (12, 4, 1, 3),
    ];
    let mut rng = Lcg(42);
    shapes
        .iter()
        .map(|&(o, i, kh, kw)| {
            let k = kh * kw;
            let mut w: Vec<f32> = (0..o * i * k).map(|_| rng.unit()).collect();
            for f in w.chunks_exact_mut(k) {
                if rng.below(10) == 0 {
                    f.iter_mut().for_each(|x| *x *= 1e-3);
                }
            }
            let s = LayerShape {
                out_channels: o,
                in_per_group: i,
                kh,
                kw,
                groups: 1,
            };
            (s, w)
        })
        .collect()
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-300)
}

fn assert_metrics_close(a: &LayerMetrics, b: &LayerMetrics, tol: f64, what: &str) {
    assert_eq!(a.n_filters, b.n_filters, "{what}");
    assert_eq!(a.sparse_filters, b.sparse_filters, "{what}");
    assert_eq!(a.n_nonsparse, b.n_nonsparse, "{what}");
    assert_eq!(a.sparsity, b.sparsity, "{what}");
    assert_eq!(a.tcq.sparsity, b.tcq.sparsity, "{what}");
    for (name, x, y) in [
        ("entropy", a.variance_entropy, b.variance_entropy),
        ("ortho", a.orthogonality, b.orthogonality),
        ("tcq.ve", a.tcq.variance_entropy, b.tcq.variance_entropy),
        (
            "tcq.ven",
            a.tcq.variance_entropy_norm,
            b.tcq.variance_entropy_norm,
        ),
        (
            "tcq.vc",
            a.tcq.variance_entropy_clean,
            b.tcq.variance_entropy_clean,
        ),
        (
            "tcq.vcn",
            a.tcq.variance_entropy_clean_norm,
            b.tcq.variance_entropy_clean_norm,
        ),
    ] {
        assert!(rel_close(x, y, tol), "{what} {name}: {x} vs {y}");
    }
}

/// Reorders the out-channels of an OIHW weight.
fn permute_out(w: &[f32], s: &LayerShape, perm: &[usize]) -> Vec<f32> {
    let block = s.in_per_group * s.kh * s.kw;
    perm.iter()
        .flat_map(|&o| w[o * block..(o + 1) * block].iter().copied())
        .collect()
}

#[test]
fn metrics_are_invariant_to_permuting_out_channels() {
    let mut rng = Lcg(7);
    for (s, w) in layers() {
        let base = measure_layer(&w, &s);
        assert!(
            base.sparse_filters > 0,
            "test layers contain sparse filters"
        );
        for _ in 0..3 {
            let mut perm: Vec<usize> = (0..s.out_channels).collect();
            for i in (1..perm.len()).rev() {
                perm.swap(i, rng.below(i + 1));
            }
            let m = measure_layer(&permute_out(&w, &s, &perm), &s);
            assert_eq!(m.layer_norm, base.layer_norm);
            assert!(rel_close(m.l1_norm, base.l1_norm, 1e-12));
            assert_metrics_close(&m, &base, 1e-12, &format!("{s:?} permuted"));
        }
    }
}

#[test]
fn entropy_is_invariant_to_positive_per_filter_scaling() {
    let mut rng = Lcg(9);
    for (s, w) in layers() {
        let base = measure_layer(&w, &s);
        let k = s.kh * s.kw;
        // Powers of two are exact in f32: the l-inf scaled filters are bit-identical.
        let mut w2 = w.clone();
        for f in w2.chunks_exact_mut(k) {
            let c = [0.25f32, 0.5, 1.0, 2.0][rng.below(4)];
            f.iter_mut().for_each(|x| *x *= c);
        }
        let m = measure_layer(&w2, &s);
        assert_eq!(m.n_nonsparse, base.n_nonsparse, "{s:?}");
        assert_eq!(
            m.variance_entropy.to_bits(),
            base.variance_entropy.to_bits(),
            "{s:?}"
        );
        // Arbitrary factors in [0.7, 1.4): f32 rounding of the products only.
        let mut w3 = w.clone();
        for f in w3.chunks_exact_mut(k) {
            let c = 0.7 + 0.7 * (rng.unit() + 0.5);
            f.iter_mut().for_each(|x| *x *= c);
        }
        let m = measure_layer(&w3, &s);
        assert_eq!(m.n_nonsparse, base.n_nonsparse, "{s:?}");
        assert!(
            rel_close(m.variance_entropy, base.variance_entropy, 1e-6),
            "{s:?}: {} vs {}",
            m.variance_entropy,
            base.variance_entropy
        );
    }
}

#[test]
fn orthogonality_is_invariant_to_per_row_scaling() {
    let mut rng = Lcg(11);
    for (s, w) in layers() {
        let len = s.in_per_group * s.kh * s.kw;
        let base = orthogonality(&w, s.out_channels, len);
        let mut w2 = w.clone();
        let mut w3 = w.clone();
        for (r2, r3) in w2.chunks_exact_mut(len).zip(w3.chunks_exact_mut(len)) {
            let c = [0.125f32, 1.0, 4.0, 64.0][rng.below(4)];
            r2.iter_mut().for_each(|x| *x *= c);
            let c = 0.1 + 10.0 * (rng.unit() + 0.5);
            r3.iter_mut().for_each(|x| *x *= -c);
        }
        // power-of-two factors: normalised rows are bit-identical
        assert_eq!(
            orthogonality(&w2, s.out_channels, len).to_bits(),
            base.to_bits()
        );
        // arbitrary (and negative) factors: f32 rounding only
        let o3 = orthogonality(&w3, s.out_channels, len);
        assert!(rel_close(o3, base, 1e-6), "{s:?}: {o3} vs {base}");
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // 96 x 80 x 3 x 3: 7680 filters (more than one parallel chunk), 96 rows of 720.
    let mut rng = Lcg(3);
    let s = LayerShape {
        out_channels: 96,
        in_per_group: 80,
        kh: 3,
        kw: 3,
        groups: 4,
    };
    let w: Vec<f32> = (0..96 * 80 * 9).map(|_| rng.unit()).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| measure_layer(&w, &s))
    };
    let one = run(1);
    let json1 = serde_json::to_string(&one).expect("serialise");
    for threads in [2, 3, 4] {
        let m = run(threads);
        // bit-identical: compare every float through its bits
        let bits = |m: &LayerMetrics| {
            [
                m.layer_norm,
                m.sparsity,
                m.variance_entropy,
                m.orthogonality,
                m.orthogonality_per_group.unwrap_or(f64::NAN),
                m.l1_norm,
                m.l2_norm,
                m.mean_filter_l2,
                m.tcq.sparsity,
                m.tcq.variance_entropy,
                m.tcq.variance_entropy_norm,
                m.tcq.variance_entropy_clean,
                m.tcq.variance_entropy_clean_norm,
            ]
            .map(f64::to_bits)
        };
        assert_eq!(bits(&m), bits(&one), "{threads} threads");
        assert_eq!(serde_json::to_string(&m).expect("serialise"), json1);
    }
}
