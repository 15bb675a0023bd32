//! The CNN-Filter-DB-style fixtures of `fixtures/filterdb/` (written by `make_h5_fixture.py`
//! from `reference.py --dump-h5`) and hostile HDF5 files.

use convlens_core::Blob;
use convlens_hdf5::{FilterDataset, H5ErrorKind, MAX_WINDOW_FILTERS};
use convlens_testdata::fixture;

fn npy_filters() -> Vec<f32> {
    let b = std::fs::read(fixture("filterdb/filters.npy")).unwrap();
    let t = convlens_numpy::parse_npy(Blob::from_vec(b)).unwrap();
    assert_eq!(t.shape(), &[2144, 3, 3]);
    t.to_f32()
}

#[test]
fn chunked_deflate_and_contiguous_f64_read_the_same_filters() {
    let want = npy_filters();
    for f in ["filterdb/dataset.h5", "filterdb/dataset_v3.h5"] {
        let ds = FilterDataset::open(&fixture(f), &["filters", "filter"]).unwrap();
        assert_eq!(ds.name(), "filters");
        assert_eq!(ds.len(), 2144);
        let all = ds.read(0, 2144).unwrap();
        assert_eq!(all, want, "{f}");
        // windows crossing the 1000-filter chunks
        for (a, b) in [(0, 1), (999, 1001), (48, 304), (1500, 2144), (7, 7)] {
            let w = ds.read(a, b).unwrap();
            assert_eq!(w, want[a as usize * 9..b as usize * 9], "{f} {a}..{b}");
        }
        let e = ds.read(2000, 2145).unwrap_err();
        assert!(matches!(e.kind, H5ErrorKind::Window { .. }), "{e}");
        let e = ds.read(0, MAX_WINDOW_FILTERS + 1).unwrap_err();
        assert!(matches!(e.kind, H5ErrorKind::Window { .. }), "{e}");
    }
}

#[test]
fn missing_or_misshapen_datasets_are_refused() {
    let p = fixture("filterdb/dataset.h5");
    let e = FilterDataset::open(&p, &["nope"]).unwrap_err();
    assert!(matches!(e.kind, H5ErrorKind::NoDataset { .. }), "{e}");
    let e = FilterDataset::open(&p, &["layers/conv_depth"]).unwrap_err();
    assert!(matches!(e.kind, H5ErrorKind::Shape { .. }), "{e}");
    assert!(e.to_string().contains("dataset.h5"), "{e}");
}

#[test]
fn hostile_files_give_errors_naming_the_file() {
    for (name, why) in [
        ("truncated.h5", "past the end of the 26992-byte file"),
        ("cyclic_btree.h5", "depth exceeded"),
        ("heap_out_of_range.h5", "unexpected EOF"),
        ("huge_dims.h5", "declares 4611686018427387904 filters"),
        // fuzz finding (hdf5/read, out-of-memory: a 9 KB file whose chunk claims 4.28 GB)
        ("../fuzz/hdf5_chunk_past_eof.h5", "past the end of the"),
    ] {
        let p = fixture(&format!("hostile/hdf5/{name}"));
        let r = FilterDataset::open(&p, &["filters"]).and_then(|ds| ds.read(0, ds.len().min(16)));
        let e = r.expect_err(name);
        let msg = e.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains(why), "{msg}");
        eprintln!("{name}: {msg}");
    }
}

#[test]
fn not_hdf5_is_refused() {
    let p = fixture("filterdb/filters.npy");
    let e = FilterDataset::open(&p, &["filters"]).unwrap_err();
    assert!(matches!(e.kind, H5ErrorKind::Hdf5(_)), "{e}");
}
