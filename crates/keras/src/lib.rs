//! Keras reader for convlens.
//!
//! Reads Keras 2 HDF5 files (`model.save("x.h5")`: `model_config` + `model_weights`, or
//! `save_weights`: per-layer groups at the root) and Keras 3 `.keras` archives (a zip with
//! `config.json` and `model.weights.h5`, weights at `layers/<layer>/vars/<i>`) into a
//! [`convlens_core::Checkpoint`] without a graph: the kernels of every `Conv2D`,
//! `DepthwiseConv2D` and `SeparableConv2D` layer (stored HWIO) as OIHW views, in the order of the
//! model config (the order of `layer_names` when there is no config). A separable layer gives
//! two layers, `<name>/depthwise` and `<name>/pointwise`.
//!
//! HDF5 is parsed by the pure-Rust `hdf5-pure` crate; every dataset's declared size is checked
//! against a cap proportional to the file before it is read.

use convlens_core::limits::{MAX_ELEMENTS, MAX_TENSORS};
use convlens_core::{Blob, Checkpoint, DType, Format, KernelLayout, NamedTensor, RawTensor};
use hdf5_pure::{AttrValue, File};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;

/// A dataset may declare at most this many bytes per byte of file (compressed data), plus
/// [`DATASET_BUDGET_BASE`].
pub const DATASET_BUDGET_PER_BYTE: usize = 64;
/// Fixed part of the dataset budget.
pub const DATASET_BUDGET_BASE: usize = 64 << 20;
/// Largest `config.json` / `model.weights.h5` member of a `.keras` archive read into memory.
pub const MAX_MEMBER_BYTES: u64 = 16 << 30;

/// Why a Keras file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KerasError {
    /// The HDF5 structure could not be parsed.
    #[error("HDF5: {0}")]
    Hdf5(String),
    /// The `.keras` zip archive is unusable.
    #[error("zip archive: {0}")]
    Zip(String),
    /// The model config is missing or not valid JSON.
    #[error("model config: {0}")]
    Config(String),
    /// A convolution layer's weights are missing or unusable.
    #[error("layer {layer:?}: {reason}")]
    Layer {
        /// Layer name.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// Datasets declare more data than the file can hold.
    #[error("dataset {name:?} declares {bytes} bytes, more than the limit of {limit} for a file of this size")]
    TooLarge {
        /// Dataset path.
        name: String,
        /// Declared bytes.
        bytes: u128,
        /// The limit.
        limit: usize,
    },
}

/// True when `bytes` start with the HDF5 signature.
pub fn sniff_h5(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89HDF\r\n\x1a\n")
}

/// The convolution classes read, with the weight roles of their kernels.
fn kernels_of(class: &str) -> Option<&'static [&'static str]> {
    Some(match class {
        "Conv2D" | "Convolution2D" => &["kernel"],
        "DepthwiseConv2D" => &["depthwise_kernel"],
        "SeparableConv2D" | "SeparableConvolution2D" => &["depthwise_kernel", "pointwise_kernel"],
        _ => return None,
    })
}

/// `(class, name)` of every layer of a Keras model config, in order (nested models flattened).
fn config_layers(cfg: &Value, out: &mut Vec<(String, String)>, depth: usize) {
    if depth > 16 {
        return;
    }
    let layers = cfg
        .get("config")
        .and_then(|c| c.get("layers").or(Some(c)))
        .and_then(Value::as_array);
    let Some(layers) = layers else {
        return;
    };
    for l in layers {
        let class = l.get("class_name").and_then(Value::as_str).unwrap_or("");
        let name = l
            .get("config")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if matches!(class, "Sequential" | "Functional" | "Model") {
            config_layers(l, out, depth + 1);
        } else {
            out.push((class.to_string(), name.to_string()));
        }
    }
}

struct Reader {
    file: File,
    limit: usize,
    tensors: Vec<NamedTensor>,
    notes: Vec<String>,
}

fn h5e(e: hdf5_pure::Error) -> KerasError {
    KerasError::Hdf5(e.to_string())
}

fn strings(v: &AttrValue) -> Option<Vec<String>> {
    match v {
        AttrValue::AsciiStringArray(a)
        | AttrValue::StringArray(a)
        | AttrValue::VarLenStringArray(a)
        | AttrValue::VarLenAsciiStringArray(a) => Some(a.clone()),
        AttrValue::AsciiStringArraySized { values, .. }
        | AttrValue::StringArraySized { values, .. } => Some(values.clone()),
        AttrValue::VarLenString(s)
        | AttrValue::String(s)
        | AttrValue::AsciiString(s)
        | AttrValue::VarLenAsciiString(s) => Some(vec![s.clone()]),
        AttrValue::AsciiStringSized { value, .. } => Some(vec![value.clone()]),
        _ => None,
    }
}

