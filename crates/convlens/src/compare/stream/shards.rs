//! A model's shard of filters as the passes read it: the layers it holds, chunks of whole
//! filters read straight into an f32 buffer, and the split of the chunks into runs of one
//! layer (whole runs, or filter by filter with the sparse test).

use crate::db::record::ModelRecord;
use crate::db::shard::read_header;
use crate::db::{Db, DbError};
use crate::depth::DepthBin;

/// Values per read chunk (288 KiB: 8192 3×3 filters), small enough to stay in the L2
/// cache between the read and the kernels (measured: 2.25 MiB chunks read on a helper thread
/// cost 10 % more CPU time, mapping the shards too).
const CHUNK_FLOATS: usize = 9 << 13;

/// Per-layer facts needed while streaming.
pub(crate) struct LayerView {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) limit: f64,
    pub(super) cell: Option<usize>,
    pub(super) skip: bool,
}

pub(super) fn layer_views(m: &ModelRecord, kernel: [usize; 2]) -> Vec<LayerView> {
    let mut v: Vec<LayerView> = m
        .layers
        .iter()
        .filter(|l| l.kernel == kernel)
        .map(|l| LayerView {
            start: l.shard_start,
            end: l.shard_end,
            limit: l.layer_norm / 100.0,
            cell: l
                .depth_group
                .as_deref()
                .and_then(DepthBin::from_label)
                .map(|b| 1 + b.index()),
            skip: l.transposed,
        })
        .collect();
    v.sort_by_key(|l| l.start);
    v
}

/// Splits the filters of a shard, fed in order in pieces of any size, into runs of one layer.
struct RunSplitter<'a> {
    layers: &'a [LayerView],
    /// Taps per filter.
    k: usize,
    /// Filter number of the next filter fed.
    id: u64,
    /// First layer that may hold it.
    li: usize,
}

impl RunSplitter<'_> {
    /// Calls `f(layer, run)` for the runs of `buf` (whole filters; a partial filter at the
    /// end is dropped); transposed layers and filters outside every layer are left out.
    fn feed(&mut self, buf: &[f32], f: &mut impl FnMut(&LayerView, &[f32])) {
        let (layers, k) = (self.layers, self.k);
        let mut rest = buf;
        while k > 0 && rest.len() >= k {
            let n = (rest.len() / k) as u64;
            let id = self.id;
            while self.li < layers.len() && id >= layers[self.li].end {
                self.li += 1;
            }
            // filters up to the next layer boundary
            let (take, layer) = match layers.get(self.li) {
                Some(l) if id >= l.start => ((l.end - id).min(n), Some(l)),
                Some(l) => ((l.start - id).min(n), None),
                None => (n, None),
            };
            let take = take.max(1);
            let (run, tail) = rest.split_at(take as usize * k);
            if let Some(l) = layer.filter(|l| !l.skip) {
                f(l, run);
            }
            self.id += take;
            rest = tail;
        }
    }
}

/// Reads the filters of a shard in chunks straight into an f32 buffer (one copy, from the
/// page cache; a chunk small enough to stay in the L2 cache while it is worked on).
struct ShardChunks {
    file: std::fs::File,
    /// Filters not read yet.
    remaining: u64,
    /// Taps per filter.
    k: usize,
    buf: Vec<f32>,
}

impl ShardChunks {
    /// Opens the shard at `path`; its header must describe exactly `n` float32 filters of
    /// `kh × kw` (as `ShardReader::open` requires).
    fn open(path: &std::path::Path, n: u64, kh: usize, kw: usize) -> std::io::Result<ShardChunks> {
        // unbuffered: the chunks go straight from the file into the buffer
        let mut file = std::fs::File::open(path)?;
        let k = read_header(&mut file, path, n, kh, kw)?;
        Ok(ShardChunks {
            file,
            remaining: n,
            k,
            buf: Vec::new(),
        })
    }

