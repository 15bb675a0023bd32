//! Per-model coefficient histograms (`compare::stream::ModelHists`) through a tiny database:
//! the histograms of several models merged (in any order) are those of one model holding all
//! their layers, the depth cells of a model partition its overall cell, and the streamed
//! basis statistics and coefficient range agree the same way.
//!
//! Each case writes 2–4 random safetensors models (1–3 convolutions of random shapes, with
//! zero and tiny filters, 3×3 or 5×5 kernels: the vector and the generic paths) plus their
//! "union" model into a temporary zoo and builds a database of it.

use super::{close, config, TempDir};
use convlens::compare::basis::Basis;
use convlens::compare::shift::merge;
use convlens::compare::stream::{coefficient_range, model_histograms, CELLS};
use convlens::db::build::{build, BuildOptions};
use convlens::db::Db;
use convlens::extract::KernelSelect;
use convlens::numeric::Bins;
use proptest::collection::vec;
use proptest::prelude::*;
use std::path::Path;

/// One convolution weight, OIHW.
#[derive(Debug, Clone)]
pub struct Conv {
    pub shape: [usize; 4],
    pub w: Vec<f32>,
}

/// A random convolution of `k × k` kernels: taps in (−1, 1) (some exactly 0) times a
/// per-layer magnitude, some filters zero or 1e-3 of the others (sparse).
pub fn conv(k: usize) -> impl Strategy<Value = Conv> {
    (2usize..=8, 1usize..=6, -3.0f32..3.0).prop_flat_map(move |(o, i, mag)| {
        let n = o * i;
        let filter = (
            prop_oneof![10 => Just(1.0f32), 1 => Just(0.0f32), 1 => Just(1e-3f32)],
            vec(prop_oneof![1 => Just(0.0f32), 8 => -1.0f32..1.0], k * k),
        )
            .prop_map(|(c, f)| f.into_iter().map(|x| x * c).collect::<Vec<f32>>());
        vec(filter, n).prop_map(move |fs| Conv {
            shape: [o, i, k, k],
            w: fs
                .concat()
                .into_iter()
                .map(|x| x * 10f32.powf(mag))
                .collect(),
        })
    })
}

/// Writes the layers as a safetensors file, in this order (`layer000.weight`, ...).
pub fn write_model(path: &Path, layers: &[&Conv]) {
    let bytes: Vec<Vec<u8>> = layers
        .iter()
        .map(|c| c.w.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = layers
        .iter()
        .zip(&bytes)
        .enumerate()
        .map(|(j, (c, b))| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, c.shape.to_vec(), b)
                    .unwrap();
            (format!("layer{j:03}.weight"), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(tensors, None).unwrap()).unwrap();
}

/// 2–4 models of 1–3 layers, all with `k × k` kernels, and the order in which their
/// histograms are merged.
fn models() -> impl Strategy<Value = (usize, Vec<Vec<Conv>>, Vec<usize>)> {
    prop_oneof![3 => Just(3usize), 1 => Just(5usize)].prop_flat_map(|k| {
        vec(vec(conv(k), 1..=3), 2..=4).prop_flat_map(move |ms| {
            let order = Just((0..ms.len()).collect::<Vec<usize>>()).prop_shuffle();
            (Just(k), Just(ms), order)
        })
    })
}

proptest! {
    // each case writes and builds a small database (about 25 ms): 32 cases
    #![proptest_config(config(32))]

    #[test]
    fn merged_model_histograms_are_the_histograms_of_the_union((k, ms, order) in models()) {
        let zoo = TempDir::new("hists-zoo");
        let out = TempDir::new("hists-db");
        for (m, layers) in ms.iter().enumerate() {
            write_model(&zoo.join(&format!("m{m}.safetensors")), &layers.iter().collect::<Vec<_>>());
        }
        let all: Vec<&Conv> = ms.iter().flatten().collect();
        write_model(&zoo.join("union.safetensors"), &all);
        let opts = BuildOptions { kernel: KernelSelect::Size(k, k), ..Default::default() };
        let r = build(zoo.path(), out.path(), &opts, &|_, _, _| {}).unwrap();
        prop_assert_eq!(r.models_in_db, ms.len() + 1);
        let db = Db::open(out.path()).unwrap();
        let parts: Vec<usize> = (0..ms.len()).map(|m| db.model(&format!("m{m}")).unwrap()).collect();
        let union = db.model("union").unwrap();
        let kernel = [k, k];

        // the basis statistics: per-model moments merged = the union's (to rounding)
        let mp = db.moments(&parts, kernel);
        let mu = db.moments(&[union], kernel);
        prop_assert_eq!(mp.n, mu.n);
        for (a, b) in mp.sum.iter().zip(&mu.sum).chain(mp.outer.iter().zip(&mu.outer)) {
            prop_assert!(close(*a, *b, 1e-12, 1e-12 * mp.n as f64), "{} vs {}", a, b);
        }
        // (rarely) too few non-sparse filters for a basis of k² components
        prop_assume!(Basis::fit(&mp).is_ok());
        let basis = Basis::fit(&mp).unwrap();
        // the same filters, the same projections: the same range, bit for bit
        let range = coefficient_range(&db, &parts, kernel, &basis).unwrap().unwrap();
        let range_u = coefficient_range(&db, &[union], kernel, &basis).unwrap().unwrap();
        prop_assert_eq!(range, range_u);
        let bins = Bins::new(range.0, range.1, 70);
        let fine = Bins::new(range.0, range.1, 2048);
        let mut models = parts.clone();
        models.push(union);
        let hists = model_histograms(&db, &models, kernel, &basis, &bins, Some(&fine)).unwrap();
        let merged = merge(&hists, &order);
        let u = &hists[ms.len()];
        let comps = basis.components.len();
        prop_assert_eq!(merged.n[0], u.n[0]);
        prop_assert_eq!(u.n[0], mu.n);
        for j in 0..comps {
            prop_assert_eq!(merged.counts(0, j), u.counts(0, j), "component {}", j);
            prop_assert_eq!(merged.fine(0, j), u.fine(0, j), "component {}", j);
            // every coefficient lies in the range: every filter is counted once per component
            prop_assert_eq!(u.counts(0, j).iter().sum::<u64>(), u.n[0]);
            prop_assert_eq!(u.fine(0, j).iter().map(|&c| u64::from(c)).sum::<u64>(), u.n[0]);
            let scale = (range.1 - range.0).abs().max(1.0) * u.n[0] as f64;
            prop_assert!(close(merged.sum[j], u.sum[j], 1e-12, 1e-12 * scale));
            prop_assert!(close(merged.sum_sq[j], u.sum_sq[j], 1e-12, 1e-12 * scale * scale));
        }
        // the depth cells (first layer, deciles) of every model partition its overall cell
        for h in &hists {
            prop_assert_eq!(h.n[1..].iter().sum::<u64>(), h.n[0]);
            for j in 0..comps {
                let mut by_cell = vec![0u64; bins.len()];
                for cell in 1..CELLS {
                    for (s, c) in by_cell.iter_mut().zip(h.counts(cell, j)) {
                        *s += c;
                    }
                }
                prop_assert_eq!(&by_cell[..], h.counts(0, j));
            }
        }
    }
}
