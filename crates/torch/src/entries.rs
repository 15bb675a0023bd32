//! Finds the model weights inside a checkpoint by structure.
//!
//! A training checkpoint is a tree of containers: the model's state dict next to optimizer
//! states (whose Adam moments and momentum buffers have the weights' shapes), schedulers,
//! GradScaler state, metrics and hyper-parameters, sometimes several models (an EMA copy, a
//! GAN's generator and discriminator). The survey walks the tree and lists every
//! **candidate model** — a dict holding tensors with at least one dimension directly (a state
//! dict), or a pickled module — without descending into it, and every **optimizer state** — a
//! container with `state` and `param_groups`, or an object of a `torch.optim` class — which is
//! never read. Containers holding neither are searched further; everything else (numbers,
//! strings, 0-d metric tensors) is not a model. A file without any candidate but with tensors
//! (e.g. only in lists) is read whole, without its optimizer states.
//!
//! Candidates are ranked (see [`Survey::default_index`]): those holding a 4-D tensor (a
//! convolution weight) first; among them, originals before averaged copies (a name component
//! `ema`, `swa`, `avg`, `averaged` or `shadow`); then file order.

use crate::collect::MAX_DEPTH;
use crate::error::TorchError;
use crate::value::{DictData, Object, Value};
use std::collections::HashSet;
use std::rc::Rc;

/// Name components that mark an averaged copy of a model (EMA, SWA, ...).
const COPY_WORDS: &[&str] = &["ema", "swa", "avg", "averaged", "shadow"];

/// Most containers the survey looks at (a hostile tree cannot make it run long).
const MAX_VISITS: usize = 1 << 22;

/// One candidate model of a checkpoint.
pub(crate) struct Candidate {
    /// Dotted path of keys from the root (empty for the root itself).
    pub name: String,
    /// The container holding the model's tensors.
    pub value: Value,
    /// Tensors in the candidate (any rank).
    pub tensors: usize,
    /// 4-D tensors in the candidate.
    pub four_d: usize,
    /// True for an averaged copy (EMA, SWA, ...), judged by its name.
    pub averaged: bool,
}

/// The candidate models and the optimizer states of a checkpoint.
pub(crate) struct Survey {
    /// Candidates in file order.
    pub candidates: Vec<Candidate>,
    /// Paths of the optimizer states found (not read).
    pub optimizers: Vec<String>,
}

impl Survey {
    /// The default candidate: the first in file order holding a 4-D tensor that is not an
    /// averaged copy; else the first holding a 4-D tensor; else the first.
    pub fn default_index(&self) -> Option<usize> {
        let c = &self.candidates;
        c.iter()
            .position(|c| c.four_d > 0 && !c.averaged)
            .or_else(|| c.iter().position(|c| c.four_d > 0))
            .or(if c.is_empty() { None } else { Some(0) })
    }
}

/// A display form of a candidate name (`(root)` for the whole file).
pub(crate) fn display(name: &str) -> String {
    if name.is_empty() {
        "(root)".to_string()
    } else {
        format!("`{name}`")
    }
}

/// True for an optimizer's state dict: `state` (a dict) and `param_groups` (a list).
pub(crate) fn is_optimizer_state(d: &DictData) -> bool {
    matches!(d.get_str("param_groups"), Some(Value::List(_)))
        && matches!(
            d.get_str("state"),
            Some(Value::Dict(_) | Value::Object(_) | Value::List(_))
        )
}

/// True for a pickled optimizer or scheduler object, or one whose attributes are an
/// optimizer state.
pub(crate) fn is_optimizer_object(o: &Object) -> bool {
    if o.class.module.starts_with("torch.optim") {
        return true;
    }
    match &*o.state.borrow() {
        Some(Value::Dict(d)) => is_optimizer_state(&d.0.borrow()),
        _ => false,
    }
}

/// True when the object's attributes are those of an `nn.Module` or it is a TorchScript object.
fn is_module(o: &Object) -> bool {
    if o.class.module.starts_with("__torch__") {
        return true;
    }
    match &*o.state.borrow() {
        Some(Value::Dict(d)) => {
            let d = d.0.borrow();
            ["_parameters", "_modules", "_buffers"]
                .iter()
                .any(|k| d.get_str(k).is_some())
        }
        Some(Value::Tuple(t)) => t.0.iter().any(|p| match p {
            Value::Dict(d) => d.0.borrow().get_str("_parameters").is_some(),
            _ => false,
        }),
        _ => false,
    }
}

