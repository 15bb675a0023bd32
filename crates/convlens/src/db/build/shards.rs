//! The filter shards of one model being written: temporary `.npy` files sized up front,
//! filled layer by layer from several threads at their own offsets, renamed into place
//! together with the model's record.

use crate::db::shard::npy_header;
use crate::db::FILTERS_DIR;
use convlens_core::KernelLayout;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One shard being written: a temporary file, sized up front, that becomes the shard on
/// success; layers are written at their own offsets as soon as they are measured.
pub(super) struct ShardOut {
    pub(super) tmp: PathBuf,
    pub(super) file: PathBuf,
    out: File,
    /// Bytes of the `.npy` header.
    header: u64,
    /// Filters announced in the header.
    pub(super) n: u64,
    /// Filters written so far.
    pub(super) written: std::sync::atomic::AtomicU64,
}

/// Where a selected layer goes: its kernel size and first filter in that kernel's shard.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    pub(super) kernel: [usize; 2],
    pub(super) start: u64,
}

/// Writes `bytes` at `offset` of `f` (positioned write: layers arrive from several threads).
fn write_at(f: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(bytes, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut bytes, mut offset) = (bytes, offset);
        while !bytes.is_empty() {
            let n = f.seek_write(bytes, offset)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// Bytes per positioned write: the source stays in cache between the copy into the page cache
/// and the next piece.
const WRITE_PIECE: usize = 1 << 16;

/// Writes the f32 values `data` at `offset` of `f` as little-endian bytes (converted a piece at
/// a time and written by [`write_bytes_at`]).
fn write_f32s_at(f: &File, data: &[f32], offset: u64) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(WRITE_PIECE);
    let mut at = offset;
    for chunk in data.chunks(WRITE_PIECE / 4) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        write_bytes_at(f, &buf, at)?;
        at += buf.len() as u64;
    }
    Ok(())
}

/// Writes `bytes` at `offset` of `f` in pieces that end on multiples of [`WRITE_PIECE`] in the
/// file, so that every piece but the first and last covers whole pages of the page cache
/// (nothing to zero or read around it).
fn write_bytes_at(f: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    let mut at = offset;
    let mut rest = bytes;
    while !rest.is_empty() {
        let to_boundary = WRITE_PIECE - (at % WRITE_PIECE as u64) as usize;
        let (piece, tail) = rest.split_at(to_boundary.min(rest.len()));
        write_at(f, piece, at)?;
        at += piece.len() as u64;
        rest = tail;
    }
    Ok(())
}

/// The shards of one model being written.
pub(super) struct ShardSet {
    pub(super) shards: BTreeMap<[usize; 2], ShardOut>,
    pub(super) slots: Vec<Slot>,
}

impl ShardSet {
    /// Creates one temporary shard per kernel size of `layers`, sized for all their filters.
    pub(super) fn create(
        name: &str,
        db_dir: &Path,
        layers: &[&crate::extract::ConvLayer],
    ) -> Result<ShardSet, String> {
        let mut totals: BTreeMap<[usize; 2], u64> = BTreeMap::new();
        let mut slots = Vec::with_capacity(layers.len());
        for l in layers {
            let kernel = [l.kh, l.kw];
            let t = totals.entry(kernel).or_default();
            slots.push(Slot { kernel, start: *t });
            *t += l.n_filters as u64;
        }
        let mut set = ShardSet {
            shards: BTreeMap::new(),
            slots,
        };
        match set.create_files(name, db_dir, &totals) {
            Ok(()) => Ok(set),
            Err(e) => {
                set.remove();
                Err(e)
            }
        }
    }