    /// The next chunk of whole filters, empty at the end.
    fn next_chunk(&mut self) -> std::io::Result<&[f32]> {
        use std::io::Read;
        let per_chunk = (CHUNK_FLOATS / self.k.max(1)).max(1);
        let n = self.remaining.min(per_chunk as u64) as usize;
        let len = n * self.k;
        self.buf.resize(len, 0.0);
        let chunk = &mut self.buf[..len];
        // SAFETY: the bytes of an initialised f32 slice, viewed as u8 (alignment 1, same
        // size in bytes); every bit pattern is a valid f32, so any bytes read leave valid
        // values behind
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<u8>(), len * 4) };
        self.file.read_exact(bytes)?;
        // the shard is little-endian (a no-op on little-endian machines)
        for v in chunk.iter_mut() {
            *v = f32::from_bits(u32::from_le(v.to_bits()));
        }
        self.remaining -= n as u64;
        Ok(chunk)
    }
}

/// Calls `f(layer, filters)` for every run of consecutive filters of one layer (whole filters
/// of `k` taps) of a model's shard of `kernel`; transposed layers and filters outside every
/// layer are left out.
pub(super) fn for_each_run(
    db: &Db,
    m: &ModelRecord,
    kernel: [usize; 2],
    mut f: impl FnMut(&LayerView, &[f32]),
) -> Result<(), DbError> {
    let Some(shard) = m.kernel(kernel) else {
        return Ok(());
    };
    let path = db.dir.join(&shard.shard);
    let io = |e| DbError::Io(path.clone(), e);
    let mut r = ShardChunks::open(&path, shard.n_filters, kernel[0], kernel[1]).map_err(io)?;
    let layers = layer_views(m, kernel);
    let mut split = RunSplitter {
        layers: &layers,
        k: kernel[0] * kernel[1],
        id: 0,
        li: 0,
    };
    loop {
        let chunk = r.next_chunk().map_err(io)?;
        if chunk.is_empty() {
            return Ok(());
        }
        split.feed(chunk, &mut f);
    }
}

/// Calls `f(layer, filter, sparse)` for every filter of a model's shard of `kernel`
/// (transposed layers left out; `sparse` by the paper rule against the stored layer norm).
pub(crate) fn for_each_filter(
    db: &Db,
    m: &ModelRecord,
    kernel: [usize; 2],
    mut f: impl FnMut(&LayerView, &[f32], bool),
) -> Result<(), DbError> {
    let k = kernel[0] * kernel[1];
    for_each_run(db, m, kernel, |l, run| {
        for filt in run.chunks_exact(k) {
            let linf = filt.iter().fold(0f32, |a, &x| a.max(x.abs()));
            let sparse = f64::from(linf) <= l.limit;
            f(l, filt, sparse);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked reader refuses a shard whose header does not describe the expected
    /// filters, or that is cut short, and reads one that spans several chunks.
    #[test]
    fn shard_chunks_check_the_header_and_the_length() {
        use crate::db::shard::write_npy_f32;
        let dir = std::env::temp_dir().join(format!("convlens-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.npy");
        let n = CHUNK_FLOATS / 9 * 2 + 5;
        let data: Vec<f32> = (0..n * 9).map(|i| i as f32 * 0.25 - 3.0).collect();
        write_npy_f32(&p, &[n, 3, 3], &data).unwrap();
        let mut r = ShardChunks::open(&p, n as u64, 3, 3).unwrap();
        let mut got = Vec::new();
        let mut chunks = 0;
        loop {
            let c = r.next_chunk().unwrap();
            if c.is_empty() {
                break;
            }
            assert!(c.len() <= CHUNK_FLOATS && c.len().is_multiple_of(9));
            got.extend_from_slice(c);
            chunks += 1;
        }
        assert_eq!(chunks, 3);
        assert!(got == data);
        // another filter count or kernel size in the header
        let e = ShardChunks::open(&p, n as u64 + 1, 3, 3).err().unwrap();
        assert!(
            e.to_string().contains("shard header does not describe"),
            "{e}"
        );
        assert!(ShardChunks::open(&p, n as u64, 1, 9).is_err());
        // cut short: the header promises more filters than the file holds
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let mut r = ShardChunks::open(&p, n as u64, 3, 3).unwrap();
        let mut err = None;
        for _ in 0..4 {
            match r.next_chunk() {
                Ok([]) => break,
                Ok(_) => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
        // not even a header
        std::fs::write(&p, b"\x93NUMPY").unwrap();
        assert!(ShardChunks::open(&p, n as u64, 3, 3).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