/// A tensor with at least one dimension (0-d tensors are metrics, counters, scales).
fn is_weight_like(v: &Value) -> bool {
    match v {
        Value::Tensor(t) => !t.size.is_empty(),
        Value::Skipped(_) => true,
        _ => false,
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("<{}>", other.describe()),
    }
}

/// Splits a name into lowercase words at `_ . - /`, spaces and camel-case boundaries
/// (`EMACallback` → `ema`, `callback`).
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let chars: Vec<char> = part.chars().collect();
        let mut cur = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let boundary = i > 0
                && c.is_ascii_uppercase()
                && (chars[i - 1].is_ascii_lowercase()
                    || chars[i - 1].is_ascii_digit()
                    || chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()));
            if boundary && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(c.to_ascii_lowercase());
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

/// True when a component of the path names an averaged copy.
fn is_averaged(path: &[String]) -> bool {
    path.iter()
        .flat_map(|p| words(p))
        .any(|w| COPY_WORDS.contains(&w.as_str()))
}

struct Walk {
    visited: HashSet<usize>,
    visits: usize,
    survey: Survey,
}

/// Lists the candidate models and optimizer states of a checkpoint tree.
pub(crate) fn survey(root: &Value) -> Result<Survey, TorchError> {
    let mut w = Walk {
        visited: HashSet::new(),
        visits: 0,
        survey: Survey {
            candidates: Vec::new(),
            optimizers: Vec::new(),
        },
    };
    let mut path = Vec::new();
    w.visit(root, &mut path, 0)?;
    if w.survey.candidates.is_empty() {
        // no state dict or module anywhere (e.g. tensors only in lists): the whole file,
        // without its optimizer states, when it holds any tensor
        let (tensors, four_d) = count_tensors(root, &mut w.visits)?;
        if tensors > 0 {
            w.survey.candidates.push(Candidate {
                name: String::new(),
                value: root.clone(),
                tensors,
                four_d,
                averaged: false,
            });
        }
    }
    Ok(w.survey)
}

