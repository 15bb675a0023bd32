//! Every figure: SVG parses and renders (PNG size, ink, PDF with the embedded font), and the
//! drawn data is right (colours, positions, heights read back from the SVG).

mod common;

use common::*;
use convlens_show::color::{self, Rgb};
use convlens_show::*;

/// OIHW index.
fn idx(shape: [usize; 4], o: usize, i: usize, y: usize, x: usize) -> usize {
    ((o * shape[1] + i) * shape[2] + y) * shape[3] + x
}

fn hand_made_layer() -> (Vec<f32>, [usize; 4]) {
    let shape = [2, 3, 3, 3];
    let mut w = vec![0.25f32; 54];
    w[idx(shape, 0, 0, 0, 0)] = 2.0;
    w[idx(shape, 0, 0, 0, 1)] = -2.0;
    w[idx(shape, 0, 0, 1, 1)] = 0.0;
    w[idx(shape, 1, 2, 2, 2)] = 1.0;
    (w, shape)
}

#[test]
fn filter_grid_draws_every_cell_with_the_diverging_map() {
    let (w, shape) = hand_made_layer();
    let fig = filter_grid("conv1", &w, shape, 16, 16).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let cells = by_class(&doc, "cell");
    assert_eq!(cells.len(), 2 * 3, "out * in cells");
    let cell = |o: usize, i: usize| {
        *cells
            .iter()
            .find(|c| usize_attr(c, "data-out") == o && usize_attr(c, "data-in") == i)
            .unwrap()
    };
    for c in &cells {
        assert_eq!(rect_fills(c).len(), 9, "3x3 pixels per cell");
    }
    let f = rect_fills(&cell(0, 0));
    assert_eq!(f[0], "#67001f", "+max is the darkest red");
    assert_eq!(f[1], "#053061", "-max is the darkest blue");
    assert_eq!(f[4], "#ffffff", "0 is white");
    // Scaled to the layer's max |w| = 2: 0.25 -> t = 0.125, 1.0 -> t = 0.5.
    assert_eq!(f[2], color::diverging(0.125).hex());
    assert_eq!(rect_fills(&cell(1, 2))[8], color::diverging(0.5).hex());
    // Rows are input channels, columns output channels.
    let first = |o, i| {
        let c = cell(o, i);
        let r = c.children().find(|n| n.has_tag_name("rect")).unwrap();
        (num_attr(&r, "x"), num_attr(&r, "y"))
    };
    let (x00, y00) = first(0, 0);
    let (x10, y10) = first(1, 0);
    let (x01, y01) = first(0, 1);
    assert!(
        x10 > x00 && (y10 - y00).abs() < 1e-9,
        "next output channel to the right"
    );
    assert!(
        y01 > y00 && (x01 - x00).abs() < 1e-9,
        "next input channel below"
    );
    let t = texts(&doc);
    assert!(
        t.contains(&"\u{2212}2.0".to_string()) && t.contains(&"2.0".to_string()),
        "{t:?}"
    );
    assert!(t.contains(&"conv1".to_string()));
}

#[test]
fn filter_grid_shows_only_the_first_rows_and_columns() {
    let (w, shape) = hand_made_layer();
    let fig = filter_grid("", &w, shape, 2, 1).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let cells = by_class(&doc, "cell");
    let mut got: Vec<(usize, usize)> = cells
        .iter()
        .map(|c| (usize_attr(c, "data-out"), usize_attr(c, "data-in")))
        .collect();
    got.sort();
    assert_eq!(got, vec![(0, 0), (0, 1)]);
    assert!(texts(&doc)
        .iter()
        .any(|t| t.contains("of 3") && t.contains("of 2")));
}

#[test]
fn filter_grid_marks_nan_weights_as_missing() {
    let mut w = vec![0.5f32; 9];
    w[3] = f32::NAN;
    let fig = filter_grid("nan", &w, [1, 1, 3, 3], 4, 4).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let f = rect_fills(&by_class(&doc, "cell")[0]);
    assert_eq!(f[3], color::MISSING.hex());
    assert_eq!(f[0], "#67001f");
}

