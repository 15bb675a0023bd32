//! PyTorch checkpoint reader for convlens.
//!
//! Reads `torch.save` zip archives (torch >= 1.6), legacy streams (torch < 1.6, including
//! Python 2 pickles), Lightning `.ckpt` files, TorchScript archives and whole pickled
//! `nn.Module`s into a [`convlens_core::Checkpoint`] whose tensors point into the input buffer.
//!
//! The pickle is parsed by an inert machine, never executed: globals that can only serve to
//! run code are refused, and only tensor-rebuilding functions and plain containers may be
//! "called".

mod archive;
mod collect;
mod error;
mod legacy;
mod pickle;
mod policy;
mod value;

pub use error::TorchError;

use collect::StorageSource;
use convlens_core::{Blob, ByteOrder, Checkpoint, Format};
use value::Value;

/// Reads a PyTorch file (zip archive, TorchScript archive, legacy stream or plain pickle).
pub fn read(data: Blob) -> Result<Checkpoint, TorchError> {
    let bytes = data.as_slice();
    if bytes.is_empty() {
        return Err(TorchError::Empty);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return archive::read_zip(data);
    }
    if bytes.first() == Some(&0x80) {
        return legacy::read_stream(data);
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if bytes.get(257..262) == Some(b"ustar") {
        return Err(TorchError::NotTorch(
            "a tar archive (the tar-based format of torch < 0.1.10 is not supported)".into(),
        ));
    }
    Err(TorchError::NotTorch(format!(
        "starts with bytes {}, which is neither a zip archive nor a pickle stream",
        head.join(" ")
    )))
}

/// True if the bytes look like a torch zip archive, a torch legacy stream or a raw pickle.
pub fn sniff(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"PK\x03\x04") {
        return zip_looks_like_torch(bytes);
    }
    match bytes {
        [0x80, proto, op, ..] if (2..=5).contains(proto) => {
            *op == 0x8a || *op == 0x95 || op.is_ascii_graphic() || (0x80..=0x98).contains(op)
        }
        _ => false,
    }
}

/// True when the first member name or the central directory (end of the buffer) mentions a
/// member every torch archive has.
fn zip_looks_like_torch(bytes: &[u8]) -> bool {
    let first_name = bytes
        .get(26..28)
        .map(|n| usize::from(u16::from_le_bytes([n[0], n[1]])))
        .and_then(|n| bytes.get(30..bytes.len().min(30 + n)))
        .unwrap_or(&[]);
    let torchy = |name: &[u8]| {
        name.ends_with(b"data.pkl")
            || name.ends_with(b"/version")
            || name.ends_with(b"/byteorder")
            || name.ends_with(b"constants.pkl")
            || name.windows(6).any(|w| w == b"/data/")
    };
    if torchy(first_name) {
        return true;
    }
    let tail = &bytes[bytes.len().saturating_sub(1 << 20)..];
    tail.windows(9).any(|w| w == b"/data.pkl") || tail.windows(8).any(|w| w == b"data.pkl")
}

/// A parsed pickle and what is needed to turn it into a checkpoint.
pub(crate) struct Parsed {
    pub format: Format,
    pub root: Value,
    pub order: ByteOrder,
    pub notes: Vec<String>,
    pub input_len: usize,
}

/// Entries of a checkpoint dict that hold the model, in the order the oracle descends them.
const MODEL_KEYS: [&str; 3] = ["state_dict", "model", "model_state_dict"];

/// Descends into the model part of a checkpoint and collects its tensors.
pub(crate) fn finish(p: Parsed, src: &mut dyn StorageSource) -> Result<Checkpoint, TorchError> {
    let Parsed {
        format,
        mut root,
        order,
        mut notes,
        input_len,
    } = p;
    for key in MODEL_KEYS {
        let next = match &root {
            Value::Dict(d) => {
                d.0.borrow()
                    .get_str(key)
                    .filter(|v| matches!(v, Value::Dict(_) | Value::Object(_)))
                    .cloned()
            }
            _ => None,
        };
        if let Some(n) = next {
            notes.push(format!(
                "tensors taken from the `{key}` entry; other entries (optimizer state, hyper-parameters, ...) ignored"
            ));
            root = n;
        }
    }
    let name_cap = input_len.saturating_mul(4).max(1 << 24);
    let c = collect::collect(&root, src, order, name_cap)?;
    notes.extend(c.notes);
    let mut tensors = c.tensors;
    const PREFIX: &str = "model.";
    if !tensors.is_empty()
        && tensors
            .iter()
            .all(|t| t.name.len() > PREFIX.len() && t.name.starts_with(PREFIX))
    {
        for t in &mut tensors {
            t.name = t.name.get(PREFIX.len()..).unwrap_or_default().to_string();
        }
        notes.push(format!(
            "the `{PREFIX}` prefix shared by every tensor name was removed (Lightning checkpoint)"
        ));
    }
    let mut ck = Checkpoint::from_tensors(format, tensors, "pickle order (no graph)");
    ck.notes = notes;
    Ok(ck)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_recognises_torch_bytes() {
        assert!(sniff(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."));
        assert!(sniff(b"\x80\x02}q\x00."));
        assert!(!sniff(b"\x80"));
        assert!(!sniff(b"hello"));
        assert!(!sniff(b"PK\x03\x04"));
        let mut z = b"PK\x03\x04".to_vec();
        z.extend([0u8; 22]);
        z.extend(8u16.to_le_bytes());
        z.extend(0u16.to_le_bytes());
        z.extend(b"a/data.pkl");
        // name length 8 covers "a/data.p": not enough; the tail search finds it
        assert!(sniff(&z));
        let mut npz = b"PK\x03\x04".to_vec();
        npz.extend([0u8; 22]);
        npz.extend(5u16.to_le_bytes());
        npz.extend(0u16.to_le_bytes());
        npz.extend(b"x.npy");
        assert!(!sniff(&npz));
    }
}
