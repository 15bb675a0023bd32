//! Stage 1 — read: open a checkpoint file of any supported format.
//!
//! The format is detected from the content (magic bytes), the extension only breaks ties.

use convlens_core::{Blob, Checkpoint};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a file could not be read; always names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: ReadErrorKind,
}

/// What went wrong while reading a file.
#[derive(Debug, thiserror::Error)]
pub enum ReadErrorKind {
    /// The file could not be opened or mapped.
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is empty.
    #[error("file is empty")]
    Empty,
    /// The content matches no supported format.
    #[error("unrecognised file format (first bytes: {0}); supported: ONNX, PyTorch (.pt/.pth/.bin/.ckpt, zip, legacy, TorchScript), safetensors, NumPy .npy/.npz, TFLite, Keras .h5/.keras")]
    UnknownFormat(String),
    /// A recognised format convlens cannot read yet.
    #[error("{0} files are not supported yet")]
    Unsupported(&'static str),
    /// A checkpoint entry was asked for in a file that holds a single model.
    #[error("entry `{entry}` was asked for, but {format} files hold a single model (entries exist only in PyTorch checkpoints)")]
    NoEntries {
        /// Format name.
        format: &'static str,
        /// The entry asked for.
        entry: String,
    },
    /// The format reader rejected the content.
    #[error("invalid {format} file: {source}")]
    Format {
        /// Format name.
        format: &'static str,
        /// The reader's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The container formats convlens can detect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// ONNX protobuf.
    Onnx,
    /// Any PyTorch file (zip, legacy stream, TorchScript, raw pickle).
    Torch,
    /// safetensors.
    Safetensors,
    /// NumPy `.npy`.
    Npy,
    /// NumPy `.npz` (a zip of `.npy` members).
    Npz,
    /// TensorFlow Lite flatbuffer.
    TfLite,
    /// Keras 2 HDF5 (`.h5`).
    KerasH5,
    /// Keras 3 archive (`.keras`: a zip with `config.json` and `model.weights.h5`).
    Keras,
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Detected::Onnx => "ONNX",
            Detected::Torch => "PyTorch",
            Detected::Safetensors => "safetensors",
            Detected::Npy => "NumPy .npy",
            Detected::Npz => "NumPy .npz",
            Detected::TfLite => "TFLite",
            Detected::KerasH5 => "Keras .h5",
            Detected::Keras => "Keras .keras",
        })
    }
}

fn is_zip(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06")
}

/// Names of the members of a zip archive, from its central directory (empty on error).
fn zip_names(b: &[u8]) -> Vec<String> {
    if convlens_core::zip_end::check_end_record(b).is_err()
        || zip::ZipArchive::new(convlens_core::zip_end::BoundedReader::new(b)).is_err()
    {
        return Vec::new();
    }
    match zip::ZipArchive::new(std::io::Cursor::new(b)) {
        Ok(z) => z.file_names().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// Detects the format of `bytes`; `path` (its extension) breaks ties.
pub fn detect(path: &Path, bytes: &[u8]) -> Option<Detected> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if convlens_tflite::sniff(bytes) {
        return Some(Detected::TfLite);
    }
    if convlens_keras::sniff_h5(bytes) {
        return Some(Detected::KerasH5);
    }
    if convlens_numpy::sniff_npy(bytes) {
        return Some(Detected::Npy);
    }
    if is_zip(bytes) {
        let names = zip_names(bytes);
        if convlens_keras::is_keras_archive(&names) {
            return Some(Detected::Keras);
        }
        let npz = !names.is_empty() && names.iter().all(|n| n.ends_with(".npy"));
        if npz || (names.is_empty() && ext == "npz") {
            return Some(Detected::Npz);
        }
        return Some(Detected::Torch);
    }
    if convlens_safetensors::sniff(bytes) {
        return Some(Detected::Safetensors);
    }
    if convlens_torch::sniff(bytes) {
        return Some(Detected::Torch);
    }
    if convlens_onnx::sniff(bytes) {
        return Some(Detected::Onnx);
    }
    match ext.as_str() {
        "onnx" => Some(Detected::Onnx),
        "safetensors" => Some(Detected::Safetensors),
        "pt" | "pth" | "bin" | "ckpt" | "tar" => Some(Detected::Torch),
        "npy" => Some(Detected::Npy),
        "npz" => Some(Detected::Npz),
        "tflite" => Some(Detected::TfLite),
        "h5" | "hdf5" => Some(Detected::KerasH5),
        "keras" => Some(Detected::Keras),
        _ => None,
    }
}

fn map_file(path: &Path) -> Result<Blob, ReadErrorKind> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(ReadErrorKind::Empty);
    }
    // SAFETY: the map is read-only; convlens never writes the file. A concurrent truncation by
    // another process is the usual caveat of memory maps and outside our control.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    // a file map, so that the pages of measured tensors can be handed back (`Blob::release`)
    Ok(Blob::from_mmap(map))
}

fn format_err<E: std::error::Error + Send + Sync + 'static>(
    format: &'static str,
) -> impl FnOnce(E) -> ReadErrorKind {
    move |e| ReadErrorKind::Format {
        format,
        source: Box::new(e),
    }
}

fn hex_prefix(b: &[u8]) -> String {
    let n = b.len().min(8);
    let hex: Vec<String> = b[..n].iter().map(|x| format!("{x:02x}")).collect();
    hex.join(" ")
}