#[test]
fn rgb_filters_map_channels_to_colour() {
    // Filter 0: (R, G, B) = (+max, 0, -max); filter 1: (0, max/2, 0).
    let w = [2.0f32, 0.0, -2.0, 0.0, 1.0, 0.0];
    let fig = rgb_filters("stem", &w, [2, 3, 1, 1]).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let patches = by_class(&doc, "patch");
    assert_eq!(patches.len(), 2);
    // 0.5 + 0.5 * 1 = 1 -> 255; 0.5 -> 127.5 -> 128; 0 -> 0; 0.75 -> 191.25 -> 191.
    assert_eq!(rect_fills(&patches[0]), vec!["#ff8000"]);
    assert_eq!(rect_fills(&patches[1]), vec!["#80bf80"]);
}

#[test]
fn filter_strip_scales_each_filter_to_its_own_max() {
    let filters = vec![
        ("conv1".to_string(), vec![1.0f32, -0.5], 1, 2),
        ("layer1.conv".to_string(), vec![0.01f32, 0.0], 1, 2),
        ("layer2.conv".to_string(), vec![0.2f32; 9], 3, 3),
    ];
    let fig = filter_strip("strip", &filters).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let cells = by_class(&doc, "strip-cell");
    assert_eq!(cells.len(), 3);
    assert_eq!(cells[1].attribute("data-layer"), Some("layer1.conv"));
    assert_eq!(
        rect_fills(&cells[0]),
        vec!["#67001f".to_string(), color::diverging(-0.5).hex()]
    );
    assert_eq!(rect_fills(&cells[1]), vec!["#67001f", "#ffffff"]);
    assert_eq!(rect_fills(&cells[2]).len(), 9);
    for (d, c) in cells.iter().enumerate() {
        assert_eq!(usize_attr(c, "data-depth"), d);
        let label = c.children().find(|n| n.has_tag_name("text")).unwrap();
        assert_eq!(label.text(), Some(d.to_string().as_str()));
    }
}

#[test]
fn basis_images_print_ratios_in_percent() {
    let panels = vec![
        BasisPanel {
            name: "normal".into(),
            components: vec![vec![1.0, -1.0], vec![0.5, 0.25]],
            ratios: vec![0.6, 0.3],
            kh: 1,
            kw: 2,
        },
        BasisPanel {
            name: "robust".into(),
            components: vec![vec![0.0, 2.0]],
            ratios: vec![0.987],
            kh: 1,
            kw: 2,
        },
    ];
    let fig = basis_images(&panels).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let imgs = by_class(&doc, "basis");
    assert_eq!(imgs.len(), 3);
    assert_eq!(rect_fills(&imgs[0]), vec!["#67001f", "#053061"]);
    assert_eq!(
        rect_fills(&imgs[1]),
        vec!["#67001f".to_string(), color::diverging(0.5).hex()]
    );
    assert_eq!(rect_fills(&imgs[2]), vec!["#ffffff", "#67001f"]);
    let t = texts(&doc);
    for want in ["60.0%", "30.0%", "98.7%", "v0", "v1", "normal", "robust"] {
        assert!(t.contains(&want.to_string()), "{want} in {t:?}");
    }
}

#[test]
fn cumulative_variance_points_sit_at_the_cumulative_percentages() {
    let groups = vec![
        ("normal".to_string(), vec![0.5, 0.3, 0.2]),
        ("robust".to_string(), vec![0.7, 0.2, 0.1]),
    ];
    let fig = cumulative_variance(&groups).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let pts = by_class(&doc, "pt");
    assert_eq!(pts.len(), 6);
    let expected = [[50.0, 80.0, 100.0], [70.0, 90.0, 100.0]];
    let mut xs = [[0.0; 3]; 2];
    for p in &pts {
        let g = usize_attr(p, "data-group");
        let k = usize_attr(p, "data-k");
        let (x, y) = translate(p);
        let want = y_of(&doc, expected[g][k - 1]);
        assert!((y - want).abs() < 0.02, "group {g} k {k}: y {y} vs {want}");
        xs[g][k - 1] = x;
    }
    // Components are evenly spaced and shared between groups.
    assert!(((xs[0][1] - xs[0][0]) - (xs[0][2] - xs[0][1])).abs() < 0.02);
    assert_eq!(xs[0], xs[1]);
}

