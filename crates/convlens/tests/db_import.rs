//! Importing the authors' layout (filters `.npy` + per-(model, depth) table) reproduces the
//! database built from the checkpoints: same basis, same shift.

mod common;

use common::*;
use convlens::compare::study::{basis, shift, Scope, ShiftOptions};
use convlens::db::build::{build, BuildOptions};
use convlens::db::import::import_npy;
use convlens::db::shard::{write_npy_f32, ShardReader};
use convlens::db::Db;

#[test]
fn import_reproduces_a_built_database() {
    let zoo = root().join("examples/demo-zoo");
    let tmp = std::env::temp_dir().join(format!("convlens-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = tmp.join("built");
    build(
        &zoo,
        &built,
        &BuildOptions {
            meta: Some(zoo.join("meta.csv")),
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .unwrap();
    let db = Db::open(&built).unwrap();
    // write the published layout: all filters in one array, one row per (model, depth)
    let mut all = Vec::new();
    let mut csv = String::from("model_id,model,conv_depth,conv_depth_norm,first_filter_id,last_filter_id,Robust,Network,Seed\n");
    for (mi, m) in db.models.iter().enumerate() {
        let base = all.len() / 9;
        let shard = m.kernel([3, 3]).unwrap();
        let mut r = ShardReader::open(&built.join(&shard.shard), shard.n_filters, 3, 3).unwrap();
        let mut buf = Vec::new();
        while r.next_chunk(4096, &mut buf).unwrap() > 0 {
            all.extend_from_slice(&buf);
        }
        // records per distinct conv depth (ONNX layers at one depth are merged, as the authors do)
        let mut depths: Vec<usize> = m.layers.iter().filter_map(|l| l.conv_depth).collect();
        depths.dedup();
        for d in depths {
            let ls: Vec<_> = m
                .layers
                .iter()
                .filter(|l| l.conv_depth == Some(d))
                .collect();
            let (a, b) = (ls[0].shard_start, ls.last().unwrap().shard_end);
            assert!(ls.windows(2).all(|w| w[0].shard_end == w[1].shard_start));
            csv.push_str(&format!(
                "{mi},{},{d},{},{},{},{},{},{}\n",
                m.name,
                ls[0].conv_depth_norm.unwrap(),
                base as u64 + a,
                base as u64 + b - 1,
                m.meta("Robust").unwrap(),
                m.meta("Network").unwrap(),
                m.meta("Seed").unwrap(),
            ));
        }
    }
    std::fs::create_dir_all(&tmp).unwrap();
    write_npy_f32(&tmp.join("filters.npy"), &[all.len() / 9, 3, 3], &all).unwrap();
    std::fs::write(tmp.join("filterinfo.csv"), csv).unwrap();
    let imported = tmp.join("imported");
    let n = import_npy(
        &tmp.join("filters.npy"),
        &tmp.join("filterinfo.csv"),
        &imported,
    )
    .unwrap();
    assert_eq!(n, 4);
    let idb = Db::open(&imported).unwrap();
    let scope = Scope::default();
    let (b1, b2) = (
        basis(&db, &scope, None).unwrap(),
        basis(&idb, &scope, None).unwrap(),
    );
    assert_eq!(b1.full.n_samples, b2.full.n_samples);
    for (x, y) in b1
        .full
        .explained_variance
        .iter()
        .zip(&b2.full.explained_variance)
    {
        assert!((x - y).abs() <= 1e-12 * x.abs());
    }
    let opts = ShiftOptions {
        splits: 2,
        bootstrap: 2,
        ..Default::default()
    };
    let (s1, s2) = (
        shift(&db, &scope, &opts).unwrap(),
        shift(&idb, &scope, &opts).unwrap(),
    );
    assert_eq!(s1.coef_range, s2.coef_range);
    for (a, b) in s1.comparisons[0].cells.iter().zip(&s2.comparisons[0].cells) {
        assert_eq!(a.n, b.n, "{}", a.bin);
        match (a.kl, b.kl) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * x, "{}: {x} vs {y}", a.bin),
            (x, y) => assert_eq!(x, y),
        }
    }
    // entropy of single-depth records equals the built per-layer entropy
    let m = &db.models[db.model("resnet20_normal_s1").unwrap()];
    let im = &idb.models[idb.model("resnet20_normal_s1").unwrap()];
    for (l, il) in m.layers.iter().zip(&im.layers) {
        assert!((l.variance_entropy - il.variance_entropy).abs() < 1e-12);
        assert_eq!(l.sparse_filters, il.sparse_filters);
    }
    // a bad table is refused with the file named
    std::fs::write(tmp.join("bad.csv"), "model,conv_depth\nx,0\n").unwrap();
    let e = import_npy(
        &tmp.join("filters.npy"),
        &tmp.join("bad.csv"),
        &tmp.join("x"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("bad.csv") && e.contains("conv_depth_norm"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
