//! Tensors and storages: storage persistent ids, tensor descriptions from the arguments of
//! the `_rebuild_tensor*` functions, and element types by storage class or dtype name.

use super::{PidStyle, Unpickler};
use crate::error::TorchError;
use crate::value::{Global, StorageDtype, StorageRef, TensorDesc, Value};
use convlens_core::DType;
use std::rc::Rc;

/// Element type named by a storage class (`torch.FloatStorage`) or a dtype (`torch.float32`).
pub(crate) fn storage_dtype(g: &Global) -> StorageDtype {
    let module = &*g.module;
    if !(module == "torch" || module == "torch.cuda" || module == "torch.storage") {
        return StorageDtype::Unsupported(g.to_string());
    }
    match &*g.name {
        "UntypedStorage" => StorageDtype::Untyped,
        name => match dtype_by_name(name.strip_suffix("Storage").unwrap_or(name)) {
            Some(d) => StorageDtype::Known(d),
            None => StorageDtype::Unsupported(g.to_string()),
        },
    }
}

/// Element type of a storage class stem (`Float`) or torch dtype name (`float32`).
pub(super) fn dtype_by_name(name: &str) -> Option<DType> {
    Some(match name {
        "Float" | "float32" | "float" => DType::F32,
        "Double" | "float64" | "double" => DType::F64,
        "Half" | "float16" | "half" => DType::F16,
        "BFloat16" | "bfloat16" => DType::BF16,
        "Long" | "int64" | "long" => DType::I64,
        "Int" | "int32" | "int" => DType::I32,
        "Short" | "int16" | "short" => DType::I16,
        "Char" | "int8" => DType::I8,
        "Byte" | "uint8" => DType::U8,
        "Bool" | "bool" => DType::Bool,
        _ => return None,
    })
}

fn int_list(v: &Value) -> Option<Vec<i128>> {
    match v {
        Value::Tuple(t) => t.0.iter().map(Value::as_int).collect(),
        Value::List(l) => l.0.borrow().iter().map(Value::as_int).collect(),
        _ => None,
    }
}

fn text_key(v: &Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        other => other.as_text().map(|s| s.to_string()),
    }
}

impl Unpickler<'_> {
    /// A tensor description from `_rebuild_tensor*` arguments.
    pub(super) fn rebuild(
        &mut self,
        g: &Global,
        args: &[Value],
        dtype: Option<DType>,
    ) -> Result<Value, TorchError> {
        let storage = match args.first() {
            Some(Value::Storage(s)) => Rc::clone(s),
            Some(skipped @ Value::Skipped(_)) => return Ok(skipped.clone()),
            other => {
                return Err(self.err(format!(
                    "`{g}`: first argument must be a storage (persistent id), got {}",
                    other.map(Value::describe).unwrap_or_default()
                )))
            }
        };
        if dtype.is_none() {
            if let StorageDtype::Unsupported(name) = &storage.dtype {
                return Ok(Value::Skipped(Rc::from(format!(
                    "tensor with unsupported storage type `{name}`"
                ))));
            }
        }
        let offset = args.get(1).and_then(Value::as_int).ok_or_else(|| {
            self.err(format!(
                "`{g}`: storage_offset must be an integer, got {}",
                args.get(1).map(Value::describe).unwrap_or_default()
            ))
        })?;
        let size = args.get(2).and_then(int_list).ok_or_else(|| {
            self.err(format!(
                "`{g}`: size must be a tuple of integers, got {}",
                args.get(2).map(Value::describe).unwrap_or_default()
            ))
        })?;
        let stride = args.get(3).and_then(int_list).ok_or_else(|| {
            self.err(format!(
                "`{g}`: stride must be a tuple of integers, got {}",
                args.get(3).map(Value::describe).unwrap_or_default()
            ))
        })?;
        self.charge(size.len() + stride.len())?;
        Ok(Value::Tensor(Rc::new(TensorDesc {
            storage,
            dtype,
            offset,
            size,
            stride,
        })))
    }

    pub(super) fn persistent_load(&mut self, pid: &Value) -> Result<Value, TorchError> {
        let Value::Tuple(t) = pid else {
            self.note(format!("persistent id {} ignored", pid.describe()));
            return Ok(Value::Opaque(Rc::from("an unknown persistent object")));
        };
        let items = &t.0;
        let kind = items.first().and_then(Value::as_text);
        match kind.as_deref() {
            Some("storage") => {}
            Some("module") => {
                return Ok(Value::Opaque(Rc::from("a module source record")));
            }
            _ => {
                self.note(format!(
                    "persistent id of kind {} ignored",
                    items.first().map(Value::describe).unwrap_or_default()
                ));
                return Ok(Value::Opaque(Rc::from("an unknown persistent object")));
            }
        }
        let expected = match self.pid_style {
            PidStyle::Zip => 5,
            PidStyle::Legacy => 6,
        };
        if items.len() < expected {
            return Err(self.err(format!(
                "storage persistent id has {} fields, expected {expected} \
                 ('storage', storage_type, key, location, numel{})",
                items.len(),
                if expected == 6 { ", view_metadata" } else { "" }
            )));
        }
        let dtype = match &items[1] {
            Value::Global(g) => storage_dtype(g),
            other => {
                return Err(self.err(format!(
                    "storage type must be a torch storage class, got {}",
                    other.describe()
                )))
            }
        };
        let key = text_key(&items[2]).ok_or_else(|| {
            self.err(format!(
                "storage key must be a string, got {}",
                items[2].describe()
            ))
        })?;
        let numel = items[4].as_int().ok_or_else(|| {
            self.err(format!(
                "storage size must be an integer, got {}",
                items[4].describe()
            ))
        })?;
        let view_meta = match self.pid_style {
            PidStyle::Legacy => items.get(5),
            PidStyle::Zip => None,
        };
        let view = match view_meta {
            None | Some(Value::None) => None,
            Some(v) => {
                let parts = v.seq_items().unwrap_or_default();
                match (
                    parts.first().and_then(text_key),
                    parts.get(1).and_then(Value::as_int),
                    parts.get(2).and_then(Value::as_int),
                ) {
                    (Some(k), Some(o), Some(n)) if parts.len() == 3 => Some((k, o, n)),
                    _ => {
                        return Err(self.err(format!(
                            "storage view metadata must be (view_key, offset, size), got {}",
                            v.describe()
                        )))
                    }
                }
            }
        };
        self.charge(1 + key.len() / 32)?;
        let s = Rc::new(StorageRef {
            dtype,
            key,
            numel,
            view,
        });
        self.storages.push(Rc::clone(&s));
        Ok(Value::Storage(s))
    }
}