#[test]
fn ridge_plot_scales_each_column_to_its_max() {
    let groups = vec![
        (
            "a".to_string(),
            vec![vec![1.0, 1.0, 1.0], vec![0.0, 4.0, 0.0]],
        ),
        (
            "b".to_string(),
            vec![vec![2.0, 2.0, 2.0], vec![0.0, 2.0, 0.0]],
        ),
    ];
    let fig = ridge_plot((-1.0, 1.0), 2, &groups).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let ridges = by_class(&doc, "ridge");
    assert_eq!(ridges.len(), 4);
    let height = |g: usize, c: usize| {
        let r = ridges
            .iter()
            .find(|r| usize_attr(r, "data-group") == g && usize_attr(r, "data-comp") == c)
            .unwrap();
        let pts = path_points(r.attribute("d").unwrap());
        let base = pts[0].1;
        pts.iter().map(|p| base - p.1).fold(0.0, f64::max)
    };
    let full = height(1, 0);
    assert!(full > 10.0);
    assert!((height(0, 0) - full / 2.0).abs() < 0.02);
    assert!((height(0, 1) - full).abs() < 0.02);
    assert!((height(1, 1) - full / 2.0).abs() < 0.02);
    let t = texts(&doc);
    assert!(t.contains(&"c0".to_string()) && t.contains(&"c1".to_string()));
}

fn kl4() -> (Vec<String>, Vec<Vec<f64>>) {
    let labels: Vec<String> = ["d", "a & b", "c", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let kl = (0..4)
        .map(|i| {
            (0..4)
                .map(|j| {
                    if i == j {
                        0.0
                    } else {
                        0.01 * ((i + 1) * (j + 1)) as f64 + 0.001 * i as f64
                    }
                })
                .collect()
        })
        .collect();
    (labels, kl)
}

#[test]
fn kl_heatmap_colours_are_monotone_in_value() {
    let (labels, kl) = kl4();
    let fig = kl_heatmap(&labels, &kl, false).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let cells = by_class(&doc, "hm");
    assert_eq!(cells.len(), 16);
    let mut vl: Vec<(f64, f64)> = cells
        .iter()
        .map(|c| {
            let v = kl[usize_attr(c, "data-row")][usize_attr(c, "data-col")];
            let fill = Rgb::from_hex(c.attribute("fill").unwrap()).unwrap();
            (v, fill.luminance())
        })
        .collect();
    vl.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in vl.windows(2) {
        if w[1].0 > w[0].0 + 1e-12 {
            assert!(w[1].1 > w[0].1, "luminance rises with KL: {w:?}");
        } else {
            assert!((w[1].1 - w[0].1).abs() < 1e-12);
        }
    }
    // Zero is the darkest viridis colour, the maximum the brightest.
    let fill_of = |i: usize, j: usize| {
        cells
            .iter()
            .find(|c| usize_attr(c, "data-row") == i && usize_attr(c, "data-col") == j)
            .unwrap()
            .attribute("fill")
            .unwrap()
            .to_string()
    };
    assert_eq!(fill_of(0, 0), "#440154");
    assert_eq!(fill_of(3, 2), "#fde725", "kl[3][2] = 0.123 is the maximum");
    // Values are printed (n <= 12) with one shared number of decimals.
    let t = texts(&doc);
    assert!(
        t.contains(&"0.12".to_string()) && t.contains(&"0".to_string()),
        "{t:?}"
    );
}

#[test]
fn kl_heatmap_sorts_by_mean_divergence() {
    let (labels, kl) = kl4();
    let fig = kl_heatmap(&labels, &kl, true).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    // Row means grow with i for this matrix, so the order is unchanged; reverse it to test.
    let rev: Vec<Vec<f64>> = kl
        .iter()
        .rev()
        .map(|r| r.iter().rev().copied().collect())
        .collect();
    let fig2 = kl_heatmap(&labels, &rev, true).unwrap();
    let doc2 = parse(&fig2.svg);
    let row_y = |doc: &roxmltree::Document, i: usize| {
        num_attr(
            by_class(doc, "hm")
                .iter()
                .find(|c| usize_attr(c, "data-row") == i && usize_attr(c, "data-col") == i)
                .unwrap(),
            "y",
        )
    };
    for i in 0..3 {
        assert!(row_y(&doc, i) < row_y(&doc, i + 1));
        assert!(
            row_y(&doc2, i) > row_y(&doc2, i + 1),
            "reversed matrix sorts reversed"
        );
    }
}

#[test]
fn kl_heatmap_prints_values_only_up_to_twelve_groups() {
    let n = 13;
    let labels: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
    let kl: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| (i as f64 - j as f64).abs()).collect())
        .collect();
    let fig = kl_heatmap(&labels, &kl, false).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let heat = by_class(&doc, "heatmap");
    assert_eq!(
        heat[0]
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .count(),
        0
    );
}

