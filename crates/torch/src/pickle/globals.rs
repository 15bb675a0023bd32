//! Globals and calls: a GLOBAL is refused when denied, else kept as a name; REDUCE, INST, OBJ
//! and NEWOBJ only "call" the inert callables of the allow list (tensor rebuilds, containers)
//! and keep other instances as data, with rebuilds nested at most one level.

use super::tensors::dtype_by_name;
use super::Unpickler;
use crate::error::TorchError;
use crate::policy::{self, Callable};
use crate::value::{Dict, Global, Object, Value};
use std::rc::Rc;

impl Unpickler<'_> {
    pub(super) fn make_global(&mut self, module: &str, name: &str) -> Result<Value, TorchError> {
        self.charge(1 + (module.len() + name.len()) / 32)?;
        if policy::is_denied(module, name) {
            return Err(TorchError::ForbiddenGlobal(format!("{module}.{name}")));
        }
        Ok(Value::Global(Rc::new(Global {
            module: Rc::from(policy::canonical_module(module)),
            name: Rc::from(name),
        })))
    }

    /// NEWOBJ / copyreg reconstruction: an empty instance of `cls`, kept as data.
    pub(super) fn instantiate(&mut self, cls: &Value, args: Value) -> Result<Value, TorchError> {
        let Value::Global(g) = cls else {
            return Err(self.err(format!(
                "instantiating {}, which is not a class",
                cls.describe()
            )));
        };
        let m = &*g.module;
        let n = &*g.name;
        Ok(match (m, n) {
            ("collections", "OrderedDict" | "defaultdict" | "Counter") | ("builtins", "dict") => {
                Value::empty_dict()
            }
            ("builtins", "list") => Value::list(Vec::new()),
            ("builtins", "set" | "frozenset") => Value::set(Vec::new()),
            _ => Value::Object(Rc::new(Object::new(Rc::clone(g), args))),
        })
    }

    /// INST/OBJ: Python calls the class (or function) with the arguments.
    pub(super) fn call_or_instantiate(
        &mut self,
        cls: &Value,
        args: Value,
    ) -> Result<Value, TorchError> {
        if let Value::Global(g) = cls {
            if policy::callable(&g.module, &g.name).is_some() {
                return self.reduce(cls, &args);
            }
        }
        self.instantiate(cls, args)
    }

    pub(super) fn reduce(&mut self, func: &Value, args: &Value) -> Result<Value, TorchError> {
        let Value::Global(g) = func else {
            return Err(self.err(format!(
                "REDUCE calls {}, which is not a global function",
                func.describe()
            )));
        };
        let Some(kind) = policy::callable(&g.module, &g.name) else {
            return Err(TorchError::CallNotAllowed(g.to_string()));
        };
        let Value::Tuple(t) = args else {
            return Err(self.err(format!(
                "arguments of `{g}` are {}, not a tuple",
                args.describe()
            )));
        };
        self.apply(kind, g, &t.0, 0)
    }

    fn need(&self, g: &Global, args: &[Value], n: usize, what: &str) -> Result<(), TorchError> {
        if args.len() < n {
            return Err(self.err(format!(
                "`{g}` needs at least {n} arguments ({what}), got {}",
                args.len()
            )));
        }
        Ok(())
    }

    fn apply(
        &mut self,
        kind: Callable,
        g: &Rc<Global>,
        args: &[Value],
        nesting: u8,
    ) -> Result<Value, TorchError> {
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::None);
        match kind {
            Callable::RebuildTensor | Callable::RebuildTensorV2 => {
                self.need(g, args, 4, "storage, storage_offset, size, stride")?;
                self.rebuild(g, args, None)
            }
            Callable::RebuildTensorV3 => {
                self.need(
                    g,
                    args,
                    7,
                    "storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype",
                )?;
                let dt = match args.get(6) {
                    Some(Value::Global(d)) if &*d.module == "torch" => dtype_by_name(&d.name),
                    _ => None,
                };
                match dt {
                    Some(d) => self.rebuild(g, args, Some(d)),
                    None => Ok(Value::Skipped(Rc::from(format!(
                        "tensor with unsupported element type ({})",
                        arg(6).describe()
                    )))),
                }
            }
            Callable::FirstArg => {
                self.need(g, args, 1, "data")?;
                Ok(arg(0))
            }
            Callable::RebuildFromType => {
                self.need(g, args, 3, "func, type, args")?;
                if nesting > 0 {
                    return Err(self.err(format!("`{g}` nested inside another rebuild")));
                }
                let Value::Global(f) = &args[0] else {
                    return Err(self.err(format!(
                        "`{g}`: first argument must be a function, got {}",
                        args[0].describe()
                    )));
                };
                let Some(k) = policy::callable(&f.module, &f.name) else {
                    return Err(TorchError::CallNotAllowed(f.to_string()));
                };
                let Value::Tuple(inner) = &args[2] else {
                    return Err(self.err(format!(
                        "`{g}`: third argument must be a tuple, got {}",
                        args[2].describe()
                    )));
                };
                let f = Rc::clone(f);
                let inner = Rc::clone(inner);
                self.apply(k, &f, &inner.0, nesting + 1)
            }
            Callable::SkipTensor(what) => Ok(Value::Skipped(Rc::from(what))),
            Callable::Dict => {
                let d = Rc::new(Dict::default());
                match arg(0) {
                    Value::None | Value::Global(_) => {}
                    Value::Dict(src) => {
                        let items: Vec<Value> = src
                            .0
                            .borrow()
                            .entries
                            .iter()
                            .flat_map(|(k, v)| [k.clone(), v.clone()])
                            .collect();
                        self.charge(items.len())?;
                        self.insert_pairs(&mut d.0.borrow_mut(), items)?;
                    }
                    seq @ (Value::List(_) | Value::Tuple(_)) => {
                        let pairs = seq.seq_items().unwrap_or_default();
                        self.charge(pairs.len())?;
                        let mut items = Vec::with_capacity(pairs.len().saturating_mul(2));
                        for p in pairs {
                            match p.seq_items() {
                                Some(kv) if kv.len() == 2 => items.extend(kv),
                                _ => {
                                    return Err(self.err(format!(
                                        "`{g}` expects (key, value) pairs, got {}",
                                        p.describe()
                                    )))
                                }
                            }
                        }
                        self.insert_pairs(&mut d.0.borrow_mut(), items)?;
                    }
                    other => {
                        return Err(
                            self.err(format!("`{g}` cannot be built from {}", other.describe()))
                        )
                    }
                }
                Ok(Value::Dict(d))
            }
            Callable::List | Callable::Tuple | Callable::Set => {
                let items = match arg(0) {
                    Value::None => Vec::new(),
                    Value::Set(s) => s.0.borrow().clone(),
                    other => other.seq_items().ok_or_else(|| {
                        self.err(format!("`{g}` cannot be built from {}", other.describe()))
                    })?,
                };
                self.charge(items.len())?;
                Ok(match kind {
                    Callable::List => Value::list(items),
                    Callable::Tuple => Value::tuple(items),
                    _ => Value::set(items),
                })
            }
            Callable::Reconstruct => {
                self.need(g, args, 1, "cls")?;
                let rest = if &*g.name == "_reconstructor" {
                    Vec::new()
                } else {
                    args.get(1..).unwrap_or(&[]).to_vec()
                };
                self.charge(rest.len())?;
                self.instantiate(&args[0], Value::tuple(rest))
            }
            Callable::CodecsEncode => {
                let text = arg(0);
                let enc = arg(1).as_text().map(|e| e.to_ascii_lowercase());
                match (&text, enc.as_deref()) {
                    (Value::Bytes(_), _) => Ok(text.clone()),
                    (Value::Str(s), Some("latin1" | "latin-1" | "iso-8859-1" | "iso8859-1")) => {
                        let mut out = Vec::with_capacity(s.len());
                        for c in s.chars() {
                            let b = u8::try_from(u32::from(c)).map_err(|_| {
                                self.err(format!("`{g}`: character {c:?} is not latin-1"))
                            })?;
                            out.push(b);
                        }
                        Ok(Value::Bytes(Rc::from(out)))
                    }
                    (Value::Str(s), None | Some("utf-8" | "utf8" | "ascii")) => {
                        Ok(Value::Bytes(Rc::from(s.as_bytes())))
                    }
                    _ => Err(self.err(format!(
                        "`{g}` with unsupported arguments {} / {}",
                        text.describe(),
                        arg(1).describe()
                    ))),
                }
            }
            Callable::Bytes => Ok(match arg(0) {
                Value::None => Value::Bytes(Rc::from(&[][..])),
                b @ Value::Bytes(_) => b,
                Value::Str(s) => Value::Bytes(Rc::from(s.as_bytes())),
                other => Value::Opaque(Rc::from(format!("bytes built from {}", other.describe()))),
            }),
            Callable::Identity => Ok(arg(0)),
            Callable::InertObject => {
                self.charge(args.len())?;
                Ok(Value::Object(Rc::new(Object::new(
                    Rc::clone(g),
                    Value::tuple(args.to_vec()),
                ))))
            }
        }
    }
}