impl Reader {
    fn open(data: Vec<u8>) -> Result<Self, KerasError> {
        let limit = data
            .len()
            .saturating_mul(DATASET_BUDGET_PER_BYTE)
            .saturating_add(DATASET_BUDGET_BASE);
        let file = File::from_bytes(data).map_err(h5e)?;
        Ok(Reader {
            file,
            limit,
            tensors: Vec::new(),
            notes: Vec::new(),
        })
    }

    fn attr_strings(&self, group: &str, name: &str) -> Option<Vec<String>> {
        let attrs = if group.is_empty() {
            self.file.root().attrs().ok()?
        } else {
            self.file.group(group).ok()?.attrs().ok()?
        };
        attrs.get(name).and_then(strings)
    }

    /// The float32 values and shape of dataset `path`, after checking its declared size.
    fn dataset(&self, path: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let ds = self.file.dataset(path).map_err(|e| e.to_string())?;
        let shape: Vec<u64> = ds.shape().map_err(|e| e.to_string())?;
        let numel = shape
            .iter()
            .try_fold(1u128, |a, &d| a.checked_mul(u128::from(d)))
            .unwrap_or(u128::MAX);
        let bytes = numel.saturating_mul(8);
        if numel > MAX_ELEMENTS as u128 || bytes > self.limit as u128 {
            return Err(KerasError::TooLarge {
                name: path.to_string(),
                bytes,
                limit: self.limit,
            }
            .to_string());
        }
        let v = ds.read_f32().map_err(|e| e.to_string())?;
        if v.len() as u128 != numel {
            return Err(format!("{} values read, shape {shape:?}", v.len()));
        }
        Ok((shape.iter().map(|&d| d as usize).collect(), v))
    }

    /// Adds the HWIO kernel `values` of `shape` as an OIHW view named `name.weight`.
    fn add_kernel(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        values: &[f32],
        depthwise: bool,
    ) -> Result<(), String> {
        let [kh, kw, i, o] = shape[..] else {
            return Err(format!("kernel has shape {shape:?}, expected 4-D HWIO"));
        };
        // a depthwise kernel (kh, kw, in, multiplier) is the HWIO kernel (kh, kw, 1, in·m)
        let hwio = if depthwise {
            vec![kh, kw, 1, i.saturating_mul(o)]
        } else {
            shape
        };
        let t = RawTensor::contiguous(DType::F32, hwio, Blob::from_f32s(values))
            .map_err(|e| e.to_string())?;
        let v = KernelLayout::HWIO
            .oihw_view(&t)
            .map_err(|e| e.to_string())?;
        if self.tensors.len() >= MAX_TENSORS {
            return Err(format!("more than {MAX_TENSORS} kernels"));
        }
        self.tensors.push(NamedTensor {
            name: format!("{name}.weight"),
            tensor: v,
        });
        Ok(())
    }

    /// Reads the kernels of layer `name` (class `class`) given the dataset path of each weight
    /// role (`kernel`, `depthwise_kernel`, ...).
    fn layer(
        &mut self,
        class: &str,
        name: &str,
        paths: &HashMap<String, String>,
    ) -> Result<(), KerasError> {
        let Some(roles) = kernels_of(class) else {
            return Ok(());
        };
        let err = |reason: String| KerasError::Layer {
            layer: name.to_string(),
            reason,
        };
        for role in roles {
            let path = paths
                .get(*role)
                .ok_or_else(|| err(format!("no {role} weight")))?;
            let (shape, v) = self
                .dataset(path)
                .map_err(|e| err(format!("{path}: {e}")))?;
            let lname = if roles.len() == 2 {
                format!("{name}/{}", role.split('_').next().unwrap_or(role))
            } else {
                name.to_string()
            };
            self.add_kernel(&lname, shape, &v, *role == "depthwise_kernel")
                .map_err(|e| err(format!("{path}: {e}")))?;
        }
        Ok(())
    }
}

/// The role of a Keras 2 weight name: `conv2d/kernel:0` → `kernel`.
fn role(weight_name: &str) -> String {
    let base = weight_name.rsplit('/').next().unwrap_or(weight_name);
    base.split(':').next().unwrap_or(base).to_string()
}

