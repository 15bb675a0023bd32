//! Inconsistent or extreme inputs give errors (or well-formed figures), never panics.

mod common;

use common::*;
use convlens_show::*;

fn is_invalid<T: std::fmt::Debug>(r: Result<T, ShowError>, needle: &str) {
    match r {
        Err(ShowError::InvalidInput(msg)) => {
            assert!(
                msg.contains(needle),
                "message {msg:?} should mention {needle:?}"
            )
        }
        other => panic!("expected InvalidInput({needle}), got {other:?}"),
    }
}

#[test]
fn filter_grid_rejects_inconsistent_shapes() {
    is_invalid(filter_grid("x", &[0.0; 7], [2, 1, 2, 2], 4, 4), "needs 8");
    is_invalid(filter_grid("x", &[0.0; 9], [2, 1, 2, 2], 4, 4), "got 9");
    is_invalid(
        filter_grid("x", &[], [usize::MAX, 2, 3, 3], 4, 4),
        "more elements",
    );
    is_invalid(filter_grid("x", &[], [0, 1, 3, 3], 4, 4), "no filters");
    is_invalid(filter_grid("x", &[0.0; 9], [1, 1, 9, 1000], 4, 4), "kernel");
    is_invalid(filter_grid("x", &[0.0; 9], [1, 1, 3, 3], 0, 4), "max_rows");
}

#[test]
fn filter_grid_caps_huge_grids() {
    // 300 x 300 filters of 1x1: only MAX_GRID_SIDE (256) per side are drawn.
    let w = vec![0.5f32; 300 * 300];
    let fig = filter_grid("big", &w, [300, 300, 1, 1], 10_000, 10_000).unwrap();
    let doc = parse(&fig.svg);
    assert_eq!(by_class(&doc, "cell").len(), 256 * 256);
}

#[test]
fn all_zero_and_all_nan_weights_render() {
    let fig = filter_grid("zeros", &[0.0; 18], [2, 1, 3, 3], 4, 4).unwrap();
    let doc = parse(&fig.svg);
    assert!(rect_fills(&by_class(&doc, "cell")[0])
        .iter()
        .all(|f| f == "#ffffff"));
    let nan = vec![f32::NAN; 18];
    let fig = filter_grid("nan", &nan, [2, 1, 3, 3], 4, 4).unwrap();
    fig.rasterize(1.0).unwrap();
    let fig = rgb_filters("inf", &[f32::INFINITY, 0.0, 1.0], [1, 3, 1, 1]).unwrap();
    fig.to_pdf().unwrap();
}

#[test]
fn rgb_filters_need_three_input_channels() {
    is_invalid(
        rgb_filters("x", &[0.0; 4], [1, 4, 1, 1]),
        "3 input channels",
    );
    is_invalid(rgb_filters("x", &[0.0; 3], [2, 3, 1, 1]), "needs 6");
    is_invalid(rgb_filters("x", &[], [0, 3, 1, 1]), "output channels");
}

#[test]
fn filter_strip_rejects_bad_filters() {
    is_invalid(filter_strip("x", &[]), "0 filters");
    is_invalid(
        filter_strip("x", &[("a".into(), vec![0.0; 8], 3, 3)]),
        "needs 9",
    );
    is_invalid(filter_strip("x", &[("a".into(), vec![], 0, 3)]), "kernel");
}

#[test]
fn basis_and_variance_reject_bad_panels() {
    is_invalid(basis_images(&[]), "0 panels");
    let p = BasisPanel {
        name: "p".into(),
        components: vec![vec![0.0; 8]],
        ratios: vec![1.0],
        kh: 3,
        kw: 3,
    };
    is_invalid(basis_images(&[p]), "has 8 values");
    is_invalid(cumulative_variance(&[]), "0 groups");
    is_invalid(cumulative_variance(&[("a".into(), vec![])]), "0 components");
    // NaN ratios leave gaps but render.
    let fig = cumulative_variance(&[("a".into(), vec![0.5, f64::NAN, 0.2])]).unwrap();
    fig.rasterize(1.0).unwrap();
}

