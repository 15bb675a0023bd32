//! The stack, its marks and the memo, and the opcodes that fill containers already on the
//! stack (SETITEM(S), APPEND(S), BUILD).

use super::cycles::container_id;
use super::Unpickler;
use crate::error::TorchError;
use crate::value::{Dict, DictData, Value};
use std::rc::Rc;

impl Unpickler<'_> {
    pub(super) fn top_mark(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    pub(super) fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    pub(super) fn pop(&mut self) -> Result<Value, TorchError> {
        if self.stack.len() <= self.top_mark() {
            return Err(
                self.err("stack underflow: the opcode needs a value but the stack is empty")
            );
        }
        self.stack.pop().ok_or_else(|| {
            self.err("stack underflow: the opcode needs a value but the stack is empty")
        })
    }

    pub(super) fn top(&self) -> Result<&Value, TorchError> {
        if self.stack.len() <= self.top_mark() {
            return Err(
                self.err("stack underflow: the opcode needs a value but the stack is empty")
            );
        }
        self.stack.last().ok_or_else(|| {
            self.err("stack underflow: the opcode needs a value but the stack is empty")
        })
    }

    pub(super) fn pop_mark(&mut self) -> Result<Vec<Value>, TorchError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the stack for an opcode that needs one"))?;
        if mark > self.stack.len() {
            return Err(self.err("MARK points past the top of the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    pub(super) fn memo_get(&mut self, idx: u32) -> Result<(), TorchError> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(format!("memo entry {idx} was never stored")))?;
        if let Some(id) = container_id(&v) {
            self.shared.insert(id);
        }
        self.push(v);
        Ok(())
    }

    pub(super) fn memo_put(&mut self, idx: u32) -> Result<(), TorchError> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    pub(super) fn pairs_to_dict(&mut self, items: Vec<Value>) -> Result<Value, TorchError> {
        let d = Rc::new(Dict::default());
        self.insert_pairs(&mut d.0.borrow_mut(), items)?;
        Ok(Value::Dict(d))
    }

    pub(super) fn insert_pairs(
        &mut self,
        d: &mut DictData,
        items: Vec<Value>,
    ) -> Result<(), TorchError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(format!(
                "odd number of items ({}) for SETITEMS",
                items.len()
            )));
        }
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let cost = d.insert(k, v);
            self.charge(cost)?;
        }
        Ok(())
    }

    pub(super) fn set_items(
        &mut self,
        target: &Value,
        items: Vec<Value>,
    ) -> Result<(), TorchError> {
        match target {
            Value::Dict(d) => self.insert_pairs(&mut d.0.borrow_mut(), items),
            Value::Object(o) => self.insert_pairs(&mut o.dict_items.borrow_mut(), items),
            other => Err(self.err(format!(
                "SETITEM on {}, which is not a dict",
                other.describe()
            ))),
        }
    }

    pub(super) fn extend(&mut self, target: &Value, items: Vec<Value>) -> Result<(), TorchError> {
        match target {
            Value::List(l) => l.0.borrow_mut().extend(items),
            Value::Object(o) => o.list_items.borrow_mut().extend(items),
            other => {
                return Err(self.err(format!(
                    "APPEND to {}, which is not a list",
                    other.describe()
                )))
            }
        }
        Ok(())
    }

    pub(super) fn build(&mut self, target: &Value, state: Value) -> Result<(), TorchError> {
        if let Value::Object(o) = target {
            let mut slot = o.state.borrow_mut();
            match (&*slot, &state) {
                (Some(Value::Dict(old)), Value::Dict(new)) if !Rc::ptr_eq(old, new) => {
                    let items: Vec<Value> = new
                        .0
                        .borrow()
                        .entries
                        .iter()
                        .flat_map(|(k, v)| [k.clone(), v.clone()])
                        .collect();
                    self.charge(items.len())?;
                    let old = Rc::clone(old);
                    drop(slot);
                    self.insert_pairs(&mut old.0.borrow_mut(), items)?;
                }
                _ => *slot = Some(state),
            }
        }
        // BUILD on dicts (the `_metadata` of a state dict), tensors and other values only
        // restores attributes convlens does not use.
        Ok(())
    }
}