/// Reads a Keras 2 HDF5 file (whole model or weights only).
pub fn read_h5(data: Vec<u8>) -> Result<Checkpoint, KerasError> {
    let mut r = Reader::open(data)?;
    let root = if r.file.group("model_weights").is_ok() {
        "model_weights"
    } else {
        ""
    };
    let layer_names = r.attr_strings(root, "layer_names").ok_or_else(|| {
        KerasError::Config("no `layer_names` attribute: not a Keras HDF5 file".into())
    })?;
    let config = r
        .attr_strings("", "model_config")
        .and_then(|v| v.into_iter().next());
    let layers: Vec<(String, String)> = match &config {
        Some(text) => {
            let cfg: Value =
                serde_json::from_str(text).map_err(|e| KerasError::Config(e.to_string()))?;
            let mut out = Vec::new();
            config_layers(&cfg, &mut out, 0);
            out
        }
        None => {
            r.notes.push(
                "no model config: layer order and classes from `layer_names` and weight names"
                    .into(),
            );
            Vec::new()
        }
    };
    let order_source;
    let list: Vec<(String, String)> = if layers.is_empty() {
        order_source = "Keras layer_names order";
        layer_names
            .iter()
            .map(|n| (String::new(), n.clone()))
            .collect()
    } else {
        order_source = "Keras model config order";
        layers
    };
    for (class, name) in list {
        let group = if root.is_empty() {
            name.clone()
        } else {
            format!("{root}/{name}")
        };
        let Some(wnames) = r.attr_strings(&group, "weight_names") else {
            // every layer of `layer_names` has a group with `weight_names`; other layers of
            // the config (an InputLayer) have no weights unless they are convolutions
            if layer_names.contains(&name) || kernels_of(&class).is_some() {
                return Err(KerasError::Layer {
                    layer: name,
                    reason: format!("no weights group {group:?} with `weight_names`"),
                });
            }
            continue;
        };
        let paths: HashMap<String, String> = wnames
            .iter()
            .map(|w| (role(w), format!("{group}/{w}")))
            .collect();
        let class = if class.is_empty() {
            // weights only: infer the class from the weight roles
            if paths.contains_key("pointwise_kernel") {
                "SeparableConv2D".to_string()
            } else if paths.contains_key("depthwise_kernel") {
                "DepthwiseConv2D".to_string()
            } else if paths.contains_key("kernel") {
                match r.file.dataset(&paths["kernel"]).and_then(|d| d.shape()) {
                    Ok(s) if s.len() == 4 => "Conv2D".to_string(),
                    _ => continue,
                }
            } else {
                continue;
            }
        } else {
            class
        };
        r.layer(&class, &name, &paths)?;
    }
    let version = r
        .attr_strings("", "keras_version")
        .or_else(|| r.attr_strings(root, "keras_version"))
        .and_then(|v| v.into_iter().next());
    let mut ck = Checkpoint::from_tensors(Format::KerasH5, r.tensors, order_source);
    ck.notes = r.notes;
    if let Some(v) = version {
        ck.metadata.push(("keras_version".into(), v));
    }
    Ok(ck)
}

fn member(
    z: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
) -> Result<Vec<u8>, KerasError> {
    let f = z
        .by_name(name)
        .map_err(|e| KerasError::Zip(format!("{name}: {e}")))?;
    if f.size() > MAX_MEMBER_BYTES {
        return Err(KerasError::Zip(format!(
            "{name} is {} bytes (at most {MAX_MEMBER_BYTES})",
            f.size()
        )));
    }
    let mut out = Vec::new();
    f.take(MAX_MEMBER_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| KerasError::Zip(format!("{name}: {e}")))?;
    Ok(out)
}

/// True when the zip member names are those of a Keras 3 archive.
pub fn is_keras_archive(names: &[String]) -> bool {
    names.iter().any(|n| n == "config.json") && names.iter().any(|n| n == "model.weights.h5")
}

/// Reads a Keras 3 `.keras` archive.
pub fn read_keras(data: &[u8]) -> Result<Checkpoint, KerasError> {
    convlens_core::zip_end::check_end_record(data).map_err(KerasError::Zip)?;
    zip::ZipArchive::new(convlens_core::zip_end::BoundedReader::new(data)).map_err(
        |e| match e {
            zip::result::ZipError::Io(io) => KerasError::Zip(format!("unreadable archive: {io}")),
            other => KerasError::Zip(other.to_string()),
        },
    )?;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(data))
        .map_err(|e| KerasError::Zip(e.to_string()))?;
    let cfg = member(&mut z, "config.json")?;
    let cfg: Value = serde_json::from_slice(&cfg).map_err(|e| KerasError::Config(e.to_string()))?;
    let weights = member(&mut z, "model.weights.h5")?;
    let mut r = Reader::open(weights)?;
    let mut layers = Vec::new();
    config_layers(&cfg, &mut layers, 0);
    if layers.is_empty() {
        return Err(KerasError::Config("config.json lists no layers".into()));
    }
    for (class, name) in layers {
        let Some(roles) = kernels_of(&class) else {
            continue;
        };
        let paths: HashMap<String, String> = roles
            .iter()
            .enumerate()
            .map(|(i, role)| (role.to_string(), format!("layers/{name}/vars/{i}")))
            .collect();
        r.layer(&class, &name, &paths)?;
    }
    let mut ck = Checkpoint::from_tensors(Format::Keras, r.tensors, "Keras model config order");
    ck.notes = r.notes;
    if let Ok(m) = member(&mut z, "metadata.json") {
        if let Some(v) = serde_json::from_slice::<Value>(&m).ok().and_then(|m| {
            m.get("keras_version")
                .and_then(Value::as_str)
                .map(str::to_string)
        }) {
            ck.metadata.push(("keras_version".into(), v));
        }
    }
    Ok(ck)
}
