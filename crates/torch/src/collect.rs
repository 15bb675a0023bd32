//! Walks a value tree in order and turns every tensor into a validated [`NamedTensor`].

use crate::error::TorchError;
use crate::value::{Dict, DictData, Object, StorageDtype, StorageRef, TensorDesc, Value};
use convlens_core::limits::{MAX_NAME_LEN, MAX_TENSORS};
use convlens_core::{Blob, ByteOrder, DType, NamedTensor, RawTensor};
use std::collections::HashSet;
use std::rc::Rc;

/// Deepest nesting of containers the walk follows.
pub(crate) const MAX_DEPTH: usize = 1000;

/// Object attributes that hold a module's parameters, buffers and children; they are not part of
/// state-dict names.
const MODULE_COMPONENTS: &[&str] = &["_parameters", "_buffers", "_modules"];

/// Where storage bytes come from (archive members, legacy stream records).
pub(crate) trait StorageSource {
    /// The bytes of storage `s` (the view's bytes for legacy views).
    fn bytes(&mut self, s: &StorageRef) -> Result<Blob, TorchError>;
}

/// Tensors found in a value tree and remarks about what was skipped.
pub(crate) struct Collected {
    pub tensors: Vec<NamedTensor>,
    pub notes: Vec<String>,
}

struct Walker<'s> {
    src: &'s mut dyn StorageSource,
    order: ByteOrder,
    out: Vec<NamedTensor>,
    notes: Vec<String>,
    skipped: Vec<String>,
    visited: HashSet<usize>,
    classes: Vec<String>,
    class_set: HashSet<String>,
    shared: usize,
    optimizers: usize,
    name_bytes: usize,
    name_cap: usize,
}

/// Collects the tensors of `root` in order of appearance. `name_cap` bounds the total bytes
/// of all names (hostile trees can repeat one tensor under long paths).
pub(crate) fn collect(
    root: &Value,
    src: &mut dyn StorageSource,
    order: ByteOrder,
    name_cap: usize,
) -> Result<Collected, TorchError> {
    let mut w = Walker {
        src,
        order,
        out: Vec::new(),
        notes: Vec::new(),
        skipped: Vec::new(),
        visited: HashSet::new(),
        classes: Vec::new(),
        class_set: HashSet::new(),
        shared: 0,
        optimizers: 0,
        name_bytes: 0,
        name_cap,
    };
    let mut path = Vec::new();
    w.walk(root, &mut path, 0, None)?;
    if !w.skipped.is_empty() {
        let n = w.skipped.len();
        let mut list: Vec<String> = w.skipped.iter().take(10).cloned().collect();
        if n > 10 {
            list.push(format!("... ({} more)", n - 10));
        }
        w.notes
            .push(format!("{n} tensor(s) not read: {}", list.join("; ")));
    }
    if !w.classes.is_empty() {
        let n = w.classes.len();
        let mut list: Vec<String> = w.classes.iter().take(5).map(|c| format!("`{c}`")).collect();
        if n > 5 {
            list.push(format!("... ({n} classes in all)"));
        }
        w.notes.push(format!(
            "pickled objects read as inert data (their code is never run): {}",
            list.join(", ")
        ));
    }
    if w.shared > 0 {
        w.notes.push(format!(
            "{} container(s) referenced more than once; their tensors are listed under the first name only",
            w.shared
        ));
    }
    if w.optimizers > 0 {
        w.notes.push(format!(
            "{} optimizer state(s) inside the model entry not read (their moments and momentum buffers are not weights)",
            w.optimizers
        ));
    }
    Ok(Collected {
        tensors: w.out,
        notes: w.notes,
    })
}

fn key_component(k: &Value) -> Rc<str> {
    match k {
        Value::Str(s) => Rc::clone(s),
        Value::Int(i) => Rc::from(i.to_string()),
        Value::Bool(b) => Rc::from(if *b { "True" } else { "False" }),
        Value::Bytes(b) => Rc::from(String::from_utf8_lossy(b)),
        Value::None => Rc::from("None"),
        other => Rc::from(format!("<{}>", other.describe())),
    }
}

