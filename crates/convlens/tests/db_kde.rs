//! `--density kde`: the binned Gaussian KDE (Silverman bandwidth) agrees with an exact KDE of
//! the coefficients evaluated at the bin centres.

mod common;

use common::*;
use convlens::compare::shift::Density;
use convlens::compare::study::{shift, Scope, ShiftOptions};
use convlens::db::build::{build, BuildOptions};
use convlens::db::select::Condition;
use convlens::db::Db;
use convlens::extract::extract;
use convlens::measure::{scale_filter, sparse_mask};

#[test]
fn kde_matches_an_exact_kernel_density() {
    let zoo = fixture("zoo/cifar10-mini");
    let out = std::env::temp_dir().join(format!("convlens-kde-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        formats: vec!["safetensors".into()],
        ..Default::default()
    };
    build(&zoo, &out, &opts, &|_, _, _| {}).unwrap();
    let db = Db::open(&out).unwrap();
    let scope = Scope {
        conditions: vec![Condition {
            column: "Network".into(),
            value: "resnet20".into(),
        }],
        ..Default::default()
    };
    let r = shift(
        &db,
        &scope,
        &ShiftOptions {
            density: Density::Kde,
            splits: 2,
            bootstrap: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let cell = &r.comparisons[0].cells[0];
    assert!(cell.kl.unwrap() > 0.0 && cell.kl.unwrap().is_finite());
    let (_, kde) = r
        .distributions
        .iter()
        .find(|(k, _)| k == "True|overall")
        .unwrap();
    // exact KDE of c0 of the robust models' non-sparse filters, straight from the files
    let mp = r.basis.mean_projection();
    let mut c0 = Vec::new();
    for f in [
        "resnet20_robust_s0.safetensors",
        "resnet20_robust_s1.safetensors",
    ] {
        let ckpt = convlens::read::read(&zoo.join(f)).unwrap();
        for l in extract(&ckpt)
            .layers
            .iter()
            .filter(|l| l.kh == 3 && l.kw == 3)
        {
            let w = l.filters();
            let (_, mask) = sparse_mask(&w, 9);
            let (mut x, mut c) = ([0.0; 9], [0.0; 9]);
            for (filt, sparse) in w.chunks_exact(9).zip(mask) {
                if !sparse {
                    scale_filter(filt, &mut x);
                    r.basis.transform_into(&x, &mp, &mut c);
                    c0.push(c[0]);
                }
            }
        }
    }
    let n = c0.len() as f64;
    assert_eq!(c0.len() as u64, cell.n[1]);
    let mean = c0.iter().sum::<f64>() / n;
    let var = c0.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    let bw = var.sqrt() * (n * 3.0 / 4.0).powf(-0.2);
    let (lo, hi) = (r.coef_range[0], r.coef_range[1]);
    let width = (hi - lo) / 70.0;
    let mut exact: Vec<f64> = (0..70)
        .map(|i| {
            let x = lo + (i as f64 + 0.5) * width;
            c0.iter()
                .map(|&v| (-0.5 * ((x - v) / bw).powi(2)).exp())
                .sum::<f64>()
        })
        .collect();
    let s: f64 = exact.iter().sum();
    exact.iter_mut().for_each(|v| *v /= s);
    let got = &kde[0];
    assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    for (i, (a, b)) in got.iter().zip(&exact).enumerate() {
        // binning the samples onto a 2048-point grid moves each by < half a grid step
        assert!(
            (a - b).abs() <= 2e-3 * b.max(1e-3),
            "bin {i}: kde {a} vs exact {b}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
