//! Filter shards: `N × kh × kw` float32 `.npy` files that numpy can memory-map.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// The `.npy` v1.0 header for a C-ordered little-endian f32 array of `shape`.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + dict + padding + '\n', multiple of 64
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let hlen = total - 10;
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&(hlen as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

/// Writes `data` (f32, C order) as an `.npy` file of `shape`, atomically (temp file + rename).
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    let tmp = path.with_extension("npy.tmp");
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(&npy_header(shape))?;
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in data.chunks(1 << 14) {
            buf.clear();
            for x in chunk {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        w.flush()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads a shard's `.npy` header from `r` and checks that it describes exactly `n` float32
/// filters of `kh × kw`; returns the taps per filter. `path` names the file in the error.
pub(crate) fn read_header(
    r: &mut impl Read,
    path: &Path,
    n: u64,
    kh: usize,
    kw: usize,
) -> std::io::Result<usize> {
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: shard header does not describe {n} float32 {kh}x{kw} filters (rebuild the database)",
                path.display()
            ),
        )
    };
    let (Ok(n_rows), Some(k)) = (usize::try_from(n), kh.checked_mul(kw)) else {
        return Err(bad());
    };
    let expected = npy_header(&[n_rows, kh, kw]);
    let mut got = vec![0u8; expected.len()];
    r.read_exact(&mut got)?;
    if got != expected {
        return Err(bad());
    }
    Ok(k)
}

/// Streams the filters of a shard in chunks.
pub struct ShardReader {
    reader: BufReader<File>,
    remaining: u64,
    k: usize,
    buf: Vec<u8>,
}

impl ShardReader {
    /// Opens a shard expected to hold `n` filters of `k` taps; the header must say exactly that.
    pub fn open(path: &Path, n: u64, kh: usize, kw: usize) -> std::io::Result<ShardReader> {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
        let k = read_header(&mut reader, path, n, kh, kw)?;
        Ok(ShardReader {
            reader,
            remaining: n,
            k,
            buf: Vec::new(),
        })
    }

    /// Reads up to `max` filters into `out` (cleared first); returns how many were read.
    pub fn next_chunk(&mut self, max: usize, out: &mut Vec<f32>) -> std::io::Result<usize> {
        out.clear();
        let n = (self.remaining.min(max as u64)) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.buf.resize(n * self.k * 4, 0);
        self.reader.read_exact(&mut self.buf)?;
        out.extend(
            self.buf
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads filters `start..start + count` of a shard holding `n` filters of `kh × kw`.
pub fn read_filters(
    path: &Path,
    n: u64,
    kh: usize,
    kw: usize,
    start: u64,
    count: usize,
) -> std::io::Result<Vec<f32>> {
    use std::io::{Seek, SeekFrom};
    if start.checked_add(count as u64).is_none_or(|end| end > n) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{}: filters {start}..+{count} outside its {n} filters",
                path.display()
            ),
        ));
    }
    let mut r = ShardReader::open(path, n, kh, kw)?;
    let header = npy_header(&[n as usize, kh, kw]).len() as u64;
    let k = (kh * kw) as u64;
    r.reader.seek(SeekFrom::Start(header + start * k * 4))?;
    r.remaining = count as u64;
    let mut out = Vec::with_capacity(count * kh * kw);
    let mut buf = Vec::new();
    while r.next_chunk(1 << 16, &mut buf)? > 0 {
        out.extend_from_slice(&buf);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_padded_to_64_bytes() {
        let h = npy_header(&[12, 3, 3]);
        assert_eq!(h.len() % 64, 0);
        assert!(h.starts_with(b"\x93NUMPY\x01\x00"));
        assert_eq!(*h.last().unwrap(), b'\n');
        let text = String::from_utf8_lossy(&h[10..]);
        assert!(text.contains("'shape': (12, 3, 3)"), "{text}");
    }

    #[test]
    fn write_then_read_back() {
        let dir = std::env::temp_dir().join(format!("convlens-shard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.npy");
        let data: Vec<f32> = (0..5 * 9).map(|i| i as f32 * 0.5).collect();
        write_npy_f32(&p, &[5, 3, 3], &data).unwrap();
        // also parseable by the project's own npy reader
        let blob = convlens_core::Blob::from_vec(std::fs::read(&p).unwrap());
        let t = convlens_numpy::parse_npy(blob).unwrap();
        assert_eq!(t.shape(), &[5, 3, 3]);
        assert_eq!(t.to_f32(), data);
        let mut r = ShardReader::open(&p, 5, 3, 3).unwrap();
        let mut out = Vec::new();
        assert_eq!(r.next_chunk(3, &mut out).unwrap(), 3);
        assert_eq!(out, data[..27]);
        assert_eq!(r.next_chunk(3, &mut out).unwrap(), 2);
        assert_eq!(out, data[27..]);
        assert_eq!(r.next_chunk(3, &mut out).unwrap(), 0);
        assert_eq!(read_filters(&p, 5, 3, 3, 1, 2).unwrap(), data[9..27]);
        assert!(read_filters(&p, 5, 3, 3, 4, 2).is_err());
        assert!(ShardReader::open(&p, 6, 3, 3).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
