//! `box_stats` against numpy (values computed with numpy 2.4 `np.percentile`, linear method).

use convlens_show::box_stats;

#[test]
fn box_stats_match_numpy_percentile() {
    // np.percentile(f, [25, 50, 75]) of the finite values of this sample: 1.75, 2.75, 3.625;
    // fences 1.75 - 1.5 * 1.875 = -1.0625 and 3.625 + 2.8125 = 6.4375.
    let a = [
        1.0,
        2.0,
        2.5,
        3.0,
        3.5,
        4.0,
        100.0,
        -50.0,
        f64::NAN,
        7.25,
        0.1,
        2.2,
        3.3,
    ];
    let b = box_stats(&a);
    assert_eq!(b.n, 12);
    assert_eq!(b.q1, 1.75);
    assert_eq!(b.median, 2.75);
    assert_eq!(b.q3, 3.625);
    assert_eq!(b.lo_whisker, 0.1);
    assert_eq!(b.hi_whisker, 4.0);
    assert!((b.mean - 6.570833333333333).abs() < 1e-12);
    assert_eq!(b.outliers, vec![-50.0, 7.25, 100.0]);
}

#[test]
fn box_stats_interpolate_exactly_like_numpy() {
    // np.percentile([0.3, 0.1, 0.7, 0.2], [25, 50, 75]) = [0.17500000000000002, 0.25,
    // 0.39999999999999997]; mean 0.325.
    let b = box_stats(&[0.3, 0.1, 0.7, 0.2]);
    assert_eq!(b.q1, 0.17500000000000002);
    assert_eq!(b.median, 0.25);
    assert_eq!(b.q3, 0.39999999999999997);
    assert_eq!(b.mean, 0.325);
    assert_eq!((b.lo_whisker, b.hi_whisker), (0.1, 0.7));
    assert!(b.outliers.is_empty());
}

#[test]
fn box_stats_of_one_and_no_value() {
    let b = box_stats(&[5.0]);
    assert_eq!((b.q1, b.median, b.q3), (5.0, 5.0, 5.0));
    assert_eq!((b.lo_whisker, b.hi_whisker, b.mean), (5.0, 5.0, 5.0));
    let e = box_stats(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
    assert_eq!(e.n, 0);
    assert!(e.q1.is_nan() && e.median.is_nan() && e.mean.is_nan());
    assert!(e.outliers.is_empty());
    assert_eq!(box_stats(&[]).n, 0);
}
