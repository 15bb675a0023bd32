//! The zip container of torch >= 1.6 (`torch.save`) and TorchScript (`torch.jit.save`).

use crate::collect::StorageSource;
use crate::error::TorchError;
use crate::pickle::{PidStyle, Unpickler};
use crate::value::StorageRef;
use crate::Parsed;
use convlens_core::{Blob, ByteOrder, Format};
use std::collections::HashMap;
use std::io::{Cursor, Read};
use zip::{CompressionMethod, ZipArchive};

/// Largest decompressed member convlens accepts (16 GiB).
const MAX_MEMBER_BYTES: u64 = 1 << 34;
/// Deflate cannot expand data by more than about 1032:1.
const MAX_DEFLATE_RATIO: u64 = 1032;

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Bytes of member `idx`: a slice of the archive for STORED members (no copy), a bounded
/// decompression for DEFLATED ones.
fn read_member(
    ar: &mut Archive<'_>,
    blob: &Blob,
    idx: usize,
    name: &str,
) -> Result<Blob, TorchError> {
    let member_err = |msg: String| TorchError::Member {
        name: name.to_string(),
        msg,
    };
    let (method, start, csize, size, encrypted) = {
        let f = ar
            .by_index_raw(idx)
            .map_err(|e| member_err(format!("cannot locate its data: {e}")))?;
        (
            f.compression(),
            f.data_start(),
            f.compressed_size(),
            f.size(),
            f.encrypted(),
        )
    };
    if encrypted {
        return Err(member_err("is encrypted".into()));
    }
    match method {
        CompressionMethod::Stored => {
            if csize != size {
                return Err(member_err(format!(
                    "stored (uncompressed) but its sizes disagree ({csize} vs {size} bytes)"
                )));
            }
            let range = usize::try_from(start).ok().and_then(|s| {
                let len = usize::try_from(csize).ok()?;
                Some(s..s.checked_add(len)?)
            });
            range.and_then(|r| blob.slice(r)).ok_or_else(|| {
                member_err(format!(
                    "its {csize} bytes at offset {start} extend past the end of the file ({} bytes)",
                    blob.len()
                ))
            })
        }
        CompressionMethod::Deflated => {
            if size > MAX_MEMBER_BYTES {
                return Err(TorchError::Limit(format!(
                    "member `{name}` declares {size} decompressed bytes (at most {MAX_MEMBER_BYTES})"
                )));
            }
            if size > csize.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(64) {
                return Err(member_err(format!(
                    "declares {size} bytes decompressed from {csize} compressed bytes, more than deflate can produce"
                )));
            }
            let f = ar
                .by_index(idx)
                .map_err(|e| member_err(format!("cannot open: {e}")))?;
            // grow as data arrives; the declared size only caps it
            let mut out = Vec::new();
            f.take(size.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| member_err(format!("decompression failed: {e}")))?;
            if out.len() as u64 != size {
                return Err(member_err(format!(
                    "decompresses to {}{} bytes but declares {size}",
                    out.len(),
                    if out.len() as u64 > size { "+" } else { "" }
                )));
            }
            Ok(Blob::from_vec(out))
        }
        other => Err(member_err(format!(
            "uses compression method {other:?}, which convlens does not read"
        ))),
    }
}

struct ZipStorages<'a> {
    ar: Archive<'a>,
    blob: Blob,
    prefix: String,
    members: HashMap<String, Blob>,
}

