//! What identifies a model file between builds: the BLAKE3 hash of its bytes and its
//! modification time.

use std::fs::File;
use std::path::Path;

pub(super) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Bytes read per block by [`file_blake3`].
const HASH_BLOCK: usize = 256 << 10;

/// BLAKE3 of a file (hex), read in blocks of [`HASH_BLOCK`] bytes (a copy that stays in the
/// cache is cheaper than mapping the pages in and out again).
pub(super) fn file_blake3(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut h = blake3::Hasher::new();
    if len == 0 {
        return Ok(h.finalize().to_hex().to_string());
    }
    // read in blocks small enough to stay in the cache between the copy and the hash
    let mut file = file;
    let mut buf = vec![0u8; HASH_BLOCK];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hash_is_blake3_of_the_bytes_over_several_blocks() {
        let dir = std::env::temp_dir().join(format!("convlens-b3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // the published BLAKE3 test value of the empty input
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            file_blake3(&empty).unwrap(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        // 2.5 blocks of pseudo-random bytes: the block-wise hash is the hash of the whole
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let bytes: Vec<u8> = (0..HASH_BLOCK * 5 / 2 + 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let big = dir.join("big");
        std::fs::write(&big, &bytes).unwrap();
        assert_eq!(
            file_blake3(&big).unwrap(),
            blake3::hash(&bytes).to_hex().to_string()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
