//! An inert pickle machine: it parses protocol 0-5 pickles into a [`Value`] tree without
//! importing or running anything.
//!
//! Safety properties:
//! - memo entries are shared (`Rc`), never deep-cloned;
//! - every opcode consumes at least one input byte and every copy of container items is charged
//!   against a work budget proportional to the input size, so time and memory stay linear;
//! - every read is bounds-checked; malformed input gives a [`TorchError::Pickle`];
//! - globals on a denylist are refused when they appear, and only a fixed list of inert
//!   callables (tensor rebuild functions, containers) may be "called" by REDUCE.

mod cycles;
mod globals;
mod input;
mod machine;
mod stack;
mod tensors;
#[cfg(test)]
mod tests;

use crate::error::TorchError;
use crate::value::{StorageRef, Value};
use machine::op_name;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// How a storage persistent id is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidStyle {
    /// `('storage', type, key, location, numel)` (zip archives, TorchScript).
    Zip,
    /// `('storage', type, root_key, location, numel, view_metadata)` (legacy streams).
    Legacy,
}

/// The pickle machine; one per file, so that the work budget and the storages seen are shared
/// by all pickles of a legacy stream.
pub(crate) struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    op: u8,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Identities of containers fetched from the memo or duplicated: only these can end up
    /// inside themselves, so only these are checked for reference cycles.
    shared: HashSet<*const ()>,
    work: u64,
    work_cap: u64,
    pid_style: PidStyle,
    /// Storages named by persistent ids, in order of appearance.
    pub storages: Vec<Rc<StorageRef>>,
    /// Remarks for the user.
    pub notes: Vec<String>,
}

/// Work units allowed per input byte (one per opcode plus one per copied container item).
const WORK_PER_BYTE: u64 = 8;
/// Work units allowed regardless of the input size.
const WORK_BASE: u64 = 1 << 20;

impl<'a> Unpickler<'a> {
    /// A machine reading pickles from `data`, with a work budget proportional to its length.
    pub fn new(data: &'a [u8], pid_style: PidStyle) -> Self {
        let work_cap = WORK_BASE.saturating_add((data.len() as u64).saturating_mul(WORK_PER_BYTE));
        Unpickler {
            data,
            pos: 0,
            op_pos: 0,
            op: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            shared: HashSet::new(),
            work: 0,
            work_cap,
            pid_style,
            storages: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Offset just after the last pickle read.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn err(&self, msg: impl Into<String>) -> TorchError {
        TorchError::Pickle {
            pos: self.op_pos,
            op: op_name(self.op).to_string(),
            msg: msg.into(),
        }
    }

    fn charge(&mut self, units: usize) -> Result<(), TorchError> {
        self.work = self.work.saturating_add(units as u64);
        if self.work > self.work_cap {
            return Err(TorchError::Limit(format!(
                "the pickle needs more than {} steps for {} input bytes (expansion bomb?)",
                self.work_cap,
                self.data.len()
            )));
        }
        Ok(())
    }

    fn note(&mut self, n: String) {
        if self.notes.len() < 100 && !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }
}
