//! Hand-derived cases of the per-layer metrics. Where an expected value is not obvious, it was
//! computed by the oracle (`reference.py` `layer_metrics`) on the same hand-made weights.

use convlens::measure::{
    entropy_base10, entropy_max_threshold, measure_layer, orthogonality, scale_filter, sparse_mask,
    tcq_sparse_mask, variance_spectrum, LayerShape,
};

fn shape(out: usize, inp: usize, groups: usize) -> LayerShape {
    LayerShape {
        out_channels: out,
        in_per_group: inp,
        kh: 3,
        kw: 3,
        groups,
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn orthogonality_of_identity_rows_is_one() {
    let n = 5;
    let mut rows = vec![0f32; n * n];
    for i in 0..n {
        rows[i * n + i] = 1.0;
    }
    assert_eq!(orthogonality(&rows, n, n), 1.0);
    // scaled identity (rows are normalised first)
    for i in 0..n {
        rows[i * n + i] = (i + 1) as f32 * 0.5;
    }
    assert_eq!(orthogonality(&rows, n, n), 1.0);
}

#[test]
fn orthogonality_of_two_equal_rows_is_zero() {
    let rows = [1.0f32, -2.0, 3.0, 1.0, -2.0, 3.0];
    assert!(close(orthogonality(&rows, 2, 3), 0.0, 1e-15));
    // opposite rows: |<a,-a>| = 1 as well
    let rows = [1.0f32, -2.0, 3.0, -1.0, 2.0, -3.0];
    assert!(close(orthogonality(&rows, 2, 3), 0.0, 1e-15));
}

#[test]
fn all_zero_layer_matches_the_oracle() {
    // oracle: ortho 0.8571428571428572 = 1 - 1/7, everything sparse, tcq entropy 0,
    // clean entropy over 0 filters = 0 and its norm -0.0, paper entropy null.
    let w = vec![0f32; 8 * 2 * 9];
    let m = measure_layer(&w, &shape(8, 2, 1));
    assert_eq!(m.n_filters, 16);
    assert!(close(m.orthogonality, 1.0 - 1.0 / 7.0, 1e-15));
    assert!(close(m.orthogonality, 0.8571428571428572, 1e-15));
    assert_eq!(m.tcq.orthogonality, m.orthogonality);
    assert_eq!(m.layer_norm, 0.0);
    assert_eq!((m.sparse_filters, m.n_nonsparse), (16, 0));
    assert_eq!(m.sparsity, 1.0);
    assert!(m.variance_entropy.is_nan());
    assert_eq!(m.tcq.sparsity, 1.0);
    assert_eq!(m.tcq.variance_entropy, 0.0);
    assert_eq!(m.tcq.variance_entropy_norm, 0.0);
    assert_eq!(m.tcq.variance_entropy_clean, 0.0);
    assert!(m.tcq.variance_entropy_clean_norm == 0.0);
    assert!(m.tcq.variance_entropy_clean_norm.is_sign_negative());
    assert_eq!((m.l1_norm, m.l2_norm, m.mean_filter_l2), (0.0, 0.0, 0.0));
    // 64 out-channels: 1 - 1/63
    let w = vec![0f32; 64 * 9];
    assert!(close(
        measure_layer(&w, &shape(64, 1, 1)).orthogonality,
        0.9841269841269842,
        1e-15
    ));
}

#[test]
fn sparsity_tie_is_sparse_for_the_paper_not_for_tcq() {
    // layer max 100: paper limit 100/100 = 1.0 (<=), tcq threshold float32(100*0.01) = 1.0 (<).
    // The filter whose max is exactly 1.0 is paper-sparse only. Oracle: 2 paper-sparse,
    // share 2/3; tcq sparsity 1/3.
    let mut w = vec![0f32; 3 * 9];
    w[0] = 100.0;
    w[9] = 1.0;
    w[18 + 4] = -0.5;
    let (norm, paper) = sparse_mask(&w, 9);
    assert_eq!(norm, 100.0);
    assert_eq!(paper, vec![false, true, true]);
    assert_eq!(tcq_sparse_mask(&w, 9), vec![false, false, true]);
    let m = measure_layer(&w, &shape(1, 3, 1));
    assert_eq!((m.sparse_filters, m.n_nonsparse), (2, 1));
    assert!(close(m.sparsity, 2.0 / 3.0, 1e-15));
    assert!(close(m.tcq.sparsity, 1.0 / 3.0, 1e-15));
    // one non-sparse filter: paper entropy undefined; one out-channel: orthogonality undefined
    assert!(m.variance_entropy.is_nan());
    assert!(m.orthogonality.is_nan());
}

#[test]
fn entropy_of_a_flat_spectrum() {
    assert!(close(entropy_base10(&[1.0, 1.0]), 2f64.log10(), 1e-16));
    assert!(close(entropy_base10(&[3.0; 9]), 9f64.log10(), 1e-15));
    assert_eq!(entropy_base10(&[7.0, 0.0, 0.0]), 0.0);
}

#[test]
fn entropy_max_threshold_values() {
    // oracle: 0.5515074123394546 (n=9), -0.16602524952983935 (1), -0.00886406416431934 (2)
    assert!(close(entropy_max_threshold(9), 0.5515074123394546, 1e-12));
    assert!(close(entropy_max_threshold(1), -0.16602524952983935, 1e-12));
    assert!(close(entropy_max_threshold(2), -0.00886406416431934, 1e-12));
    assert!(entropy_max_threshold(3) > 0.0);
    assert!(close(entropy_max_threshold(0), -0.31050834, 1e-15));
}

#[test]
fn one_filter_gives_nan() {
    let w: Vec<f32> = (1..=9).map(|x| x as f32).collect();
    let m = measure_layer(&w, &shape(1, 1, 1));
    // oracle: entropy, ortho and every tcq entropy null
    assert!(m.variance_entropy.is_nan());
    assert!(m.orthogonality.is_nan());
    assert!(m.tcq.variance_entropy.is_nan());
    assert!(m.tcq.variance_entropy_norm.is_nan());
    assert!(m.tcq.variance_entropy_clean.is_nan());
    assert!(m.tcq.variance_entropy_clean_norm.is_nan());
    assert_eq!(m.layer_norm, 9.0);
    assert_eq!(m.sparsity, 0.0);
}

/// 12 filters of 9 taps, value `((7i + 3j) mod 11) - 5`, with tap `zero_tap` set to 0.
fn hand_layer(zero_tap: usize) -> Vec<f32> {
    let mut w = Vec::new();
    for i in 0..12 {
        for j in 0..9 {
            w.push(if j == zero_tap {
                0.0
            } else {
                ((i * 7 + j * 3) % 11) as f32 - 5.0
            });
        }
    }
    w
}

#[test]
fn structurally_zero_tap_is_nan_for_tcq_only() {
    // Every filter has tap 0 == 0: the centred data has an all-zero column, a variance ratio is
    // exactly 0 and torchconvquality's entropy is 0 * log10(0) = NaN. The oracle agrees (null
    // for all four tcq entropies) and gives entropy 0.7045797914639682, ortho 0.6551755157669144.
    let w = hand_layer(0);
    let m = measure_layer(&w, &shape(4, 3, 1));
    assert!(m.tcq.variance_entropy.is_nan());
    assert!(m.tcq.variance_entropy_norm.is_nan());
    assert!(m.tcq.variance_entropy_clean.is_nan());
    assert!(m.tcq.variance_entropy_clean_norm.is_nan());
    assert!(close(m.variance_entropy, 0.7045797914639682, 1e-12));
    assert!(close(m.orthogonality, 0.6551755157669144, 1e-12));
    assert_eq!((m.layer_norm, m.sparse_filters), (5.0, 0));

    // Same data without a zero tap: finite (oracle values).
    let mut w = hand_layer(usize::MAX);
    let m = measure_layer(&w, &shape(4, 3, 1));
    assert!(close(m.tcq.variance_entropy, 0.7406247198972584, 1e-12));
    assert!(close(
        m.tcq.variance_entropy_norm,
        1.1486417124631578,
        1e-12
    ));
    assert_eq!(m.tcq.variance_entropy_clean, m.tcq.variance_entropy);
    assert!(close(m.variance_entropy, 0.7406247198972583, 1e-12));
    assert!(close(m.orthogonality, 0.6572926395101781, 1e-12));

    // A constant non-zero tap (every filter has 3.0 there) is structurally zero after centring
    // (oracle: tcq null, entropy 0.7144364108729846, ortho 0.621495836555036).
    for f in w.chunks_exact_mut(9) {
        f[8] = 3.0;
    }
    let m = measure_layer(&w, &shape(4, 3, 1));
    assert!(m.tcq.variance_entropy.is_nan());
    assert!(m.tcq.variance_entropy_clean_norm.is_nan());
    assert!(close(m.variance_entropy, 0.7144364108729846, 1e-12));
    assert!(close(m.orthogonality, 0.621495836555036, 1e-12));
}

#[test]
fn structurally_zero_middle_tap_is_nan_too() {
    // Deliberate deviation: for a zero *middle* tap the oracle's LAPACK SVD returns a ~1e-16
    // singular value instead of an exact 0 (here it reports a finite 0.7156464637445675), i.e.
    // its NaN depends on the tap position. convlens applies torchconvquality's 0 * log 0 rule
    // whatever the position.
    let w = hand_layer(4);
    let m = measure_layer(&w, &shape(4, 3, 1));
    assert!(m.tcq.variance_entropy.is_nan());
    // the paper entropy and orthogonality agree with the oracle
    assert!(close(m.variance_entropy, 0.7156464637445673, 1e-12));
    assert!(close(m.orthogonality, 0.6314576284264584, 1e-12));
}

#[test]
fn variance_spectrum_of_hand_made_rows() {
    // rows (0,0) (2,0) (1,3): centred (-1,-1) (1,-1) (0,2); covariance diag(1, 3)
    let v = variance_spectrum(&[0.0, 0.0, 2.0, 0.0, 1.0, 3.0], 2);
    assert!(close(v[0], 3.0, 1e-15) && close(v[1], 1.0, 1e-15), "{v:?}");
    // rank-deficient: 2 rows in 3-D give one positive value and zeros (never negative)
    let v = variance_spectrum(&[1.0, 2.0, 3.0, 3.0, 2.0, 1.0], 3);
    assert!(close(v[0], 4.0, 1e-14), "{v:?}");
    assert!(v[1..].iter().all(|&x| (0.0..1e-14).contains(&x)), "{v:?}");
}

#[test]
fn scaling_is_by_the_linf_norm() {
    let mut out = [0f64; 4];
    scale_filter(&[0.5, -2.0, 1.0, 0.0], &mut out);
    assert_eq!(out, [0.25, -1.0, 0.5, 0.0]);
    scale_filter(&[0.0; 4], &mut out);
    assert_eq!(out, [0.0; 4]);
}

#[test]
fn norms_of_a_hand_made_layer() {
    // two filters: (3, -4, 0...) and (0, ..., 12 at tap 8, 5 at tap 7)
    let mut w = vec![0f32; 18];
    w[0] = 3.0;
    w[1] = -4.0;
    w[16] = 5.0;
    w[17] = 12.0;
    let m = measure_layer(&w, &shape(2, 1, 1));
    assert_eq!(m.l1_norm, 24.0);
    assert_eq!(m.l2_norm, (9.0f64 + 16.0 + 25.0 + 144.0).sqrt());
    assert_eq!(m.mean_filter_l2, (5.0 + 13.0) / 2.0);
    assert_eq!(m.layer_norm, 12.0);
    // disjoint supports: orthogonal out-channels
    assert_eq!(m.orthogonality, 1.0);
}

#[test]
fn per_group_orthogonality() {
    // 4 out-channels in 2 groups, 1 input channel per group, 3x3.
    // group 0: two equal rows (0); group 1: two orthogonal rows (1) -> mean 0.5.
    let mut w = vec![0f32; 4 * 9];
    w[0] = 1.0;
    w[9] = 1.0;
    w[18 + 2] = 1.0;
    w[27 + 5] = -2.0;
    let m = measure_layer(&w, &shape(4, 1, 2));
    let g = m.orthogonality_per_group.expect("grouped conv");
    assert!(close(g, 0.5, 1e-15));
    // whole layer: only the pair (0, 1) has |<a,b>| = 1 -> 1 - 2/12
    assert!(close(m.orthogonality, 1.0 - 2.0 / 12.0, 1e-15));
    // depthwise (1 out-channel per group) and dense convs: None
    assert_eq!(
        measure_layer(&w, &shape(4, 1, 4)).orthogonality_per_group,
        None
    );
    assert_eq!(
        measure_layer(&w, &shape(4, 1, 1)).orthogonality_per_group,
        None
    );
}

#[test]
fn non_square_kernels_use_kh_times_kw_taps() {
    // 2x2 kernels, 2 out x 1 in: filters (1,0,0,0) and (0,0,0,1)
    let w = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let s = LayerShape {
        out_channels: 2,
        in_per_group: 1,
        kh: 2,
        kw: 2,
        groups: 1,
    };
    let m = measure_layer(&w, &s);
    assert_eq!(m.n_filters, 2);
    assert_eq!(m.orthogonality, 1.0);
    // covariance of 2 points: one direction only -> entropy 0
    assert!(close(m.variance_entropy, 0.0, 1e-12));
}

#[test]
fn nan_values_serialise_as_null() {
    let w: Vec<f32> = (1..=9).map(|x| x as f32).collect();
    let m = measure_layer(&w, &shape(1, 1, 1));
    let json = serde_json::to_value(&m).expect("serialise");
    assert!(json["variance_entropy"].is_null());
    assert!(json["tcq"]["variance_entropy"].is_null());
    assert_eq!(json["layer_norm"], 9.0);
    assert!(json["orthogonality_per_group"].is_null());
}

#[test]
fn kernels_longer_than_the_spectrum_cap_get_nan_entropies() {
    let taps = convlens::measure::MAX_SPECTRUM_TAPS + 1;
    let s = LayerShape {
        out_channels: 2,
        in_per_group: 1,
        kh: 1,
        kw: taps,
        groups: 1,
    };
    let w: Vec<f32> = (0..2 * taps).map(|i| (i % 7) as f32 - 3.0).collect();
    let m = measure_layer(&w, &s);
    assert!(m.variance_entropy.is_nan());
    assert!(m.tcq.variance_entropy.is_nan() && m.tcq.variance_entropy_clean_norm.is_nan());
    assert!(m.orthogonality.is_finite());
    assert_eq!(m.layer_norm, 3.0);
    assert!(variance_spectrum(&[0.0; 4], taps).is_empty());
}

#[test]
fn empty_layers_do_not_panic() {
    // no out-channels but an absurd input count: nothing to measure
    let s = LayerShape {
        out_channels: 0,
        in_per_group: usize::MAX,
        kh: 3,
        kw: 3,
        groups: 7,
    };
    let m = measure_layer(&[], &s);
    assert_eq!(m.n_filters, 0);
    assert!(m.sparsity.is_nan() && m.tcq.sparsity.is_nan() && m.mean_filter_l2.is_nan());
    assert!(m.orthogonality.is_nan());
    assert_eq!(m.orthogonality_per_group, None);
    assert_eq!(m.tcq.variance_entropy, 0.0);
    // zero-sized kernel
    let s = LayerShape {
        out_channels: 3,
        in_per_group: 2,
        kh: 0,
        kw: 3,
        groups: 1,
    };
    let m = measure_layer(&[], &s);
    assert_eq!((m.n_filters, m.sparse_filters), (6, 6));
    assert!(close(m.orthogonality, 0.5, 1e-15));
}