#[test]
fn divergence_bars_are_proportional_to_the_values() {
    let depth: Vec<String> = ["first", "(0.0, 0.5]", "(0.5, 1.0]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let series = vec![
        (
            "normal vs robust".to_string(),
            vec![Some(0.1), Some(0.2), None],
        ),
        (
            "CIFAR vs ImageNet".to_string(),
            vec![Some(0.05), Some(0.4), Some(0.3)],
        ),
    ];
    let floor = [None, Some(0.02), Some(0.03)];
    let fig = divergence_by_depth(&depth, &series, Some(&floor)).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let bars = by_class(&doc, "bar");
    assert_eq!(bars.len(), 5);
    let y0 = y_of(&doc, 0.0);
    let mut ratio = None;
    for b in &bars {
        let s = usize_attr(b, "data-series");
        let d = usize_attr(b, "data-depth");
        let v = series[s].1[d].unwrap();
        let h = num_attr(b, "height");
        let y = num_attr(b, "y");
        assert!((y + h - y0).abs() < 0.02, "bar starts at 0");
        assert!((y - y_of(&doc, v)).abs() < 0.02, "bar ends at its value");
        let r = h / v;
        let r0 = *ratio.get_or_insert(r);
        assert!((r - r0).abs() / r0 < 0.002, "height/value {r} vs {r0}");
        assert_eq!(b.attribute("fill"), Some(color::category(s).hex().as_str()));
    }
    let na = by_class(&doc, "na");
    assert_eq!(na.len(), 1);
    assert_eq!(na[0].text(), Some("n/a"));
    assert_eq!(usize_attr(&na[0], "data-depth"), 2);
    let floors = by_class(&doc, "floor");
    assert_eq!(floors.len(), 2);
    for f in &floors {
        let d = usize_attr(f, "data-depth");
        assert!((num_attr(f, "y1") - y_of(&doc, floor[d].unwrap())).abs() < 0.02);
    }
}