fn to_usize(v: i128, what: &str, name: &str) -> Result<usize, TorchError> {
    usize::try_from(v).map_err(|_| TorchError::BadTensor {
        name: name.to_string(),
        msg: if v < 0 {
            format!("negative {what} {v}")
        } else {
            format!("{what} {v} is too large")
        },
    })
}

impl Walker<'_> {
    fn first_visit(&mut self, ptr: usize) -> bool {
        if self.visited.insert(ptr) {
            true
        } else {
            self.shared += 1;
            false
        }
    }

    fn name(&self, path: &[Rc<str>]) -> String {
        let mut s = String::new();
        for (i, p) in path.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(p);
        }
        s
    }

    fn name_len(path: &[Rc<str>]) -> usize {
        path.iter().fold(path.len().saturating_sub(1), |a, p| {
            a.saturating_add(p.len())
        })
    }

    fn walk(
        &mut self,
        v: &Value,
        path: &mut Vec<Rc<str>>,
        depth: usize,
        skip_keys: Option<&HashSet<Rc<str>>>,
    ) -> Result<(), TorchError> {
        if depth > MAX_DEPTH {
            return Err(TorchError::Limit(format!(
                "the pickled value is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        match v {
            Value::Tensor(t) => self.emit(t, path),
            Value::Skipped(reason) => {
                if self.skipped.len() < 100_000 {
                    let name = self.short_name(path);
                    self.skipped.push(format!("`{name}` ({reason})"));
                }
                Ok(())
            }
            Value::Dict(d) => {
                if !self.first_visit(Rc::as_ptr(d) as usize) {
                    return Ok(());
                }
                let d = d.0.borrow();
                if crate::entries::is_optimizer_state(&d) {
                    self.optimizers += 1;
                    return Ok(());
                }
                self.walk_entries(&d, path, depth, skip_keys, false)
            }
            Value::List(l) => {
                if !self.first_visit(Rc::as_ptr(l) as usize) {
                    return Ok(());
                }
                let items = l.0.borrow();
                self.walk_items(&items, path, depth)
            }
            Value::Tuple(t) => {
                if !self.first_visit(Rc::as_ptr(t) as usize) {
                    return Ok(());
                }
                self.walk_items(&t.0, path, depth)
            }
            Value::Object(o) => {
                if !self.first_visit(Rc::as_ptr(o) as usize) {
                    return Ok(());
                }
                if crate::entries::is_optimizer_object(o) {
                    self.optimizers += 1;
                    return Ok(());
                }
                let class = o.class.to_string();
                if self.class_set.len() < 10_000 && self.class_set.insert(class.clone()) {
                    self.classes.push(class);
                }
                self.walk_object(o, path, depth)
            }
            _ => Ok(()),
        }
    }

    fn walk_items(
        &mut self,
        items: &[Value],
        path: &mut Vec<Rc<str>>,
        depth: usize,
    ) -> Result<(), TorchError> {
        for (i, item) in items.iter().enumerate() {
            // scalars are common in lists (sizes, hyper-parameters): skip them cheaply
            if !matches!(
                item,
                Value::Tensor(_)
                    | Value::Skipped(_)
                    | Value::Dict(_)
                    | Value::List(_)
                    | Value::Tuple(_)
                    | Value::Object(_)
            ) {
                continue;
            }
            path.push(Rc::from(i.to_string()));
            let r = self.walk(item, path, depth + 1, None);
            path.pop();
            r?;
        }
        Ok(())
    }

    fn walk_entries(
        &mut self,
        d: &DictData,
        path: &mut Vec<Rc<str>>,
        depth: usize,
        skip_keys: Option<&HashSet<Rc<str>>>,
        module_state: bool,
    ) -> Result<(), TorchError> {
        // a module's non-persistent buffers are not part of its state dict
        let non_persistent: Option<HashSet<Rc<str>>> = if module_state {
            d.get_str("_non_persistent_buffers_set")
                .and_then(|s| match s {
                    Value::Set(s) => Some(s.0.borrow().iter().filter_map(Value::as_text).collect()),
                    _ => None,
                })
                .filter(|s: &HashSet<Rc<str>>| !s.is_empty())
        } else {
            None
        };
        for (k, v) in &d.entries {
            let comp = key_component(k);
            if skip_keys.is_some_and(|s| s.contains(&comp)) {
                continue;
            }
            let transparent = module_state && MODULE_COMPONENTS.contains(&&*comp);
            let child_skip = if module_state && &*comp == "_buffers" {
                non_persistent.as_ref()
            } else {
                None
            };
            if !transparent {
                path.push(comp);
            }
            let r = self.walk(v, path, depth + 1, child_skip);
            if !transparent {
                path.pop();
            }
            r?;
        }
        Ok(())
    }

    fn walk_object(
        &mut self,
        o: &Object,
        path: &mut Vec<Rc<str>>,
        depth: usize,
    ) -> Result<(), TorchError> {
        let state = o.state.borrow();
        match &*state {
            Some(Value::Dict(d)) => self.walk_state_dict(d, path, depth)?,
            // (instance dict, slots dict)
            Some(Value::Tuple(t)) if t.0.len() == 2 => {
                for part in &t.0 {
                    match part {
                        Value::Dict(d) => self.walk_state_dict(d, path, depth)?,
                        other => self.walk(other, path, depth + 1, None)?,
                    }
                }
            }
            Some(other) => self.walk(other, path, depth + 1, None)?,
            None => {}
        }
        drop(state);
        let items = o.dict_items.borrow();
        self.walk_entries(&items, path, depth + 1, None, false)?;
        drop(items);
        let list = o.list_items.borrow();
        self.walk_items(&list, path, depth + 1)
    }

    /// The attribute dict of an object: `_parameters`/`_buffers`/`_modules` are transparent.
    fn walk_state_dict(
        &mut self,
        d: &Rc<Dict>,
        path: &mut Vec<Rc<str>>,
        depth: usize,
    ) -> Result<(), TorchError> {
        if !self.first_visit(Rc::as_ptr(d) as usize) {
            return Ok(());
        }
        let d = d.0.borrow();
        self.walk_entries(&d, path, depth + 1, None, true)
    }

    fn short_name(&self, path: &[Rc<str>]) -> String {
        let n = self.name(path);
        crate::value::truncate(&n, 200)
    }

    fn emit(&mut self, t: &TensorDesc, path: &[Rc<str>]) -> Result<(), TorchError> {
        let len = Self::name_len(path);
        if len > MAX_NAME_LEN {
            return Err(TorchError::Limit(format!(
                "a tensor name is {len} bytes long (at most {MAX_NAME_LEN})"
            )));
        }
        self.name_bytes = self.name_bytes.saturating_add(len);
        if self.name_bytes > self.name_cap {
            return Err(TorchError::Limit(format!(
                "tensor names add up to more than {} bytes",
                self.name_cap
            )));
        }
        if self.out.len() >= MAX_TENSORS {
            return Err(TorchError::Limit(format!(
                "more than {MAX_TENSORS} tensors"
            )));
        }
        let name = if path.is_empty() {
            "tensor".to_string()
        } else {
            self.name(path)
        };
        let tensor = build_tensor(t, &name, self.src, self.order)?;
        self.out.push(NamedTensor { name, tensor });
        Ok(())
    }
}

/// Validates a tensor description against its storage.
fn build_tensor(
    t: &TensorDesc,
    name: &str,
    src: &mut dyn StorageSource,
    order: ByteOrder,
) -> Result<RawTensor, TorchError> {
    let dtype = match (t.dtype, &t.storage.dtype) {
        (Some(d), _) => d,
        (None, StorageDtype::Known(d)) => *d,
        (None, StorageDtype::Untyped) => DType::U8,
        (None, StorageDtype::Unsupported(n)) => {
            return Err(TorchError::BadTensor {
                name: name.to_string(),
                msg: format!("unsupported storage type `{n}`"),
            })
        }
    };
    let offset = to_usize(t.offset, "storage offset", name)?;
    let shape = t
        .size
        .iter()
        .map(|&d| to_usize(d, "size", name))
        .collect::<Result<Vec<_>, _>>()?;
    let strides = t
        .stride
        .iter()
        .map(|&d| to_usize(d, "stride", name))
        .collect::<Result<Vec<_>, _>>()?;
    let blob = src.bytes(&t.storage)?;
    RawTensor::strided(dtype, shape, strides, offset, order, blob).map_err(|source| {
        TorchError::Tensor {
            name: name.to_string(),
            source,
        }
    })
}
