//! `.npz` archives: hand-built ones, then one test per attack.

mod common;

use std::time::Instant;

use common::{f32s, find, npy, zip_of};
use convlens_core::Blob;
use convlens_numpy::{read_npz, read_npz_strings, NpyError};

fn err(bytes: Vec<u8>) -> NpyError {
    match read_npz(Blob::from_vec(bytes)) {
        Ok(c) => panic!("accepted: {:?}", c.tensors),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            e
        }
    }
}

fn member_problem(e: &NpyError) -> &NpyError {
    match e {
        NpyError::Member { source, .. } => source,
        other => panic!("not a member error: {other:?}"),
    }
}

/// `<U6` array of two names, as numpy stores them (UTF-32, NUL padded).
fn names_npy() -> Vec<u8> {
    let mut d = Vec::new();
    for s in ["cat", "bird.\u{e9}"] {
        let mut units: Vec<u32> = s.chars().map(|c| c as u32).collect();
        units.resize(6, 0);
        d.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    }
    npy("<U6", false, "(2,)", &d)
}

#[test]
fn archive_order_stored_and_deflated() {
    let b = npy("<f4", false, "(2,)", &f32s(&[1., 2.]));
    let a = npy("<f4", false, "(1, 1, 1, 1)", &f32s(&[3.]));
    let s = npy("|S4", false, "(1,)", b"ab\0\0");
    let n = names_npy();
    let bytes = zip_of(&[
        ("z.npy", &b, false),
        ("a.npy", &a, true),
        ("names.npy", &n, true),
        ("raw.npy", &s, false),
    ]);
    let blob = Blob::from_vec(bytes);
    let c = read_npz(blob.clone()).unwrap();
    assert_eq!(c.order_source, "npz archive order");
    let names: Vec<&str> = c.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["z", "a"]);
    assert_eq!(c.tensor("z").unwrap().to_f32(), vec![1., 2.]);
    assert_eq!(c.tensor("a").unwrap().to_f32(), vec![3.]);
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
    assert!(c.notes[0].contains("'names'"));
    // the stored member is a view of the archive bytes
    let base = blob.as_slice().as_ptr() as usize;
    let p = c.tensor("z").unwrap().storage().as_slice().as_ptr() as usize;
    assert!(p > base && p < base + blob.len());

    assert_eq!(
        read_npz_strings(blob.clone(), "names").unwrap(),
        vec!["cat".to_string(), "bird.\u{e9}".to_string()]
    );
    assert_eq!(read_npz_strings(blob.clone(), "raw").unwrap(), vec!["ab"]);
    assert!(matches!(
        read_npz_strings(blob.clone(), "z"),
        Err(NpyError::Member { .. })
    ));
    assert!(matches!(
        read_npz_strings(blob, "nope"),
        Err(NpyError::NoSuchArray(_))
    ));
}

