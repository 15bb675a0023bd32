//! The report: every figure is made, its data are the analysis outputs, and the SVGs parse.

mod common;

use common::*;
use convlens::compare::study::{aggregate, shift, Scope, ShiftOptions};
use convlens::db::Db;
use convlens::report::figures::{box_values, divergence_bars};
use convlens::report::{report, ReportOptions};
use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convlens-report-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn attr<'a>(n: &roxmltree::Node<'a, 'a>, a: &str) -> Option<&'a str> {
    n.attribute(a)
}

#[test]
fn demo_zoo_report_has_every_figure_with_the_analysis_data() {
    let out = temp_dir("demo");
    let zoo = root().join("examples/demo-zoo");
    let r = report(
        &zoo,
        &out,
        &ReportOptions {
            bootstrap: 20,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let ids: Vec<&str> = r.figures.iter().map(|f| f.id.as_str()).collect();
    for want in [
        "filters_first_resnet20_normal_s0",
        "filters_last_resnet20_robust_s0",
        "rgb_resnet20_robust_s0",
        "strip_resnet20_normal_s0",
        "basis",
        "cumulative_variance",
        "ridge",
        "kl_heatmap",
        "divergence_by_depth",
        "metric_boxes",
        "density_c0_c1",
        "stem_resnet20_normal_s0",
        "stem_resnet20_robust_s0",
        "fingerprint_reliability",
    ] {
        assert!(ids.contains(&want), "missing figure {want}: {ids:?}");
    }
    // every figure exists as SVG (parses), PNG (decodes, non-blank) and PDF
    for id in &ids {
        let svg = std::fs::read_to_string(out.join(format!("figures/{id}.svg"))).unwrap();
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{id}.svg: {e}"));
        let png = std::fs::read(out.join(format!("figures/{id}.png"))).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let px = &buf[..info.buffer_size()];
        let ink = px
            .chunks(4)
            .filter(|p| p[0] < 200 || p[1] < 200 || p[2] < 200)
            .count();
        assert!(ink * 100 > px.len() / 4, "{id}.png is nearly blank");
        let pdf = std::fs::read(out.join(format!("figures/{id}.pdf"))).unwrap();
        assert!(pdf.starts_with(b"%PDF"));
    }
    let html = std::fs::read_to_string(&r.index).unwrap();
    assert_eq!(html.matches("<img ").count(), ids.len());
    assert!(html.contains("resnet20_robust_s0") && html.contains("82.57"));
    // the stem section compares robust and normal stems of all four models
    assert!(html.contains("do robust stems remove perturbations"));
    assert!(html.contains("robust (mean)") && html.contains("normal (mean)"));
    // statistics of every comparison and the fingerprint section
    assert!(html.contains("<th>permutation p</th>") && html.contains("<th>BH q</th>"));
    assert!(html.contains("<th>KL smoothed</th>"));
    assert!(html.contains("<h2>Robustness fingerprint</h2>"));
    let fm = convlens::fingerprint::FingerprintModel::bundled().unwrap();
    let lopo = format!(
        "leave-one-paper-out accuracy {:.3}",
        fm.validation.leave_one_paper_out.accuracy
    );
    assert!(html.contains(&lopo), "{lopo}");
    let fp_rows = html
        .split("<table class=\"fingerprint\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(fp_rows.matches("<tr><td>resnet20_").count(), 4);

    // the bar heights are the shift's KL values
    let db = Db::open(&out.join("db")).unwrap();
    let scope = Scope {
        pairs: Some(zoo.join("pairings.csv")),
        ..Default::default()
    };
    let s = shift(
        &db,
        &scope,
        &ShiftOptions {
            bootstrap: 20,
            ..Default::default()
        },
    )
    .unwrap();
    let (series, floor) = divergence_bars(&s);
    let kl: Vec<f64> = series[0].1.iter().map(|v| v.unwrap()).collect();
    assert_eq!(kl.len(), 11);
    assert_eq!(kl[0], s.comparisons[0].cells[1].kl.unwrap()); // `first`
    assert_eq!(floor[0], s.comparisons[0].cells[1].replicates.mean);
    let svg = std::fs::read_to_string(out.join("figures/divergence_by_depth.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let heights: Vec<f64> = doc
        .descendants()
        .filter(|n| attr(n, "class") == Some("bar"))
        .map(|n| attr(&n, "height").unwrap().parse().unwrap())
        .collect();
    assert_eq!(heights.len(), 11);
    // heights are written with 2 decimals (points): compare to within that rounding
    for i in 1..11 {
        let want = heights[0] * kl[i] / kl[0];
        assert!(
            (heights[i] - want).abs() < 0.02,
            "bar {i}: {} vs {want}",
            heights[i]
        );
    }

    // box statistics are those of the per-model aggregates
    let agg = aggregate(&db, &scope, Some("Robust")).unwrap();
    let v = box_values(
        &db,
        &agg,
        1,
        Some("Training-Dataset"),
        "cifar10",
        "first",
        "True",
    );
    let mut direct: Vec<f64> = agg
        .rows
        .iter()
        .filter(|r| r.depth_group == "first" && r.group.as_deref() == Some("True"))
        .map(|r| r.agg.variance_entropy.unwrap())
        .collect();
    direct.sort_by(f64::total_cmp);
    let mut got = v.clone();
    got.sort_by(f64::total_cmp);
    assert_eq!(got, direct);
    assert_eq!(got.len(), 2);
    let b = convlens_show::box_stats(&v);
    assert!((b.median - (direct[0] + direct[1]) / 2.0).abs() < 1e-15);

    // basis images show the basis of the analysis
    let svg = std::fs::read_to_string(out.join("figures/basis.svg")).unwrap();
    let pct = format!("{:.1}", 100.0 * s.basis.explained_variance_ratio[0]);
    assert!(svg.contains(&pct), "basis figure lacks {pct} %");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn report_of_a_database_is_deterministic() {
    let zoo = root().join("examples/demo-zoo");
    let a = temp_dir("a");
    let b = temp_dir("b");
    let opts = ReportOptions {
        bootstrap: 10,
        ..Default::default()
    };
    report(&zoo, &a, &opts).unwrap();
    // second report from the database the first one built
    report(&a.join("db"), &b, &opts).unwrap();
    for f in [
        "basis.svg",
        "ridge.svg",
        "divergence_by_depth.svg",
        "metric_boxes.png",
        "kl_heatmap.pdf",
    ] {
        let x = std::fs::read(a.join("figures").join(f)).unwrap();
        let y = std::fs::read(b.join("figures").join(f)).unwrap();
        assert_eq!(x, y, "{f} differs");
    }
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn single_checkpoint_and_selected_figures() {
    let out = temp_dir("single");
    let r = report(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.legacy.pt"),
        &out,
        &ReportOptions {
            figures: vec!["filters".into(), "strip".into(), "stem".into()],
            images: Some(fixture("stem/adv_examples.npz")),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let ids: Vec<&str> = r.figures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "filters_first_resnet20_robust_s0",
            "filters_last_resnet20_robust_s0",
            "strip_resnet20_robust_s0",
            "stem_resnet20_robust_s0"
        ]
    );
    let e = report(
        &fixture("zoo/cifar10-mini/resnet20_robust_s0.legacy.pt"),
        &out,
        &ReportOptions {
            figures: vec!["nope".into()],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown figure") && e.contains("ridge"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}