impl StorageSource for ZipStorages<'_> {
    fn bytes(&mut self, s: &StorageRef) -> Result<Blob, TorchError> {
        let storage_err = |msg: String| TorchError::Storage {
            key: s.key.clone(),
            msg,
        };
        let esize = s
            .dtype
            .size()
            .ok_or_else(|| storage_err(format!("unsupported storage type {:?}", s.dtype)))?;
        let numel = usize::try_from(s.numel)
            .map_err(|_| storage_err(format!("invalid element count {}", s.numel)))?;
        let need = numel
            .checked_mul(esize)
            .ok_or_else(|| storage_err(format!("element count {numel} overflows")))?;
        let member = match self.members.get(&s.key) {
            Some(b) => b.clone(),
            None => {
                let name = format!("{}data/{}", self.prefix, s.key);
                let idx = self.ar.index_for_name(&name).ok_or_else(|| {
                    storage_err(format!(
                        "referenced by the pickle but missing from the archive (expected member `{name}`)"
                    ))
                })?;
                let b = read_member(&mut self.ar, &self.blob, idx, &name)?;
                self.members.insert(s.key.clone(), b.clone());
                b
            }
        };
        if member.len() < need {
            return Err(storage_err(format!(
                "declares {numel} elements of {esize} bytes ({need} bytes) but its archive member holds only {} bytes",
                member.len()
            )));
        }
        member
            .slice(0..need)
            .ok_or_else(|| storage_err("cannot slice its data".into()))
    }
}

/// Reads a torch zip archive or TorchScript archive.
pub(crate) fn read_zip(
    blob: Blob,
    opts: &crate::ReadOptions,
) -> Result<crate::Checkpoint, TorchError> {
    let bytes: &[u8] = blob.as_slice();
    convlens_core::zip_end::check_end_record(bytes).map_err(TorchError::Zip)?;
    ZipArchive::new(convlens_core::zip_end::BoundedReader::new(bytes)).map_err(|e| match e {
        zip::result::ZipError::Io(io) => TorchError::Zip(format!("unreadable archive: {io}")),
        other => TorchError::Zip(other.to_string()),
    })?;
    let mut ar = ZipArchive::new(Cursor::new(bytes)).map_err(|e| TorchError::Zip(e.to_string()))?;

    let mut pkl: Option<String> = None;
    for name in ar.file_names() {
        let is_pkl = name == "data.pkl" || name.ends_with("/data.pkl");
        if is_pkl && pkl.as_ref().is_none_or(|p| name.len() < p.len()) {
            pkl = Some(name.to_string());
        }
    }
    let Some(pkl_name) = pkl else {
        let what = if ar
            .file_names()
            .any(|n| n == "model.json" || n.ends_with("/model.json"))
        {
            "it looks like a TorchScript archive of torch < 1.4 (model.json), which convlens does not read".to_string()
        } else {
            let names: Vec<&str> = ar.file_names().take(5).collect();
            format!("{} members, e.g. {:?}", ar.len(), names)
        };
        return Err(TorchError::NoDataPkl(what));
    };
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();

    let torchscript = ar.file_names().any(|n| {
        n.strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest == "constants.pkl" || rest.starts_with("code/"))
    });

    let order = match ar.index_for_name(&format!("{prefix}byteorder")) {
        None => ByteOrder::Little,
        Some(idx) => {
            let name = format!("{prefix}byteorder");
            let b = read_member(&mut ar, &blob, idx, &name)?;
            match std::str::from_utf8(b.as_slice()).map(str::trim) {
                Ok("little") => ByteOrder::Little,
                Ok("big") => ByteOrder::Big,
                _ => {
                    return Err(TorchError::Member {
                        name,
                        msg: "must say `little` or `big`".into(),
                    })
                }
            }
        }
    };

    let idx = ar
        .index_for_name(&pkl_name)
        .ok_or_else(|| TorchError::Zip(format!("member `{pkl_name}` vanished")))?;
    let pkl_blob = read_member(&mut ar, &blob, idx, &pkl_name)?;
    let mut up = Unpickler::new(pkl_blob.as_slice(), PidStyle::Zip);
    let root = up.load(0)?;
    let mut notes = std::mem::take(&mut up.notes);
    drop(up);
    if order == ByteOrder::Big {
        notes.push("archive stores tensors big-endian (`byteorder` = big)".into());
    }

    let format = if torchscript {
        Format::TorchScript
    } else {
        Format::TorchZip
    };
    let mut src = ZipStorages {
        ar,
        blob: blob.clone(),
        prefix,
        members: HashMap::new(),
    };
    crate::finish(
        Parsed {
            format,
            root,
            order,
            notes,
            input_len: bytes.len(),
        },
        &mut src,
        opts,
    )
}
