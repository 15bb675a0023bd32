//! `db import-h5` on the authors' layout (`fixtures/filterdb/`, made by `make_h5_fixture.py`
//! from `reference.py --dump-h5`): the same database as `db import-npy` of the same filters —
//! byte-identical shards, identical layer table, model tables equal but for the source file and
//! format — from a chunked+deflate float32 file and from a contiguous float64 one.

mod common;

use common::*;
use convlens::db::import::{import_h5, import_npy};
use std::path::Path;

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("convlens-import-h5-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `filterinfo.csv` with the meta columns joined in, the layout `import-npy` reads.
fn info_with_meta(dir: &Path) -> std::path::PathBuf {
    let info = std::fs::read_to_string(fixture("filterdb/filterinfo.csv")).unwrap();
    let meta = std::fs::read_to_string(fixture("filterdb/meta.csv")).unwrap();
    let mut lines = meta.lines();
    let meta_head = lines.next().unwrap().split_once(',').unwrap().1.to_string();
    let rows: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(',').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut out = String::new();
    for (i, l) in info.lines().enumerate() {
        if i == 0 {
            out.push_str(&format!("{l},{meta_head}\n"));
        } else {
            let model = l.split(',').next().unwrap();
            let m = &rows.iter().find(|r| r.0 == model).unwrap().1;
            out.push_str(&format!("{l},{m}\n"));
        }
    }
    let p = dir.join("filterinfo_meta.csv");
    std::fs::write(&p, out).unwrap();
    p
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// models.csv without the columns naming the source file and format (no quoted commas here).
fn models_table(db: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(db.join("models.csv")).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let keep: Vec<usize> = (0..rows[0].len())
        .filter(|&i| !matches!(rows[0][i], "file" | "format"))
        .collect();
    assert!(keep.len() + 2 == rows[0].len(), "{:?}", rows[0]);
    rows.iter()
        .map(|r| keep.iter().map(|&i| r[i].to_string()).collect())
        .collect()
}

#[test]
fn import_h5_equals_import_npy() {
    let dir = tmp("same");
    let npy_db = dir.join("npy");
    let n = import_npy(
        &fixture("filterdb/filters.npy"),
        &info_with_meta(&dir),
        &npy_db,
    )
    .unwrap();
    assert_eq!(n, 2);
    for h5 in ["filterdb/dataset.h5", "filterdb/dataset_v3.h5"] {
        let h5_db = dir.join(h5.replace('/', "_"));
        let n = import_h5(
            &fixture(h5),
            &fixture("filterdb/filterinfo.csv"),
            Some(&fixture("filterdb/meta.csv")),
            &h5_db,
        )
        .unwrap();
        assert_eq!(n, 2);
        let shards = files(&npy_db.join("filters/3x3"));
        assert_eq!(shards, files(&h5_db.join("filters/3x3")));
        assert_eq!(shards.len(), 2);
        for s in &shards {
            let a = std::fs::read(npy_db.join("filters/3x3").join(s)).unwrap();
            let b = std::fs::read(h5_db.join("filters/3x3").join(s)).unwrap();
            assert!(a.len() > 10_000, "{s}: {} bytes", a.len());
            assert!(a == b, "{h5}: shard {s} differs");
        }
        assert_eq!(
            std::fs::read_to_string(npy_db.join("layers.csv")).unwrap(),
            std::fs::read_to_string(h5_db.join("layers.csv")).unwrap(),
            "{h5}: layer table"
        );
        assert_eq!(
            models_table(&npy_db),
            models_table(&h5_db),
            "{h5}: model table"
        );
        let db = convlens::db::Db::open(&h5_db).unwrap();
        let m = db
            .models
            .iter()
            .find(|m| m.name == "resnet20_robust_s0")
            .unwrap();
        assert_eq!(m.meta("Robust"), Some("True"));
        assert_eq!(m.format, "filter-db-h5");
        assert_eq!(m.layers.len(), 5);
        assert_eq!(m.kernel([3, 3]).unwrap().n_filters, 1072);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_h5_and_bad_tables_give_clear_errors() {
    let dir = tmp("bad");
    for name in [
        "truncated.h5",
        "cyclic_btree.h5",
        "heap_out_of_range.h5",
        "huge_dims.h5",
    ] {
        let p = fixture(&format!("hostile/hdf5/{name}"));
        let e = import_h5(
            &p,
            &fixture("filterdb/filterinfo.csv"),
            None,
            &dir.join(name),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(name), "{e}");
    }
    // a record beyond the filters
    let info = dir.join("info.csv");
    std::fs::write(
        &info,
        "model,conv_depth,conv_depth_norm,first_filter_id,last_filter_id\nm,0,0.0,2000,2144\n",
    )
    .unwrap();
    let e = import_h5(&fixture("filterdb/dataset.h5"), &info, None, &dir.join("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the 2144 filters"), "{e}");
    // a model missing from the meta table
    let meta = dir.join("meta.csv");
    std::fs::write(&meta, "model,Robust\nother,True\n").unwrap();
    let e = import_h5(
        &fixture("filterdb/dataset.h5"),
        &fixture("filterdb/filterinfo.csv"),
        Some(&meta),
        &dir.join("y"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no row in the meta table"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
