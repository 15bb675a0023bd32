//! The legacy stream format of torch < 1.6 and plain pickles.
//!
//! Layout: pickles of the magic number, the protocol version and `sys_info`, then the object
//! pickle, then a pickle of the list of storage keys, then for each key in that order a
//! little-endian `i64` element count followed by the raw little-endian elements.

use crate::collect::StorageSource;
use crate::error::TorchError;
use crate::pickle::{PidStyle, Unpickler};
use crate::value::{StorageDtype, StorageRef, Value};
use crate::Parsed;
use convlens_core::{Blob, ByteOrder, Checkpoint, Format};
use std::collections::HashMap;

/// `torch.serialization.MAGIC_NUMBER`.
pub(crate) const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// `torch.serialization.PROTOCOL_VERSION`.
const PROTOCOL_VERSION: i128 = 1001;

struct LegacyStorages {
    roots: HashMap<String, Blob>,
}

impl StorageSource for LegacyStorages {
    fn bytes(&mut self, s: &StorageRef) -> Result<Blob, TorchError> {
        let err = |msg: String| TorchError::Storage {
            key: s.key.clone(),
            msg,
        };
        let root = self.roots.get(&s.key).ok_or_else(|| {
            err("referenced by the pickle but absent from the stream's storage list".into())
        })?;
        let Some((view_key, offset, len)) = &s.view else {
            return Ok(root.clone());
        };
        let esize = s
            .dtype
            .size()
            .ok_or_else(|| err(format!("unsupported storage type {:?}", s.dtype)))?;
        let range = usize::try_from(*offset).ok().and_then(|o| {
            let n = usize::try_from(*len).ok()?;
            let start = o.checked_mul(esize)?;
            Some(start..start.checked_add(n.checked_mul(esize)?)?)
        });
        range.and_then(|r| root.slice(r)).ok_or_else(|| {
            err(format!(
                "view `{view_key}` covers elements [{offset}, {offset}+{len}) but the storage holds {} elements",
                root.len() / esize
            ))
        })
    }
}

/// A source for plain pickles, which carry no storage data.
struct NoStorages;

impl StorageSource for NoStorages {
    fn bytes(&mut self, s: &StorageRef) -> Result<Blob, TorchError> {
        Err(TorchError::Storage {
            key: s.key.clone(),
            msg: "the file is a plain pickle without torch's storage records, so tensor data is unavailable".into(),
        })
    }
}

/// Reads a legacy torch stream (or a plain pickle).
pub(crate) fn read_stream(blob: Blob, opts: &crate::ReadOptions) -> Result<Checkpoint, TorchError> {
    let data = blob.as_slice();
    let mut up = Unpickler::new(data, PidStyle::Legacy);
    let first = up.load(0)?;
    match first {
        Value::Int(MAGIC) => {}
        Value::Int(_) | Value::BigInt => {
            return Err(TorchError::Legacy(
                "invalid magic number: the stream starts with an integer that is not torch's \
                 0x1950a86a20f9469cfc6c (corrupt file?)"
                    .into(),
            ))
        }
        root => {
            let mut notes = std::mem::take(&mut up.notes);
            notes.insert(
                0,
                "plain pickle without torch's legacy header; only values inside it were read"
                    .into(),
            );
            return crate::finish(
                Parsed {
                    format: Format::TorchLegacy,
                    root,
                    order: ByteOrder::Little,
                    notes,
                    input_len: data.len(),
                },
                &mut NoStorages,
                opts,
            );
        }
    }
    let version = up.load(up.position())?;
    if version.as_int() != Some(PROTOCOL_VERSION) {
        return Err(TorchError::Legacy(format!(
            "unsupported protocol version {} (expected {PROTOCOL_VERSION})",
            version.describe()
        )));
    }
    let sys_info = up.load(up.position())?;
    let mut notes = Vec::new();
    if let Value::Dict(d) = &sys_info {
        if let Some(Value::Bool(false)) = d.0.borrow().get_str("little_endian") {
            notes.push(
                "sys_info says the saving machine was big-endian; storages are read as \
                 little-endian, as torch writes them"
                    .into(),
            );
        }
    }
    let root = up.load(up.position())?;
    let keys_value = up.load(up.position()).map_err(|e| {
        TorchError::Legacy(format!(
            "the list of storage keys after the object pickle is unreadable: {e}"
        ))
    })?;
    let keys: Vec<String> = match keys_value.seq_items() {
        Some(items) => items
            .iter()
            .map(|k| match k {
                Value::Int(i) => Some(i.to_string()),
                other => other.as_text().map(|s| s.to_string()),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TorchError::Legacy("storage keys must be strings".into()))?,
        None => {
            return Err(TorchError::Legacy(format!(
                "expected the list of storage keys after the object pickle, got {}",
                keys_value.describe()
            )))
        }
    };

    // the first persistent id naming a root key gives its element type and size
    let mut declared: HashMap<&str, (&StorageDtype, i128)> = HashMap::new();
    for s in &up.storages {
        declared
            .entry(s.key.as_str())
            .or_insert((&s.dtype, s.numel));
    }

    let mut pos = up.position();
    let mut roots = HashMap::new();
    for key in &keys {
        let Some(&(dtype, numel)) = declared.get(key.as_str()) else {
            return Err(TorchError::Legacy(format!(
                "storage `{key}` is listed but never referenced by the pickle"
            )));
        };
        let esize = dtype.size().ok_or_else(|| {
            TorchError::Legacy(format!("storage `{key}` has unsupported type {dtype:?}"))
        })?;
        let header = pos
            .checked_add(8)
            .and_then(|e| data.get(pos..e))
            .ok_or_else(|| {
                TorchError::Legacy(format!(
                    "truncated: the record of storage `{key}` should start at byte {pos} but the file has {} bytes",
                    data.len()
                ))
            })?;
        let mut a = [0u8; 8];
        a.copy_from_slice(header);
        let count = i64::from_le_bytes(a);
        if i128::from(count) != numel {
            return Err(TorchError::Legacy(format!(
                "storage `{key}` holds {count} elements but the pickle declares {numel}"
            )));
        }
        let nbytes = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(esize))
            .ok_or_else(|| {
                TorchError::Legacy(format!(
                    "storage `{key}` has an invalid element count {count}"
                ))
            })?;
        let start = pos + 8;
        let end = start.checked_add(nbytes).filter(|&e| e <= data.len()).ok_or_else(|| {
            TorchError::Legacy(format!(
                "truncated: storage `{key}` needs {nbytes} bytes at byte {start} but only {} remain",
                data.len().saturating_sub(start)
            ))
        })?;
        let b = blob
            .slice(start..end)
            .ok_or_else(|| TorchError::Legacy(format!("storage `{key}` lies outside the file")))?;
        roots.insert(key.clone(), b);
        pos = end;
    }
    notes.extend(std::mem::take(&mut up.notes));
    drop(declared);
    drop(up);
    crate::finish(
        Parsed {
            format: Format::TorchLegacy,
            root,
            order: ByteOrder::Little,
            notes,
            input_len: data.len(),
        },
        &mut LegacyStorages { roots },
        opts,
    )
}
