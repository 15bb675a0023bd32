//! Reference cycles: back references to the container being filled are cut, so that every
//! `Rc` container is freed.

use super::Unpickler;
use crate::error::TorchError;
use crate::value::Value;
use std::collections::HashSet;
use std::rc::Rc;

impl Unpickler<'_> {
    /// Replaces every item that (directly or through other containers) refers back to the
    /// mutable container `target` by an opaque placeholder. Containers are reference counted, so
    /// a cycle (`l = []; l.append((l,))`) would never be freed; convlens never needs such a
    /// back reference. The search is charged to the work budget.
    pub(super) fn sever_cycles(
        &mut self,
        target: &Value,
        mut items: Vec<Value>,
    ) -> Result<Vec<Value>, TorchError> {
        let Some(goal) = container_id(target).filter(|id| self.shared.contains(id)) else {
            return Ok(items);
        };
        let mut cut = false;
        for item in items.iter_mut() {
            if self.reaches(item, goal)? {
                *item = Value::Opaque(Rc::from("cyclic reference to an enclosing container"));
                cut = true;
            }
        }
        if cut {
            self.note(
                "the pickle builds a reference cycle; each back reference was replaced by a \
                 placeholder"
                    .into(),
            );
        }
        Ok(items)
    }

    /// Whether the container with identity `goal` is reachable from `from`.
    fn reaches(&mut self, from: &Value, goal: *const ()) -> Result<bool, TorchError> {
        let mut seen = HashSet::new();
        let mut todo = vec![from.clone()];
        while let Some(v) = todo.pop() {
            let Some(id) = container_id(&v) else { continue };
            if id == goal {
                return Ok(true);
            }
            if !seen.insert(id) {
                continue;
            }
            let before = todo.len();
            match &v {
                Value::List(s) | Value::Set(s) => todo.extend(s.0.borrow().iter().cloned()),
                Value::Tuple(t) => todo.extend(t.0.iter().cloned()),
                Value::Dict(d) => todo.extend(
                    d.0.borrow()
                        .entries
                        .iter()
                        .flat_map(|(k, v)| [k.clone(), v.clone()]),
                ),
                Value::Object(o) => {
                    todo.push(o.args.clone());
                    todo.extend(o.state.borrow().iter().cloned());
                    todo.extend(
                        o.dict_items
                            .borrow()
                            .entries
                            .iter()
                            .flat_map(|(k, v)| [k.clone(), v.clone()]),
                    );
                    todo.extend(o.list_items.borrow().iter().cloned());
                }
                _ => {}
            }
            self.charge(1 + todo.len() - before)?;
        }
        Ok(false)
    }
}

/// The identity of a value that can hold other values (and so be part of a cycle).
pub(super) fn container_id(v: &Value) -> Option<*const ()> {
    Some(match v {
        Value::List(s) | Value::Set(s) => Rc::as_ptr(s).cast(),
        Value::Tuple(t) => Rc::as_ptr(t).cast(),
        Value::Dict(d) => Rc::as_ptr(d).cast(),
        Value::Object(o) => Rc::as_ptr(o).cast(),
        _ => return None,
    })
}
