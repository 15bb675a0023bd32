//! PyTorch checkpoint reader for convlens.
//!
//! Reads `torch.save` zip archives (torch >= 1.6), legacy streams (torch < 1.6, including
//! Python 2 pickles), Lightning `.ckpt` files, TorchScript archives and whole pickled
//! `nn.Module`s into a [`convlens_core::Checkpoint`] whose tensors point into the input buffer.
//!
//! The pickle is parsed by an inert machine, never executed: globals that can only serve to
//! run code are refused, and only tensor-rebuilding functions and plain containers may be
//! "called".
//!
//! **Which tensors are the model.** A training checkpoint holds more than the model: optimizer
//! states (Adam moments and momentum buffers have the weights' shapes), schedulers, GradScaler
//! state, metrics, hyper-parameters, sometimes several models. The model is found by
//! structure, not by key names: every dict holding tensors of at least one dimension directly
//! (a state dict) and every pickled module is a candidate; a container with `state` and
//! `param_groups` (or a `torch.optim` object) is an optimizer state and never read; other
//! containers are searched. The default candidate is the first in file order that holds a
//! 4-D tensor and is not an averaged copy (a name component `ema`, `swa`, `avg`, `averaged`,
//! `shadow`), else the first holding a 4-D tensor; [`ReadOptions::entry`] picks another. The
//! notes name the entry read and the other candidates; the metadata keys [`META_ENTRY`] and
//! [`META_ENTRIES`] hold them too.

mod archive;
mod collect;
mod entries;
mod error;
mod legacy;
mod pickle;
mod policy;
mod value;

pub use error::TorchError;

use collect::StorageSource;
use convlens_core::{Blob, ByteOrder, Checkpoint, Format};
use value::Value;

/// How to read a PyTorch file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The checkpoint entry holding the model, as a dotted path of keys (`net`, `model_ema`,
    /// `G`, `callbacks.EMACallback.ema_state_dict`; `(root)` for the whole file); `None` takes
    /// the default candidate (see the crate documentation). The entries of a file are listed in
    /// its notes and under [`META_ENTRIES`].
    pub entry: Option<String>,
}

/// Reads a PyTorch file (zip archive, TorchScript archive, legacy stream or plain pickle),
/// taking the default model entry of a checkpoint.
pub fn read(data: Blob) -> Result<Checkpoint, TorchError> {
    read_with(data, &ReadOptions::default())
}