#[test]
fn metric_boxes_draw_one_box_per_cell() {
    let metrics = vec!["sparsity".to_string(), "orthogonality".to_string()];
    let cols = vec!["CIFAR-10".to_string()];
    let depth = vec!["first".to_string(), "(0, 1]".to_string()];
    let groups = vec!["normal".to_string(), "robust".to_string()];
    let values = |m: usize, _c: usize, d: usize, g: usize| -> Vec<f64> {
        match (m, d, g) {
            (0, 0, 0) => (1..=9).map(f64::from).collect(), // IQR 3..7
            (0, 0, 1) => vec![0.0, 1.0, 2.0, 3.0, 4.0],    // IQR 1..3
            (0, 1, 1) => vec![],                           // n/a
            _ => vec![0.5, 0.6, f64::NAN, 0.7],
        }
    };
    let fig = metric_boxes(&metrics, &cols, &depth, &groups, &values).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let boxes = by_class(&doc, "box");
    assert_eq!(boxes.len(), 2 * 2 * 2);
    let find = |m: usize, d: usize, g: usize| {
        *boxes
            .iter()
            .find(|b| {
                usize_attr(b, "data-metric") == m
                    && usize_attr(b, "data-depth") == d
                    && usize_attr(b, "data-group") == g
            })
            .unwrap()
    };
    assert_eq!(usize_attr(&find(1, 0, 0), "data-n"), 3, "NaN ignored");
    let empty = find(0, 1, 1);
    assert_eq!(usize_attr(&empty, "data-n"), 0);
    assert_eq!(
        empty
            .children()
            .find(|n| n.has_tag_name("text"))
            .unwrap()
            .text(),
        Some("n/a")
    );
    let iqr_h = |b: roxmltree::Node| {
        let r = b.children().find(|n| has_class(n, "iqr")).unwrap();
        num_attr(&r, "height")
    };
    let a = iqr_h(find(0, 0, 0));
    let b = iqr_h(find(0, 0, 1));
    assert!((a - 2.0 * b).abs() < 0.03, "IQR 4 vs IQR 2: {a} vs {b}");
    let t = texts(&doc);
    for want in [
        "sparsity",
        "orthogonality",
        "CIFAR-10",
        "normal",
        "robust",
        "mean",
    ] {
        assert!(t.contains(&want.to_string()), "{want}");
    }
}

#[test]
fn density_2d_uses_a_log_colour_scale() {
    // counts[ix][iy]; positive counts 1, 10, 100, 1000 span three decades.
    let counts = vec![vec![1.0, 0.0], vec![10.0, 100.0], vec![0.0, 1000.0]];
    let fig = density_2d("c0 vs c1", &counts, (-1.0, 1.0), (-0.5, 0.5)).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let bins = by_class(&doc, "bins");
    let mut fills = rect_fills(&bins[0]);
    fills.sort();
    let mut want = vec![
        "#440154".to_string(),
        color::viridis(1.0 / 3.0).hex(),
        color::viridis(2.0 / 3.0).hex(),
        "#fde725".to_string(),
    ];
    want.sort();
    assert_eq!(fills, want, "empty bins are not drawn");
    let t = texts(&doc);
    for want in ["10\u{2070}", "10\u{b9}", "10\u{b2}", "10\u{b3}"] {
        assert!(t.contains(&want.to_string()), "{want} in {t:?}");
    }
    // The 1000-count bin (ix 2, iy 1) is right and above the 1-count bin (ix 0, iy 0).
    let pos = |fill: &str| {
        let r = bins[0]
            .children()
            .find(|n| n.attribute("fill") == Some(fill))
            .unwrap();
        (num_attr(&r, "x"), num_attr(&r, "y"))
    };
    let (x1, y1) = pos("#440154");
    let (x3, y3) = pos("#fde725");
    assert!(x3 > x1 && y3 < y1);
}

#[test]
fn density_2d_square_grid_merges_runs() {
    let counts = vec![vec![5.0, 5.0], vec![5.0, 50.0]];
    let fig = density_2d("", &counts, (0.0, 1.0), (0.0, 1.0)).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let fills = rect_fills(&by_class(&doc, "bins")[0]);
    // Top row (iy 1): 5 then 50; bottom row (iy 0): 5, 5 merged into one rectangle.
    assert_eq!(fills, vec!["#440154", "#fde725", "#440154"]);
}