#[test]
fn ridge_plot_rejects_bad_ranges_and_tolerates_bad_densities() {
    let g = vec![("a".to_string(), vec![vec![1.0, 2.0]])];
    is_invalid(ridge_plot((1.0, 1.0), 1, &g), "x range");
    is_invalid(ridge_plot((f64::NAN, 1.0), 1, &g), "x range");
    is_invalid(ridge_plot((0.0, 1.0), 0, &g), "0 components");
    is_invalid(ridge_plot((0.0, 1.0), 1, &[]), "0 groups");
    // Negative, NaN, too short, missing components and very long curves still render.
    let long: Vec<f64> = (0..100_000).map(|i| (i % 7) as f64).collect();
    let g = vec![
        (
            "neg".to_string(),
            vec![vec![-1.0, f64::NAN, 3.0], vec![1.0]],
        ),
        ("long".to_string(), vec![long]),
    ];
    let fig = ridge_plot((0.0, 1.0), 3, &g).unwrap();
    let doc = parse(&fig.svg);
    let long_path = by_class(&doc, "ridge")
        .into_iter()
        .find(|r| usize_attr(r, "data-group") == 1)
        .unwrap();
    assert!(path_points(long_path.attribute("d").unwrap()).len() <= 600);
    fig.rasterize(1.0).unwrap();
}

#[test]
fn kl_heatmap_rejects_non_square_matrices() {
    let l = vec!["a".to_string(), "b".to_string()];
    is_invalid(kl_heatmap(&l, &[vec![0.0, 1.0]], false), "matrix rows");
    is_invalid(
        kl_heatmap(&l, &[vec![0.0, 1.0], vec![1.0]], false),
        "row 1 has 1",
    );
    is_invalid(kl_heatmap(&[], &[], false), "0 groups");
    // NaN and infinite entries are drawn as missing.
    let fig = kl_heatmap(&l, &[vec![f64::NAN, f64::INFINITY], vec![1.0, 0.0]], true).unwrap();
    let doc = parse(&fig.svg);
    let missing = by_class(&doc, "hm")
        .iter()
        .filter(|c| c.attribute("fill") == Some(color::MISSING.hex().as_str()))
        .count();
    assert_eq!(missing, 2);
}

#[test]
fn divergence_rejects_length_mismatches() {
    let d = vec!["first".to_string(), "rest".to_string()];
    is_invalid(
        divergence_by_depth(&d, &[("s".into(), vec![Some(1.0)])], None),
        "1 values for 2",
    );
    is_invalid(
        divergence_by_depth(&d, &[("s".into(), vec![Some(1.0), None])], Some(&[None])),
        "noise floor",
    );
    is_invalid(divergence_by_depth(&[], &[], None), "0 depth groups");
    // All values missing, NaN or negative: still a figure.
    let fig = divergence_by_depth(
        &d,
        &[
            ("s".into(), vec![None, Some(f64::NAN)]),
            ("t".into(), vec![Some(-0.5), Some(0.25)]),
        ],
        Some(&[Some(f64::INFINITY), None]),
    )
    .unwrap();
    let doc = parse(&fig.svg);
    assert_eq!(by_class(&doc, "na").len(), 2);
    fig.rasterize(1.0).unwrap();
}

#[test]
fn metric_boxes_reject_empty_axes_and_tolerate_empty_samples() {
    let one = vec!["x".to_string()];
    let vals = |_: usize, _: usize, _: usize, _: usize| vec![f64::NAN, f64::INFINITY];
    is_invalid(metric_boxes(&[], &one, &one, &one, &vals), "0 metrics");
    is_invalid(metric_boxes(&one, &one, &[], &one, &vals), "0 depth groups");
    let fig = metric_boxes(&one, &one, &one, &one, &vals).unwrap();
    let doc = parse(&fig.svg);
    assert_eq!(usize_attr(&by_class(&doc, "box")[0], "data-n"), 0);
    fig.rasterize(1.0).unwrap();
}