/// How to read a model file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The entry of a PyTorch checkpoint holding the model (`net`, `model_ema`, `G`, a dotted
    /// path such as `callbacks.EMACallback.ema_state_dict`); `None` takes the default
    /// candidate (documented in `convlens_torch`). Files of other formats refuse an entry
    /// other than `None` or `(root)`.
    pub entry: Option<String>,
}

impl ReadOptions {
    /// Options reading the given entry (`None` or an empty name: the default).
    pub fn entry(entry: Option<&str>) -> Self {
        ReadOptions {
            entry: entry
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
        }
    }
}

/// The checkpoint entry the model was read from (empty for the whole file, `None` for formats
/// without entries).
pub fn entry_of(ckpt: &Checkpoint) -> Option<&str> {
    ckpt.metadata
        .iter()
        .find(|(k, _)| k == convlens_torch::META_ENTRY)
        .map(|(_, v)| v.as_str())
}

/// Every candidate model entry of a checkpoint, the one read first (empty for formats without
/// entries).
pub fn entries_of(ckpt: &Checkpoint) -> Vec<String> {
    ckpt.metadata
        .iter()
        .find(|(k, _)| k == convlens_torch::META_ENTRIES)
        .map(|(_, v)| v.split('\n').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Reads an in-memory file (`path` is used for messages, the extension and external data).
pub fn read_bytes(path: &Path, data: Blob) -> Result<Checkpoint, ReadError> {
    read_bytes_with(path, data, &ReadOptions::default())
}

/// [`read_bytes`] with options.
pub fn read_bytes_with(
    path: &Path,
    data: Blob,
    opts: &ReadOptions,
) -> Result<Checkpoint, ReadError> {
    let wrap = |kind| ReadError {
        path: path.to_path_buf(),
        kind,
    };
    if data.is_empty() {
        return Err(wrap(ReadErrorKind::Empty));
    }
    let detected = detect(path, data.as_slice())
        .ok_or_else(|| wrap(ReadErrorKind::UnknownFormat(hex_prefix(data.as_slice()))))?;
    if let Some(entry) = opts.entry.as_deref() {
        if detected != Detected::Torch && entry != "(root)" {
            return Err(wrap(ReadErrorKind::NoEntries {
                format: match detected {
                    Detected::Onnx => "ONNX",
                    Detected::Safetensors => "safetensors",
                    Detected::Npy => "NumPy .npy",
                    Detected::Npz => "NumPy .npz",
                    _ => "these",
                },
                entry: entry.to_string(),
            }));
        }
    }
    let torch_opts = convlens_torch::ReadOptions {
        entry: opts.entry.clone(),
    };
    let res = match detected {
        Detected::Onnx => {
            let dir = path.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            });
            convlens_onnx::read(data, dir).map_err(format_err("ONNX"))
        }
        Detected::Torch => {
            convlens_torch::read_with(data, &torch_opts).map_err(format_err("PyTorch"))
        }
        Detected::Safetensors => {
            convlens_safetensors::read(data).map_err(format_err("safetensors"))
        }
        Detected::Npy => convlens_numpy::read_npy(data).map_err(format_err("NumPy .npy")),
        Detected::Npz => convlens_numpy::read_npz(data).map_err(format_err("NumPy .npz")),
        Detected::TfLite => convlens_tflite::read(data).map_err(format_err("TFLite")),
        Detected::KerasH5 => {
            convlens_keras::read_h5(data.as_slice().to_vec()).map_err(format_err("Keras .h5"))
        }
        Detected::Keras => {
            convlens_keras::read_keras(data.as_slice()).map_err(format_err("Keras .keras"))
        }
    };
    res.map_err(wrap)
}

/// Opens and parses a checkpoint file.
pub fn read(path: &Path) -> Result<Checkpoint, ReadError> {
    read_with(path, &ReadOptions::default())
}

/// Opens and parses a checkpoint file with options (which checkpoint entry holds the model).
pub fn read_with(path: &Path, opts: &ReadOptions) -> Result<Checkpoint, ReadError> {
    let data = map_file(path).map_err(|kind| ReadError {
        path: path.to_path_buf(),
        kind,
    })?;
    read_bytes_with(path, data, opts)
}

/// File extensions convlens treats as model files when scanning folders.
pub const MODEL_EXTENSIONS: &[&str] = &[
    "onnx",
    "pt",
    "pth",
    "bin",
    "ckpt",
    "safetensors",
    "npy",
    "npz",
    "tflite",
    "h5",
    "keras",
];

/// The name of a model from its file name: the file name without its format suffixes
/// (`resnet20_robust_s0.legacy.pt` → `resnet20_robust_s0`).
pub fn model_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = file.as_str();
    // strip the extension, then known format qualifiers
    if let Some((stem, ext)) = name.rsplit_once('.') {
        if MODEL_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
            name = stem;
        }
    }
    for q in [
        ".legacy",
        ".torchscript",
        ".module",
        ".fp16",
        ".bf16",
        ".fp32",
        ".half",
        ".jit",
    ] {
        if let Some(s) = name.strip_suffix(q) {
            name = s;
            break;
        }
    }
    name.to_string()
}

/// All model files under `dir` (recursively, by [`MODEL_EXTENSIONS`]), sorted by path.
pub fn find_models(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let p = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MODEL_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_drop_format_suffixes() {
        for (f, n) in [
            ("a/resnet20_robust_s0.legacy.pt", "resnet20_robust_s0"),
            ("wrn16_2_robust_s0.bf16.safetensors", "wrn16_2_robust_s0"),
            ("x.onnx", "x"),
            ("my.model.v2", "my.model.v2"),
        ] {
            assert_eq!(model_name(Path::new(f)), n);
        }
    }
}
