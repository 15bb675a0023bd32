//! The inert value tree produced by the pickle machine.
//!
//! Containers are reference counted so that memo entries are shared, never deep-cloned, and
//! interior-mutable because pickle opcodes mutate containers after they were memoized. Every
//! container drops its children iteratively, so that a deeply nested tree cannot overflow the
//! stack when it is freed.

use convlens_core::DType;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// A Python value as far as convlens needs to understand it.
#[derive(Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i128),
    /// An integer that does not fit in 128 bits.
    BigInt,
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Rc<Seq>),
    Tuple(Rc<Tup>),
    Set(Rc<Seq>),
    Dict(Rc<Dict>),
    /// A reference to a module attribute (`module.name`); never resolved or run.
    Global(Rc<Global>),
    /// An instance of a class, kept as data.
    Object(Rc<Object>),
    /// A storage reference from a persistent id.
    Storage(Rc<StorageRef>),
    /// A tensor view of a storage.
    Tensor(Rc<TensorDesc>),
    /// A tensor-like value convlens does not read, with the reason (quantized, sparse, ...).
    Skipped(Rc<str>),
    /// Any other value kept only by description (e.g. a legacy module source file).
    Opaque(Rc<str>),
}

/// A mutable sequence (list or set).
#[derive(Default)]
pub(crate) struct Seq(pub RefCell<Vec<Value>>);

/// An immutable tuple.
pub(crate) struct Tup(pub Vec<Value>);

/// `module.name` of a global.
#[derive(Debug)]
pub(crate) struct Global {
    pub module: Rc<str>,
    pub name: Rc<str>,
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// Hashable form of simple dict keys (strings, bytes, integers, None).
#[derive(PartialEq, Eq, Hash)]
pub(crate) enum KeyRepr {
    None,
    Int(i128),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

impl KeyRepr {
    /// The hashable form of `v` and the work needed to hash it, or `None` when `v` is not a
    /// simple key (such keys are never de-duplicated).
    pub fn of(v: &Value) -> Option<(KeyRepr, usize)> {
        match v {
            Value::None => Some((KeyRepr::None, 1)),
            Value::Bool(b) => Some((KeyRepr::Int(*b as i128), 1)),
            Value::Int(i) => Some((KeyRepr::Int(*i), 1)),
            Value::Str(s) => Some((KeyRepr::Str(Rc::clone(s)), 1 + s.len() / 32)),
            Value::Bytes(b) => Some((KeyRepr::Bytes(Rc::clone(b)), 1 + b.len() / 32)),
            _ => None,
        }
    }
}

/// An insertion-ordered dictionary.
#[derive(Default)]
pub(crate) struct DictData {
    pub entries: Vec<(Value, Value)>,
    index: HashMap<KeyRepr, usize>,
}

impl DictData {
    /// Sets `key` to `value` (replacing an equal simple key); returns the work spent hashing.
    pub fn insert(&mut self, key: Value, value: Value) -> usize {
        match KeyRepr::of(&key) {
            Some((repr, cost)) => {
                if let Some(&i) = self.index.get(&repr) {
                    if let Some(slot) = self.entries.get_mut(i) {
                        slot.1 = value;
                        return cost;
                    }
                }
                self.index.insert(repr, self.entries.len());
                self.entries.push((key, value));
                cost
            }
            None => {
                self.entries.push((key, value));
                1
            }
        }
    }

    /// The value of the string key `key`.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        let i = *self.index.get(&KeyRepr::Str(Rc::from(key)))?;
        self.entries.get(i).map(|e| &e.1)
    }
}

/// A dict (`dict`, `OrderedDict`, `defaultdict`, ...).
#[derive(Default)]
pub(crate) struct Dict(pub RefCell<DictData>);

/// An instance of a class that convlens keeps as inert data.
pub(crate) struct Object {
    pub class: Rc<Global>,
    /// Constructor arguments (NEWOBJ/INST/OBJ/REDUCE), kept for description only.
    pub args: Value,
    /// State set by BUILD (usually the instance `__dict__`).
    pub state: RefCell<Option<Value>>,
    /// Items added by SETITEM(S) (dict subclasses).
    pub dict_items: RefCell<DictData>,
    /// Items added by APPEND(S) (list subclasses).
    pub list_items: RefCell<Vec<Value>>,
}

impl Object {
    pub fn new(class: Rc<Global>, args: Value) -> Self {
        Object {
            class,
            args,
            state: RefCell::new(None),
            dict_items: RefCell::new(DictData::default()),
            list_items: RefCell::new(Vec::new()),
        }
    }
}

/// Element type of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StorageDtype {
    Known(DType),
    /// `torch.UntypedStorage`: raw bytes, the tensor gives the dtype.
    Untyped,
    /// A storage type convlens cannot interpret (complex, quantized...), with its name.
    Unsupported(String),
}

impl StorageDtype {
    /// Element size in bytes, when known.
    pub fn size(&self) -> Option<usize> {
        match self {
            StorageDtype::Known(d) => Some(d.size()),
            StorageDtype::Untyped => Some(1),
            StorageDtype::Unsupported(_) => None,
        }
    }
}

/// A storage named by a persistent id.
#[derive(Debug)]
pub(crate) struct StorageRef {
    pub dtype: StorageDtype,
    /// Key of the storage data (zip member name under `data/`, or legacy root key).
    pub key: String,
    /// Declared number of elements of the (root) storage.
    pub numel: i128,
    /// Legacy views: (view key, element offset, element count) into the root storage.
    pub view: Option<(String, i128, i128)>,
}