#[test]
fn stem_activations_show_the_difference_on_the_diverging_map() {
    let col = StemColumn {
        label: "ch 3".into(),
        filter: vec![1.0],
        in_ch: 1,
        kh: 1,
        kw: 1,
        clean: Plane {
            data: vec![0.0; 4],
            h: 2,
            w: 2,
        },
        perturbed: Plane {
            data: vec![1.0, -1.0, 0.0, 0.0],
            h: 2,
            w: 2,
        },
    };
    let mut rgb = col.clone();
    rgb.label = "rgb".into();
    rgb.filter = vec![2.0, 0.0, -2.0];
    rgb.in_ch = 3;
    let fig = stem_activations("stem", &[col, rgb]).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let acts = by_class(&doc, "act");
    assert_eq!(acts.len(), 2 * 4);
    let get = |c: usize, r: usize| {
        rect_fills(
            acts.iter()
                .find(|a| usize_attr(a, "data-col") == c && usize_attr(a, "data-row") == r)
                .unwrap(),
        )
    };
    assert_eq!(get(0, 0), vec!["#67001f"]);
    assert_eq!(get(1, 0), vec!["#ff8000"], "RGB filter patch");
    let mid = color::viridis(0.5).hex();
    assert_eq!(
        get(0, 1),
        vec![mid.clone(), mid.clone()],
        "rows of zeros, merged"
    );
    assert_eq!(
        get(0, 2),
        vec!["#fde725".to_string(), "#440154".to_string(), mid]
    );
    assert_eq!(get(0, 3), vec!["#67001f", "#053061", "#ffffff"]);
}

#[test]
fn same_input_gives_the_same_bytes() {
    let (w, shape) = hand_made_layer();
    let a = filter_grid("x", &w, shape, 8, 8).unwrap();
    let b = filter_grid("x", &w, shape, 8, 8).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_pdf().unwrap(), b.to_pdf().unwrap());
    assert_eq!(a.to_png(1.5).unwrap(), b.to_png(1.5).unwrap());
    let (labels, kl) = kl4();
    assert_eq!(
        kl_heatmap(&labels, &kl, true).unwrap().svg,
        kl_heatmap(&labels, &kl, true).unwrap().svg
    );
    let g = vec![("a".to_string(), vec![0.4, 0.35, 0.25])];
    assert_eq!(
        cumulative_variance(&g).unwrap().svg,
        cumulative_variance(&g).unwrap().svg
    );
}