impl Walk {
    fn enter(&mut self, ptr: usize, depth: usize) -> Result<bool, TorchError> {
        if depth > MAX_DEPTH {
            return Err(TorchError::Limit(format!(
                "the pickled value is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        self.visits += 1;
        if self.visits > MAX_VISITS {
            return Err(TorchError::Limit(format!(
                "the checkpoint holds more than {MAX_VISITS} containers"
            )));
        }
        Ok(self.visited.insert(ptr))
    }

    fn candidate(&mut self, v: &Value, path: &[String]) -> Result<(), TorchError> {
        // one budget for the whole survey: candidates sharing a large subtree cannot multiply
        // the work
        let (tensors, four_d) = count_tensors(v, &mut self.visits)?;
        self.survey.candidates.push(Candidate {
            name: path.join("."),
            value: v.clone(),
            tensors,
            four_d,
            averaged: is_averaged(path),
        });
        Ok(())
    }

    fn visit(&mut self, v: &Value, path: &mut Vec<String>, depth: usize) -> Result<(), TorchError> {
        match v {
            Value::Dict(d) => {
                if !self.enter(Rc::as_ptr(d) as usize, depth)? {
                    return Ok(());
                }
                let data = d.0.borrow();
                self.visit_dict(v, &data, path, depth)?;
            }
            Value::List(l) => {
                if !self.enter(Rc::as_ptr(l) as usize, depth)? {
                    return Ok(());
                }
                let items = l.0.borrow();
                self.visit_items(&items, path, depth)?;
            }
            Value::Tuple(t) => {
                if !self.enter(Rc::as_ptr(t) as usize, depth)? {
                    return Ok(());
                }
                self.visit_items(&t.0, path, depth)?;
            }
            Value::Object(o) => {
                if !self.enter(Rc::as_ptr(o) as usize, depth)? {
                    return Ok(());
                }
                if is_optimizer_object(o) {
                    self.survey.optimizers.push(path.join("."));
                } else if is_module(o) {
                    self.candidate(v, path)?;
                } else {
                    // an inert object: its dict items and attributes are searched like a dict
                    {
                        let items = o.dict_items.borrow();
                        if !items.entries.is_empty() {
                            self.visit_dict(v, &items, path, depth)?;
                        }
                    }
                    let list = o.list_items.borrow();
                    if !list.is_empty() {
                        self.visit_items(&list, path, depth)?;
                    }
                    let state = o.state.borrow();
                    match &*state {
                        Some(Value::Dict(d)) => self.visit_attributes(v, d, path, depth + 1)?,
                        Some(other) => self.visit(other, path, depth + 1)?,
                        None => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The attribute dict `d` of the inert object `v`, searched like a dict.
    fn visit_attributes(
        &mut self,
        v: &Value,
        d: &Rc<crate::value::Dict>,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), TorchError> {
        if !self.enter(Rc::as_ptr(d) as usize, depth)? {
            return Ok(());
        }
        let data = d.0.borrow();
        self.visit_dict(v, &data, path, depth)
    }

    /// A dict: an optimizer state (recorded), a state dict (a candidate) or a container.
    fn visit_dict(
        &mut self,
        v: &Value,
        d: &DictData,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), TorchError> {
        if is_optimizer_state(d) {
            self.survey.optimizers.push(path.join("."));
            return Ok(());
        }
        if d.entries.iter().any(|(_, x)| is_weight_like(x)) {
            return self.candidate(v, path);
        }
        for (k, x) in &d.entries {
            if !is_container(x) {
                continue;
            }
            path.push(key_text(k));
            let r = self.visit(x, path, depth + 1);
            path.pop();
            r?;
        }
        Ok(())
    }

    /// A list or tuple: its containers are searched (tensors in lists are not a state dict;
    /// they are read only through the whole-file fallback of [`survey`]).
    fn visit_items(
        &mut self,
        items: &[Value],
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), TorchError> {
        for (i, x) in items.iter().enumerate() {
            if !is_container(x) {
                continue;
            }
            path.push(i.to_string());
            let r = self.visit(x, path, depth + 1);
            path.pop();
            r?;
        }
        Ok(())
    }
}

fn is_container(v: &Value) -> bool {
    matches!(
        v,
        Value::Dict(_) | Value::List(_) | Value::Tuple(_) | Value::Object(_)
    )
}

/// Tensors and 4-D tensors under `v` (each container counted once, optimizer states not
/// entered); every container visited counts against `visits` (at most [`MAX_VISITS`]).
fn count_tensors(v: &Value, visits: &mut usize) -> Result<(usize, usize), TorchError> {
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack: Vec<(Value, usize)> = vec![(v.clone(), 0)];
    let (mut n, mut four) = (0usize, 0usize);
    while let Some((x, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(TorchError::Limit(format!(
                "the pickled value is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let ptr = match &x {
            Value::Dict(d) => Rc::as_ptr(d) as usize,
            Value::List(l) => Rc::as_ptr(l) as usize,
            Value::Tuple(t) => Rc::as_ptr(t) as usize,
            Value::Object(o) => Rc::as_ptr(o) as usize,
            Value::Tensor(t) => {
                n += 1;
                four += usize::from(t.size.len() == 4);
                continue;
            }
            _ => continue,
        };
        if !seen.insert(ptr) {
            continue;
        }
        *visits += 1;
        if *visits > MAX_VISITS {
            return Err(TorchError::Limit(format!(
                "the checkpoint holds more than {MAX_VISITS} containers"
            )));
        }
        let push = |stack: &mut Vec<(Value, usize)>, c: &Value| {
            if is_container(c) || matches!(c, Value::Tensor(_)) {
                stack.push((c.clone(), depth + 1));
            }
        };
        match &x {
            Value::Dict(d) => {
                let d = d.0.borrow();
                if is_optimizer_state(&d) {
                    continue;
                }
                for (_, c) in &d.entries {
                    push(&mut stack, c);
                }
            }
            Value::List(l) => l.0.borrow().iter().for_each(|c| push(&mut stack, c)),
            Value::Tuple(t) => t.0.iter().for_each(|c| push(&mut stack, c)),
            Value::Object(o) => {
                if is_optimizer_object(o) {
                    continue;
                }
                if let Some(s) = &*o.state.borrow() {
                    push(&mut stack, s);
                }
                o.dict_items
                    .borrow()
                    .entries
                    .iter()
                    .for_each(|(_, c)| push(&mut stack, c));
                o.list_items
                    .borrow()
                    .iter()
                    .for_each(|c| push(&mut stack, c));
            }
            _ => {}
        }
    }
    Ok((n, four))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_names() {
        assert_eq!(words("EMACallback"), ["ema", "callback"]);
        assert_eq!(words("model_ema"), ["model", "ema"]);
        assert_eq!(words("state_dict_ema"), ["state", "dict", "ema"]);
        assert_eq!(words("modelEma"), ["model", "ema"]);
        assert!(!is_averaged(&["schema".to_string()]));
        assert!(!is_averaged(&["gamma".to_string()]));
        assert!(is_averaged(&["ema_model".to_string()]));
        assert!(is_averaged(&["callbacks".into(), "EMACallback".into()]));
        assert!(is_averaged(&["swa_model".to_string()]));
    }
}