/// A tensor as described by a rebuild function; validated when collected.
#[derive(Debug)]
pub(crate) struct TensorDesc {
    pub storage: Rc<StorageRef>,
    /// Element type when it differs from the storage's (`_rebuild_tensor_v3`).
    pub dtype: Option<DType>,
    pub offset: i128,
    pub size: Vec<i128>,
    pub stride: Vec<i128>,
}

/// Moves the children of `v` into `out` when `v` holds the last reference to its container,
/// so that they are dropped by the caller's loop instead of recursively.
fn take_children(v: &mut Value, out: &mut Vec<Value>) {
    match v {
        Value::List(rc) | Value::Set(rc) => {
            if let Some(inner) = Rc::get_mut(rc) {
                out.append(inner.0.get_mut());
            }
        }
        Value::Tuple(rc) => {
            if let Some(inner) = Rc::get_mut(rc) {
                out.append(&mut inner.0);
            }
        }
        Value::Dict(rc) => {
            if let Some(inner) = Rc::get_mut(rc) {
                drain_dict(inner.0.get_mut(), out);
            }
        }
        Value::Object(rc) => {
            if let Some(inner) = Rc::get_mut(rc) {
                drain_object(inner, out);
            }
        }
        _ => {}
    }
}

fn drain_dict(d: &mut DictData, out: &mut Vec<Value>) {
    d.index.clear();
    for (k, v) in d.entries.drain(..) {
        out.push(k);
        out.push(v);
    }
}

fn drain_object(o: &mut Object, out: &mut Vec<Value>) {
    out.push(std::mem::replace(&mut o.args, Value::None));
    if let Some(s) = o.state.get_mut().take() {
        out.push(s);
    }
    drain_dict(o.dict_items.get_mut(), out);
    out.append(o.list_items.get_mut());
}

/// Drops `stack` and everything only it refers to, without recursion.
fn drop_iteratively(mut stack: Vec<Value>) {
    while let Some(mut v) = stack.pop() {
        take_children(&mut v, &mut stack);
        // `v` now has no children of its own (or is still shared) and drops shallowly.
    }
}

impl Drop for Seq {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(self.0.get_mut()));
    }
}

impl Drop for Tup {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(&mut self.0));
    }
}

impl Drop for Dict {
    fn drop(&mut self) {
        let mut out = Vec::new();
        drain_dict(self.0.get_mut(), &mut out);
        drop_iteratively(out);
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let mut out = Vec::new();
        drain_object(self, &mut out);
        drop_iteratively(out);
    }
}

impl Value {
    /// A short description for error messages (never recursive).
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::BigInt => "a very large integer".into(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => format!("string {:?}", truncate(s, 60)),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::List(l) => format!("a list of {} items", l.0.borrow().len()),
            Value::Tuple(t) => format!("a tuple of {} items", t.0.len()),
            Value::Set(s) => format!("a set of {} items", s.0.borrow().len()),
            Value::Dict(d) => format!("a dict of {} items", d.0.borrow().entries.len()),
            Value::Global(g) => format!("global `{g}`"),
            Value::Object(o) => format!("an object of class `{}`", o.class),
            Value::Storage(s) => format!("storage `{}`", s.key),
            Value::Tensor(_) => "a tensor".into(),
            Value::Skipped(r) => format!("a {r}"),
            Value::Opaque(r) => r.to_string(),
        }
    }

    /// The text of a `str` (or UTF-8 `bytes`, as Python 2 pickles store strings).
    pub fn as_text(&self) -> Option<Rc<str>> {
        match self {
            Value::Str(s) => Some(Rc::clone(s)),
            Value::Bytes(b) => std::str::from_utf8(b).ok().map(Rc::from),
            _ => None,
        }
    }

    /// The integer value (booleans count as 0/1, as in Python).
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn seq_items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.0.clone()),
            Value::List(l) => Some(l.0.borrow().clone()),
            _ => None,
        }
    }

    pub fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(Tup(items)))
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(Seq(RefCell::new(items))))
    }

    pub fn set(items: Vec<Value>) -> Value {
        Value::Set(Rc::new(Seq(RefCell::new(items))))
    }

    pub fn empty_dict() -> Value {
        Value::Dict(Rc::new(Dict::default()))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// At most `n` characters of `s`.
pub(crate) fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_drops_without_recursion() {
        let mut v = Value::list(vec![]);
        for _ in 0..1_000_000 {
            v = Value::list(vec![v]);
        }
        drop(v);
        let mut d = Value::empty_dict();
        for i in 0..200_000 {
            let Value::Dict(rc) = Value::empty_dict() else {
                unreachable!()
            };
            rc.0.borrow_mut().insert(Value::Int(i), d);
            d = Value::Dict(rc);
        }
        drop(d);
    }

    #[test]
    fn dict_keys_replace_and_keep_order() {
        let mut d = DictData::default();
        d.insert(Value::Str("a".into()), Value::Int(1));
        d.insert(Value::Str("b".into()), Value::Int(2));
        d.insert(Value::Str("a".into()), Value::Int(3));
        assert_eq!(d.entries.len(), 2);
        assert!(matches!(d.get_str("a"), Some(Value::Int(3))));
        assert!(matches!(d.entries[1].0, Value::Str(ref s) if &**s == "b"));
    }
}