#[test]
fn density_2d_rejects_ragged_counts_and_rebins_large_ones() {
    is_invalid(density_2d("x", &[], (0.0, 1.0), (0.0, 1.0)), "0x0");
    is_invalid(
        density_2d("x", &[vec![1.0, 2.0], vec![1.0]], (0.0, 1.0), (0.0, 1.0)),
        "x bin 1 has 1",
    );
    is_invalid(
        density_2d("x", &[vec![1.0]], (1.0, 0.0), (0.0, 1.0)),
        "x range",
    );
    is_invalid(
        density_2d("x", &vec![vec![1.0; 1]; 5000], (0.0, 1.0), (0.0, 1.0)),
        "5000x1",
    );
    // 1000 x 1000 bins are summed into at most 128 x 128 drawn bins.
    let counts: Vec<Vec<f64>> = (0..1000)
        .map(|i| (0..1000).map(|j| ((i * 7 + j) % 5) as f64).collect())
        .collect();
    let fig = density_2d("big", &counts, (0.0, 1.0), (0.0, 1.0)).unwrap();
    let doc = parse(&fig.svg);
    assert!(rect_fills(&by_class(&doc, "bins")[0]).len() <= 128 * 128);
    // No positive count at all: an empty but valid plot.
    let fig = density_2d("empty", &[vec![0.0, f64::NAN]], (0.0, 1.0), (0.0, 1.0)).unwrap();
    fig.rasterize(1.0).unwrap();
}

#[test]
fn stem_activations_reject_mismatched_planes() {
    let plane = |h: usize, w: usize, n: usize| Plane {
        data: vec![0.0; n],
        h,
        w,
    };
    let col = |clean: Plane, perturbed: Plane, filter: Vec<f32>| StemColumn {
        label: "c".into(),
        filter,
        in_ch: 1,
        kh: 3,
        kw: 3,
        clean,
        perturbed,
    };
    is_invalid(stem_activations("x", &[]), "0 columns");
    is_invalid(
        stem_activations("x", &[col(plane(2, 2, 3), plane(2, 2, 4), vec![0.0; 9])]),
        "needs 4 values, got 3",
    );
    is_invalid(
        stem_activations("x", &[col(plane(2, 2, 4), plane(2, 1, 2), vec![0.0; 9])]),
        "but perturbed is 2x1",
    );
    is_invalid(
        stem_activations("x", &[col(plane(2, 2, 4), plane(2, 2, 4), vec![0.0; 8])]),
        "needs 9 values, got 8",
    );
    is_invalid(
        stem_activations("x", &[col(plane(0, 2, 0), plane(0, 2, 0), vec![0.0; 9])]),
        "outside 1..",
    );
    // Large activations are block-averaged to at most 64 x 64 drawn pixels.
    let big = plane(200, 150, 200 * 150);
    let fig = stem_activations("x", &[col(big.clone(), big, vec![0.0; 9])]).unwrap();
    fig.rasterize(1.0).unwrap();
}

#[test]
fn rendering_rejects_bad_scales_and_bad_svg() {
    let fig = cumulative_variance(&[("a".into(), vec![1.0])]).unwrap();
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY, 1000.0] {
        assert!(
            matches!(fig.to_png(s), Err(ShowError::Png(_))),
            "scale {s} must be rejected"
        );
    }
    let broken = Figure {
        svg: "<svg xmlns=\"http://www.w3.org/2000/svg\"".into(),
        width_pt: 10.0,
        height_pt: 10.0,
    };
    assert!(matches!(broken.to_png(1.0), Err(ShowError::Svg(_))));
    assert!(matches!(broken.to_pdf(), Err(ShowError::Svg(_))));
    let err = broken
        .save_all(std::path::Path::new("/nonexistent-dir/x"))
        .unwrap_err();
    assert!(matches!(err, ShowError::Svg(_)));
    let err = fig
        .save_all(std::path::Path::new("/nonexistent-dir/x"))
        .unwrap_err();
    assert!(matches!(err, ShowError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent-dir/x.svg"));
}

#[test]
fn markup_and_control_characters_in_labels_are_escaped() {
    let labels = vec!["<b>&\"'".to_string(), "tab\tnul\u{0}bell\u{7}".to_string()];
    let fig = kl_heatmap(&labels, &[vec![0.0, 1.0], vec![1.0, 0.0]], false).unwrap();
    let doc = parse(&fig.svg);
    let t = texts(&doc);
    assert!(t.contains(&"<b>&\"'".to_string()), "{t:?}");
    fig.to_pdf().unwrap();
    let fig = filter_grid("</svg><script>", &[1.0], [1, 1, 1, 1], 1, 1).unwrap();
    assert!(texts(&parse(&fig.svg)).contains(&"</svg><script>".to_string()));
    fig.rasterize(1.0).unwrap();
}
