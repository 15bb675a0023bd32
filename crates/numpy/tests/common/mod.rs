//! Builders for hand-made `.npy` and `.npz` bytes (shared by the test files).
#![allow(dead_code)]

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A `.npy` file of format version `major`.0 with the header dictionary `dict`, padded as numpy
/// pads it (preamble + header a multiple of 64 bytes, ending with a newline).
pub fn npy_v(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let pre = if major == 1 { 10 } else { 12 };
    let mut h = dict.as_bytes().to_vec();
    let pad = (64 - (pre + h.len() + 1) % 64) % 64;
    h.resize(h.len() + pad, b' ');
    h.push(b'\n');
    let mut v = b"\x93NUMPY".to_vec();
    v.push(major);
    v.push(0);
    if major == 1 {
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        v.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    v.extend_from_slice(&h);
    v.extend_from_slice(data);
    v
}

/// A version 1.0 `.npy` file.
pub fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let f = if fortran { "True" } else { "False" };
    npy_v(
        1,
        &format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}"),
        data,
    )
}

pub fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A zip archive of `(name, bytes, deflated)` members.
pub fn zip_of(members: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes, deflate) in members {
        let method = if *deflate {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let opts = SimpleFileOptions::default()
            .compression_method(method)
            .large_file(bytes.len() >= u32::MAX as usize);
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Position of the first occurrence of `pat` in `hay`.
pub fn find(hay: &[u8], pat: &[u8]) -> usize {
    hay.windows(pat.len()).position(|w| w == pat).unwrap()
}