#[test]
fn save_all_writes_three_files() {
    let dir = std::env::temp_dir().join(format!("convlens-show-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fig = cumulative_variance(&[("a".to_string(), vec![0.5, 0.5])]).unwrap();
    let stem = dir.join("fig.v1");
    fig.save_all(&stem).unwrap();
    let svg = std::fs::read_to_string(dir.join("fig.v1.svg")).unwrap();
    assert_eq!(svg, fig.svg);
    assert!(std::fs::read(dir.join("fig.v1.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    assert!(std::fs::read(dir.join("fig.v1.pdf"))
        .unwrap()
        .starts_with(b"%PDF"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_embedded_font_is_dejavu_sans() {
    let f = font_data();
    assert!(f.len() > 100_000);
    assert_eq!(&f[..4], &[0, 1, 0, 0], "TrueType signature");
    assert_eq!(FONT_FAMILY, "DejaVu Sans");
}

#[test]
fn significance_marks_sit_above_their_bars_and_boxes() {
    let depth: Vec<String> = ["first", "(0.0, 0.5]", "(0.5, 1.0]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let series = vec![("a vs b".to_string(), vec![Some(0.1), Some(0.2), Some(0.3)])];
    let marks = vec![vec![false, true, false]];
    let fig = divergence_by_depth_marked(&depth, &series, None, Some(&marks)).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let sig = by_class(&doc, "sig");
    assert_eq!(sig.len(), 1);
    assert_eq!(usize_attr(&sig[0], "data-depth"), 1);
    let bar = by_class(&doc, "bar")
        .into_iter()
        .find(|b| usize_attr(b, "data-depth") == 1)
        .unwrap();
    assert!(
        num_attr(&sig[0], "y") <= num_attr(&bar, "y"),
        "mark above its bar"
    );
    // marks of the wrong shape are refused
    assert!(divergence_by_depth_marked(&depth, &series, None, Some(&[vec![true]])).is_err());
    // without marks: no asterisk, and the old function draws the same figure
    let plain = divergence_by_depth(&depth, &series, None).unwrap();
    assert_eq!(
        plain,
        divergence_by_depth_marked(&depth, &series, None, None).unwrap()
    );
    assert!(by_class(&parse(&plain.svg), "sig").is_empty());

    let metrics = vec!["sparsity".to_string(), "orthogonality".to_string()];
    let cols = vec!["all".to_string()];
    let groups = vec!["normal".to_string(), "robust".to_string()];
    let values = |_m: usize, _c: usize, d: usize, g: usize| -> Vec<f64> {
        vec![0.1 * d as f64 + g as f64, 0.2, 0.3]
    };
    let mark = |m: usize, _c: usize, d: usize| m == 1 && d == 2;
    let fig = metric_boxes_marked(&metrics, &cols, &depth, &groups, &values, Some(&mark)).unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let sig = by_class(&doc, "sig");
    assert_eq!(sig.len(), 1);
    assert_eq!(usize_attr(&sig[0], "data-metric"), 1);
    assert_eq!(usize_attr(&sig[0], "data-depth"), 2);
}

#[test]
fn reliability_diagram_places_points_at_predicted_and_observed() {
    let s = vec![
        ReliabilitySeries {
            name: "cross-validation".into(),
            points: vec![(0.05, 0.0, 10), (0.5, 0.4, 5), (0.95, 1.0, 20)],
        },
        ReliabilitySeries {
            name: "transfer".into(),
            points: vec![(0.9, 0.5, 12)],
        },
    ];
    let fig = reliability_diagram(&s, "predicted probability").unwrap();
    check_outputs(&fig);
    let doc = parse(&fig.svg);
    let pts = by_class(&doc, "pt");
    assert_eq!(pts.len(), 4);
    let counts: Vec<usize> = pts.iter().map(|p| usize_attr(p, "data-n")).collect();
    assert_eq!(counts, [10, 5, 20, 12]);
    // the diagonal runs from (0, 0) to (1, 1): points on it have equal scaled coordinates
    let d = &by_class(&doc, "diagonal")[0];
    let (x0, y0, x1, y1) = (
        num_attr(d, "x1"),
        num_attr(d, "y1"),
        num_attr(d, "x2"),
        num_attr(d, "y2"),
    );
    for (p, &(pp, oo, _)) in pts.iter().zip(s[0].points.iter().chain(&s[1].points)) {
        let (x, y) = translate(p);
        assert!((x - (x0 + pp * (x1 - x0))).abs() < 0.02);
        assert!((y - (y0 + oo * (y1 - y0))).abs() < 0.02);
    }
    // probabilities outside [0, 1] are refused
    let bad = vec![ReliabilitySeries {
        name: "x".into(),
        points: vec![(1.5, 0.0, 1)],
    }];
    assert!(reliability_diagram(&bad, "p").is_err());
    assert!(reliability_diagram(&[], "p").is_err());
}

/// svg2pdf writes a page's resource dictionaries (graphics states for the ridges' transparency,
/// fonts) in a randomly seeded hash-map order; the PDF of one figure must still be the same bytes
/// every time it is rendered (found by `scripts/outputs.sh`: two runs of `convlens report` gave
/// different `ridge.pdf` and `metric_boxes.pdf`).
#[test]
fn pdf_bytes_do_not_depend_on_hash_map_order() {
    let groups: Vec<(String, Vec<Vec<f64>>)> = (0..6)
        .map(|g| {
            let cols = (0..4)
                .map(|c| {
                    (0..32)
                        .map(|i| ((i * (g + 1) + c) % 7) as f64 + 0.5)
                        .collect()
                })
                .collect();
            (format!("group {g}"), cols)
        })
        .collect();
    let fig = ridge_plot((-1.0, 1.0), 4, &groups).unwrap();
    let first = fig.to_pdf().unwrap();
    let text = String::from_utf8_lossy(&first);
    let states = text.matches(" 0 R\n").count();
    assert!(
        text.contains("/ExtGState <<") && states > 8,
        "{states} resource entries"
    );
    for _ in 0..12 {
        assert!(
            fig.to_pdf().unwrap() == first,
            "PDF bytes differ between renders"
        );
    }
}