/// Reads a PyTorch file with options (which entry of a checkpoint holds the model).
pub fn read_with(data: Blob, opts: &ReadOptions) -> Result<Checkpoint, TorchError> {
    let bytes = data.as_slice();
    if bytes.is_empty() {
        return Err(TorchError::Empty);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return archive::read_zip(data, opts);
    }
    if bytes.first() == Some(&0x80) {
        return legacy::read_stream(data, opts);
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

/// Wrapper prefixes removed when every tensor name starts with one: `nn.DataParallel` /
/// DistributedDataParallel (`module.`), `torch.compile` (`_orig_mod.`), Lightning (`model.`).
pub const WRAPPER_PREFIXES: [&str; 3] = ["module.", "_orig_mod.", "model."];

/// Metadata key of the checkpoint entry the model was read from (empty: the whole file).
pub const META_ENTRY: &str = "entry";

/// Metadata key of every candidate model entry of the file, one per line (names may hold
/// commas), the one read first.
pub const META_ENTRIES: &str = "entries";

/// Descends into the model part of a checkpoint and collects its tensors.
pub(crate) fn finish(
    p: Parsed,
    src: &mut dyn StorageSource,
    opts: &ReadOptions,
) -> Result<Checkpoint, TorchError> {
    let Parsed {
        format,
        root,
        order,
        mut notes,
        input_len,
    } = p;
    let survey = entries::survey(&root)?;
    let names = |skip: usize| -> Vec<String> {
        survey
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, c)| entries::display(&c.name))
            .collect()
    };
    let chosen = match &opts.entry {
        Some(want) => {
            let want_trim = want.trim();
            let found = survey
                .candidates
                .iter()
                .position(|c| c.name == want_trim || (c.name.is_empty() && want_trim == "(root)"));
            match found {
                Some(i) => Some(i),
                None => {
                    return Err(TorchError::NoEntry {
                        entry: want.clone(),
                        candidates: if survey.candidates.is_empty() {
                            "none".to_string()
                        } else {
                            let all = names(usize::MAX);
                            let mut list: Vec<String> = all.iter().take(20).cloned().collect();
                            if all.len() > 20 {
                                list.push(format!("... ({} in all)", all.len()));
                            }
                            list.join(", ")
                        },
                    })
                }
            }
        }
        None => survey.default_index(),
    };
    let mut metadata = Vec::new();
    let mut tensors = Vec::new();
    if let Some(i) = chosen {
        let c = &survey.candidates[i];
        let others = names(i);
        if !c.name.is_empty() || !others.is_empty() {
            let how = if opts.entry.is_some() {
                "as asked"
            } else {
                "the default"
            };
            let mut note = format!(
                "tensors taken from the {} entry ({how}; {} tensors)",
                entries::display(&c.name),
                c.tensors
            );
            if !others.is_empty() {
                let mut list: Vec<String> = others.iter().take(20).cloned().collect();
                if others.len() > 20 {
                    list.push(format!("... ({} in all)", others.len()));
                }
                note.push_str(&format!(
                    "; other candidate models: {} (choose one with --entry NAME)",
                    list.join(", ")
                ));
            }
            notes.push(note);
        }
        let mut all = vec![c.name.clone()];
        all.extend(
            survey
                .candidates
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, c)| c.name.clone()),
        );
        metadata.push((META_ENTRY.to_string(), c.name.clone()));
        metadata.push((META_ENTRIES.to_string(), all.join("\n")));
        let name_cap = input_len.saturating_mul(4).max(1 << 24);
        let col = collect::collect(&c.value, src, order, name_cap)?;
        notes.extend(col.notes);
        tensors = col.tensors;
    }
    if !survey.optimizers.is_empty() {
        let list: Vec<String> = survey
            .optimizers
            .iter()
            .take(5)
            .map(|p| entries::display(p))
            .collect();
        notes.push(format!(
            "optimizer state not read (its moments and momentum buffers have the weights' shapes but are not weights): {}{}",
            list.join(", "),
            if survey.optimizers.len() > 5 { ", ..." } else { "" }
        ));
    }
    strip_wrapper_prefixes(&mut tensors, &mut notes);
    let mut ck = Checkpoint::from_tensors(format, tensors, "pickle order (no graph)");
    ck.notes = notes;
    ck.metadata = metadata;
    Ok(ck)
}

/// Removes the wrapper prefixes ([`WRAPPER_PREFIXES`]) shared by every tensor name, repeatedly
/// (`module._orig_mod.conv1.weight` → `conv1.weight`). 0-d tensors (counters such as
/// `AveragedModel`'s `n_averaged`) need not have the prefix.
fn strip_wrapper_prefixes(tensors: &mut [convlens_core::NamedTensor], notes: &mut Vec<String>) {
    let mut removed = String::new();
    let has =
        |t: &convlens_core::NamedTensor, p: &str| t.name.len() > p.len() && t.name.starts_with(p);
    while let Some(prefix) = WRAPPER_PREFIXES.iter().find(|p| {
        tensors.iter().any(|t| !t.tensor.shape().is_empty())
            && tensors
                .iter()
                .all(|t| t.tensor.shape().is_empty() || has(t, p))
    }) {
        for t in tensors.iter_mut() {
            if has(t, prefix) {
                t.name = t.name.get(prefix.len()..).unwrap_or_default().to_string();
            }
        }
        removed.push_str(prefix);
    }
    if !removed.is_empty() {
        notes.push(format!(
            "the `{removed}` prefix shared by every tensor name was removed (DataParallel `module.`, torch.compile `_orig_mod.`, Lightning `model.`)"
        ));
    }
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