#[test]
fn fortran_ordered_strings() {
    // 2x2 <U1 array [['a','b'],['c','d']] stored column-major: a c b d
    let d: Vec<u8> = "acbd"
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    let bytes = zip_of(&[("s.npy", &npy("<U1", true, "(2, 2)", &d), false)]);
    assert_eq!(
        read_npz_strings(Blob::from_vec(bytes), "s").unwrap(),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn empty_file() {
    assert!(matches!(err(vec![]), NpyError::Zip(_)));
}

#[test]
fn object_dtype_member_is_refused() {
    let o = npy("|O", false, "(1,)", b"\x80\x04\x95\x00");
    let w = npy("<f4", false, "(1,)", &f32s(&[1.]));
    let e = err(zip_of(&[("w.npy", &w, false), ("cfg.npy", &o, false)]));
    assert!(
        matches!(member_problem(&e), NpyError::ObjectArray(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("cfg.npy"));
}

#[test]
fn zip_bomb_stops_at_the_cap() {
    // 64 MiB of zeros behind a valid header deflate to about 64 KiB: a 1000x expansion
    let mut member = npy("<f4", false, "(16777216,)", &[]);
    member.resize(member.len() + (64 << 20), 0);
    let bytes = zip_of(&[("w.npy", &member, true)]);
    drop(member);
    assert!(bytes.len() < 200 << 10, "{} bytes", bytes.len());
    let t = Instant::now();
    let e = err(bytes);
    let msg = e.to_string();
    assert!(msg.contains("decompression cap"), "{msg}");
    assert!(t.elapsed().as_secs() < 10);
}

#[test]
fn deflated_member_larger_than_declared() {
    let member = npy("<f4", false, "(25000,)", &f32s(&[0.5; 25000]));
    let mut bytes = zip_of(&[("w.npy", &member, true)]);
    // declare 1000 bytes in both the local and the central header
    for (sig, off) in [(&b"PK\x03\x04"[..], 22), (&b"PK\x01\x02"[..], 24)] {
        let at = find(&bytes, sig) + off;
        bytes[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
    }
    let e = err(bytes);
    assert!(e.to_string().contains("past its declared size"), "{e}");
}

#[test]
fn stored_member_checksum_mismatch() {
    let member = npy("<f4", false, "(2,)", &f32s(&[1., 2.]));
    let mut bytes = zip_of(&[("w.npy", &member, false)]);
    let at = find(&bytes, &f32s(&[2.]));
    bytes[at] ^= 1;
    let e = err(bytes);
    assert!(e.to_string().contains("CRC-32"), "{e}");
}

#[test]
fn member_not_an_npy() {
    let bytes = zip_of(&[("readme.npy", b"just some text, not an array", false)]);
    let e = err(bytes);
    assert!(matches!(member_problem(&e), NpyError::BadMagic), "{e:?}");
    assert!(e.to_string().contains("readme.npy"));
}

#[test]
fn member_with_bad_npy_header() {
    let w = npy("<f4", false, "(3,)", &f32s(&[1.]));
    let e = err(zip_of(&[("w.npy", &w, true)]));
    assert!(
        matches!(member_problem(&e), NpyError::DataSize { .. }),
        "{e:?}"
    );
}

#[test]
fn truncated_zip() {
    let w = npy("<f4", false, "(64,)", &f32s(&[1.; 64]));
    let bytes = zip_of(&[("a.npy", &w, false), ("b.npy", &w, true)]);
    for cut in [bytes.len() - 1, bytes.len() - 30, bytes.len() / 2, 10] {
        let e = err(bytes[..cut].to_vec());
        assert!(matches!(e, NpyError::Zip(_)), "cut at {cut}: {e:?}");
    }
}

#[test]
fn truncated_member_data() {
    // central directory intact, but the stored member claims more bytes than the archive has
    let w = npy("<f4", false, "(64,)", &f32s(&[1.; 64]));
    let mut bytes = zip_of(&[("a.npy", &w, false)]);
    for (sig, off) in [(&b"PK\x03\x04"[..], 18), (&b"PK\x01\x02"[..], 20)] {
        for field in [0, 4] {
            let at = find(&bytes, sig) + off + field;
            bytes[at..at + 4].copy_from_slice(&100_000u32.to_le_bytes());
        }
    }
    let e = err(bytes);
    assert!(
        matches!(e, NpyError::Member { .. } | NpyError::Zip(_)),
        "{e:?}"
    );
}

/// Fuzz finding 3 (see `crates/torch/tests/hostile.rs`): the two zip directory bombs of
/// `fixtures/hostile/fuzz/` are refused by the `.npz` reader too, each for its reason.
#[test]
fn fuzz_zip_directory_bombs_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hostile/fuzz");
    let e = err(std::fs::read(dir.join("zip_end_bomb.pt")).unwrap());
    assert!(
        matches!(&e, NpyError::Zip(m) if m.contains("where there is none")),
        "{e}"
    );
    let e = err(std::fs::read(dir.join("zip_fallback_bomb.pt")).unwrap());
    assert!(
        matches!(&e, NpyError::Zip(m) if m.contains(convlens_core::zip_end::BUDGET_SPENT)),
        "{e}"
    );
}