    /// Creates the temporary shard files with their headers, `totals` filters each.
    fn create_files(
        &mut self,
        name: &str,
        db_dir: &Path,
        totals: &BTreeMap<[usize; 2], u64>,
    ) -> Result<(), String> {
        for (&kk, &n) in totals {
            let dir = db_dir
                .join(FILTERS_DIR)
                .join(format!("{}x{}", kk[0], kk[1]));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let file = dir.join(format!("{name}.npy"));
            let tmp = file.with_extension("npy.tmp");
            let out = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            // registered before anything else can fail, so that `remove` deletes it
            let header = npy_header(&[n as usize, kk[0], kk[1]]);
            self.shards.insert(
                kk,
                ShardOut {
                    tmp: tmp.clone(),
                    file,
                    out,
                    header: header.len() as u64,
                    n,
                    written: std::sync::atomic::AtomicU64::new(0),
                },
            );
            let Some(s) = self.shards.get(&kk) else {
                continue;
            };
            let bytes = n
                .checked_mul((kk[0] * kk[1]) as u64 * 4)
                .and_then(|b| b.checked_add(s.header));
            let Some(bytes) = bytes else {
                return Err(format!("{}: shard size overflows", tmp.display()));
            };
            s.out
                .set_len(bytes)
                .and_then(|()| write_at(&s.out, &header, 0))
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
        }
        Ok(())
    }

    /// Writes selected layer `i` (its filters in stored order) into its shard.
    pub(super) fn write_layer(
        &self,
        i: usize,
        l: &crate::extract::ConvLayer,
    ) -> Result<(), String> {
        let Some(slot) = self.slots.get(i) else {
            return Err(format!("{}: layer {i} not planned", l.name));
        };
        let Some(out) = self.shards.get(&slot.kernel) else {
            return Err(format!("{}: no shard for {:?}", l.name, slot.kernel));
        };
        if [l.kh, l.kw] != slot.kernel {
            return Err(format!("{}: kernel differs from the plan", l.name));
        }
        let k = l.kh * l.kw;
        // a filter is `kh*kw` consecutive values only when the kernel's H and W are the last
        // two axes (OIHW, or IOHW of a transposed convolution); other layouts are stored in
        // OIHW order, the order the layer's metrics and basis sums were computed in
        let hw_last = matches!(l.layout, KernelLayout::OIHW | KernelLayout::IOHW);
        let owned;
        let filters: &[f32] = match l.weight.as_f32_slice() {
            Some(w) if hw_last => w,
            _ if hw_last => {
                owned = l.filters();
                &owned
            }
            _ => {
                owned = l.weights_oihw();
                &owned
            }
        };
        let n_layer = (filters.len() / k.max(1)) as u64;
        if n_layer != l.n_filters as u64 || slot.start + n_layer > out.n {
            return Err(format!(
                "{}: {n_layer} filters do not fit the shard",
                l.name
            ));
        }
        let offset = out.header + slot.start * k as u64 * 4;
        let whole = &filters[..n_layer as usize * k];
        let written =
            if cfg!(target_endian = "little") && hw_last && l.weight.as_f32_slice().is_some() {
                // the file's bytes already are little-endian float32 in this order
                let span = l.weight.byte_span();
                let bytes = l
                    .weight
                    .storage()
                    .as_slice()
                    .get(span.start..span.start + whole.len() * 4);
                match bytes {
                    Some(b) => write_bytes_at(&out.out, b, offset),
                    None => write_f32s_at(&out.out, whole, offset),
                }
            } else {
                write_f32s_at(&out.out, whole, offset)
            };
        written.map_err(|e| format!("{}: {e}", out.tmp.display()))?;
        out.written
            .fetch_add(n_layer, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the temporary files.
    pub(super) fn remove(&self) {
        for s in self.shards.values() {
            let _ = std::fs::remove_file(&s.tmp);
        }
    }
}

/// Finished shards of a model still under their temporary names: they replace the model's
/// shards only together with its record (see [`PendingShards::commit`]).
pub(super) struct PendingShards(pub(super) Vec<(PathBuf, PathBuf)>);

impl PendingShards {
    /// Renames the temporary files to their final names; on a failure, deletes every file of
    /// the set (renamed or not) and returns the error.
    pub(super) fn commit(mut self) -> std::io::Result<()> {
        let files = std::mem::take(&mut self.0);
        for (i, (tmp, file)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, file) {
                for (j, (t, f)) in files.iter().enumerate() {
                    let _ = std::fs::remove_file(if j < i { f } else { t });
                }
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", file.display()),
                ));
            }
        }
        Ok(())
    }

    /// Deletes the temporary files.
    pub(super) fn discard(self) {}
}

impl Drop for PendingShards {
    /// Deletes the temporary files that were not committed (also when a build stops early).
    fn drop(&mut self) {
        for (tmp, _) in &self.0 {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
