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

use crate::error::TorchError;
use crate::policy::{self, Callable};
use crate::value::{Dict, DictData, Global, Object, StorageDtype, StorageRef, TensorDesc, Value};
use convlens_core::DType;
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

fn op_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

/// Python 2 `str` (and protocol-0 strings) decoded as torch does (`encoding="utf-8"`), kept as
/// bytes when they are not UTF-8.
fn py2_str(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::Str(Rc::from(s)),
        Err(_) => Value::Bytes(Rc::from(b)),
    }
}

/// Decodes a little-endian two's complement integer (LONG1/LONG4).
fn decode_long(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() > 16 {
        return Value::BigInt;
    }
    let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
    let mut buf = if negative { [0xffu8; 16] } else { [0u8; 16] };
    buf[..b.len()].copy_from_slice(b);
    Value::Int(i128::from_le_bytes(buf))
}

/// Decodes Python's `raw-unicode-escape` (protocol 0 UNICODE).
fn raw_unicode_escape(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            let (n, ok) = match b.get(i + 1) {
                Some(b'u') => (4, true),
                Some(b'U') => (8, true),
                _ => (0, false),
            };
            if ok {
                let hex = b
                    .get(i + 2..i + 2 + n)
                    .and_then(|h| std::str::from_utf8(h).ok());
                if let Some(ch) = hex
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                {
                    out.push(ch);
                    i += 2 + n;
                    continue;
                }
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

/// Decodes a quoted protocol-0 STRING argument (`'abc\n'` with Python escapes).
fn unquote(line: &[u8]) -> Option<Vec<u8>> {
    let q = *line.first()?;
    if !(q == b'\'' || q == b'"') || line.len() < 2 || line.last() != Some(&q) {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'\n' => {}
            b'x' => {
                let h = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                let mut k = 0;
                while k < 2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                            k += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

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
fn dtype_by_name(name: &str) -> Option<DType> {
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

    fn take(&mut self, n: usize) -> Result<&'a [u8], TorchError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err(format!(
                "truncated: needs {n} more bytes but only {} remain",
                self.data.len().saturating_sub(self.pos)
            ))),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], TorchError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, TorchError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, TorchError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn len_u64(&mut self) -> Result<usize, TorchError> {
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} does not fit in memory")))
    }

    fn len_i32(&mut self) -> Result<usize, TorchError> {
        let n = i32::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))
    }

    /// The bytes up to the next newline (excluded), for text opcodes.
    fn line(&mut self) -> Result<&'a [u8], TorchError> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let s = &rest[..i];
                self.pos += i + 1;
                Ok(s)
            }
            None => Err(self.err("truncated: text argument without a terminating newline")),
        }
    }

    fn line_str(&mut self) -> Result<&'a str, TorchError> {
        let l = self.line()?;
        std::str::from_utf8(l).map_err(|_| self.err("text argument is not valid UTF-8"))
    }

    fn top_mark(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value, TorchError> {
        if self.stack.len() <= self.top_mark() {
            return Err(
                self.err("stack underflow: the opcode needs a value but the stack is empty")
            );
        }
        self.stack.pop().ok_or_else(|| {
            self.err("stack underflow: the opcode needs a value but the stack is empty")
        })
    }

    fn top(&self) -> Result<&Value, TorchError> {
        if self.stack.len() <= self.top_mark() {
            return Err(
                self.err("stack underflow: the opcode needs a value but the stack is empty")
            );
        }
        self.stack.last().ok_or_else(|| {
            self.err("stack underflow: the opcode needs a value but the stack is empty")
        })
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, TorchError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the stack for an opcode that needs one"))?;
        if mark > self.stack.len() {
            return Err(self.err("MARK points past the top of the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&mut self, idx: u32) -> Result<(), TorchError> {
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

    fn memo_put(&mut self, idx: u32) -> Result<(), TorchError> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn make_global(&mut self, module: &str, name: &str) -> Result<Value, TorchError> {
        self.charge(1 + (module.len() + name.len()) / 32)?;
        if policy::is_denied(module, name) {
            return Err(TorchError::ForbiddenGlobal(format!("{module}.{name}")));
        }
        Ok(Value::Global(Rc::new(Global {
            module: Rc::from(policy::canonical_module(module)),
            name: Rc::from(name),
        })))
    }

    /// Reads one pickle starting at `start`; returns its value.
    pub fn load(&mut self, start: usize) -> Result<Value, TorchError> {
        self.pos = start;
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        loop {
            self.op_pos = self.pos;
            self.op = 0;
            if self.pos >= self.data.len() {
                return Err(TorchError::Pickle {
                    pos: self.pos,
                    op: "end of data".into(),
                    msg: "truncated: the pickle ends without a STOP opcode".into(),
                });
            }
            let op = self.u8()?;
            self.op = op;
            self.charge(1)?;
            if op == b'.' {
                let v = self.pop()?;
                self.stack.clear();
                self.marks.clear();
                self.memo.clear();
                self.shared.clear();
                return Ok(v);
            }
            self.step(op)?;
        }
    }

    fn step(&mut self, op: u8) -> Result<(), TorchError> {
        match op {
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                if self.stack.len() <= self.top_mark() && !self.marks.is_empty() {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                if let Some(id) = container_id(&v) {
                    self.shared.insert(id);
                }
                self.push(v);
            }
            b'F' => {
                let s = self.line_str()?;
                let f: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| self.err(format!("bad float literal {:?}", s)))?;
                self.push(Value::Float(f));
            }
            b'I' | b'L' => {
                let s = self.line_str()?.trim();
                let v = match s {
                    "00" if op == b'I' => Value::Bool(false),
                    "01" if op == b'I' => Value::Bool(true),
                    _ => {
                        let digits = s.strip_suffix('L').unwrap_or(s);
                        match digits.parse::<i128>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => {
                                let body = digits.strip_prefix('-').unwrap_or(digits);
                                if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
                                    Value::BigInt
                                } else {
                                    return Err(self.err(format!("bad integer literal {s:?}")));
                                }
                            }
                        }
                    }
                };
                self.push(v);
            }
            b'J' => {
                let v = i32::from_le_bytes(self.take_array()?);
                self.push(Value::Int(v.into()));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v.into()));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.take_array()?);
                self.push(Value::Int(v.into()));
            }
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'G' => {
                let v = f64::from_be_bytes(self.take_array()?);
                self.push(Value::Float(v));
            }
            0x8a => {
                let n = usize::from(self.u8()?);
                let b = self.take(n)?;
                self.push(decode_long(b));
            }
            0x8b => {
                let n = self.len_i32()?;
                let b = self.take(n)?;
                self.push(decode_long(b));
            }
            b'S' => {
                let l = self.line()?;
                let b =
                    unquote(l).ok_or_else(|| self.err("STRING argument is not a quoted string"))?;
                self.push(py2_str(&b));
            }
            b'T' => {
                let n = self.len_i32()?;
                let b = self.take(n)?;
                self.push(py2_str(b));
            }
            b'U' => {
                let n = usize::from(self.u8()?);
                let b = self.take(n)?;
                self.push(py2_str(b));
            }
            b'V' => {
                let l = self.line()?;
                self.push(Value::Str(Rc::from(raw_unicode_escape(l))));
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.u32()? as usize,
                    0x8c => usize::from(self.u8()?),
                    _ => self.len_u64()?,
                };
                let b = self.take(n)?;
                self.push(Value::Str(Rc::from(String::from_utf8_lossy(b))));
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'B' => self.u32()? as usize,
                    b'C' => usize::from(self.u8()?),
                    _ => self.len_u64()?,
                };
                let b = self.take(n)?;
                self.push(Value::Bytes(Rc::from(b)));
            }
            b'}' => self.push(Value::empty_dict()),
            b']' => self.push(Value::list(Vec::new())),
            b')' => self.push(Value::tuple(Vec::new())),
            0x8f => self.push(Value::set(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                let d = self.pairs_to_dict(items)?;
                self.push(d);
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Value::list(items));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::tuple(items));
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Value::set(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Value::tuple(items));
            }
            b'a' => {
                let v = self.pop()?;
                let target = self.top()?.clone();
                let items = self.sever_cycles(&target, vec![v])?;
                self.extend(&target, items)?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                let items = self.sever_cycles(&target, items)?;
                self.extend(&target, items)?;
            }
            0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                let items = self.sever_cycles(&target, items)?;
                match &target {
                    Value::Set(s) => s.0.borrow_mut().extend(items),
                    other => {
                        return Err(self.err(format!("ADDITEMS on {}, not a set", other.describe())))
                    }
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let target = self.top()?.clone();
                let items = self.sever_cycles(&target, vec![k, v])?;
                self.set_items(&target, items)?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                let items = self.sever_cycles(&target, items)?;
                self.set_items(&target, items)?;
            }
            b'g' => {
                let s = self.line_str()?.trim();
                let idx: u32 = s
                    .parse()
                    .map_err(|_| self.err(format!("bad memo index {s:?}")))?;
                self.memo_get(idx)?;
            }
            b'h' => {
                let idx = self.u8()?;
                self.memo_get(idx.into())?;
            }
            b'j' => {
                let idx = self.u32()?;
                self.memo_get(idx)?;
            }
            b'p' => {
                let s = self.line_str()?.trim();
                let idx: u32 = s
                    .parse()
                    .map_err(|_| self.err(format!("bad memo index {s:?}")))?;
                self.memo_put(idx)?;
            }
            b'q' => {
                let idx = self.u8()?;
                self.memo_put(idx.into())?;
            }
            b'r' => {
                let idx = self.u32()?;
                self.memo_put(idx)?;
            }
            0x94 => {
                let idx = u32::try_from(self.memo.len())
                    .map_err(|_| self.err("too many memo entries"))?;
                self.memo_put(idx)?;
            }
            b'c' => {
                let module = self.line_str()?;
                let name = self.line_str()?;
                let g = self.make_global(module, name)?;
                self.push(g);
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(m), Some(n)) = (module.as_text(), name.as_text()) else {
                    return Err(self.err(format!(
                        "STACK_GLOBAL needs two strings, got {} and {}",
                        module.describe(),
                        name.describe()
                    )));
                };
                let g = self.make_global(&m, &n)?;
                self.push(g);
            }
            b'i' => {
                let module = self.line_str()?;
                let name = self.line_str()?;
                let g = self.make_global(module, name)?;
                let args = self.pop_mark()?;
                let v = self.call_or_instantiate(&g, Value::tuple(args))?;
                self.push(v);
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err(self.err("OBJ without a class"));
                }
                let cls = items.remove(0);
                let v = self.call_or_instantiate(&cls, Value::tuple(items))?;
                self.push(v);
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = self.instantiate(&cls, args)?;
                self.push(v);
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = self.instantiate(&cls, args)?;
                self.push(v);
            }
            b'R' => {
                let args = self.pop()?;
                let func = self.pop()?;
                let v = self.reduce(&func, &args)?;
                self.push(v);
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?.clone();
                let state = self
                    .sever_cycles(&target, vec![state])?
                    .pop()
                    .unwrap_or(Value::None);
                self.build(&target, state)?;
            }
            b'P' => {
                let l = self.line()?;
                let pid = py2_str(l);
                let v = self.persistent_load(&pid)?;
                self.push(v);
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(&pid)?;
                self.push(v);
            }
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(self.err(format!("unsupported pickle protocol {proto}")));
                }
            }
            0x95 => {
                // FRAME: a length hint only
                self.len_u64()?;
            }
            0x98 => {
                self.top()?;
            }
            0x82..=0x84 => {
                return Err(self.err("extension-registry globals (EXT1/2/4) are not supported"))
            }
            0x97 => return Err(self.err("out-of-band buffers (NEXT_BUFFER) are not supported")),
            other => return Err(self.err(format!("unknown opcode 0x{other:02x}"))),
        }
        Ok(())
    }

    fn pairs_to_dict(&mut self, items: Vec<Value>) -> Result<Value, TorchError> {
        let d = Rc::new(Dict::default());
        self.insert_pairs(&mut d.0.borrow_mut(), items)?;
        Ok(Value::Dict(d))
    }

    fn insert_pairs(&mut self, d: &mut DictData, items: Vec<Value>) -> Result<(), TorchError> {
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

    fn set_items(&mut self, target: &Value, items: Vec<Value>) -> Result<(), TorchError> {
        match target {
            Value::Dict(d) => self.insert_pairs(&mut d.0.borrow_mut(), items),
            Value::Object(o) => self.insert_pairs(&mut o.dict_items.borrow_mut(), items),
            other => Err(self.err(format!(
                "SETITEM on {}, which is not a dict",
                other.describe()
            ))),
        }
    }

    fn extend(&mut self, target: &Value, items: Vec<Value>) -> Result<(), TorchError> {
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

    fn build(&mut self, target: &Value, state: Value) -> Result<(), TorchError> {
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

    /// NEWOBJ / copyreg reconstruction: an empty instance of `cls`, kept as data.
    fn instantiate(&mut self, cls: &Value, args: Value) -> Result<Value, TorchError> {
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
    fn call_or_instantiate(&mut self, cls: &Value, args: Value) -> Result<Value, TorchError> {
        if let Value::Global(g) = cls {
            if policy::callable(&g.module, &g.name).is_some() {
                return self.reduce(cls, &args);
            }
        }
        self.instantiate(cls, args)
    }

    fn reduce(&mut self, func: &Value, args: &Value) -> Result<Value, TorchError> {
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

    /// A tensor description from `_rebuild_tensor*` arguments.
    fn rebuild(
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

    fn persistent_load(&mut self, pid: &Value) -> Result<Value, TorchError> {
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

    /// Replaces every item that (directly or through other containers) refers back to the
    /// mutable container `target` by an opaque placeholder. Containers are reference counted, so
    /// a cycle (`l = []; l.append((l,))`) would never be freed; convlens never needs such a
    /// back reference. The search is charged to the work budget.
    fn sever_cycles(
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

    fn note(&mut self, n: String) {
        if self.notes.len() < 100 && !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }
}

/// The identity of a value that can hold other values (and so be part of a cycle).
fn container_id(v: &Value) -> Option<*const ()> {
    Some(match v {
        Value::List(s) | Value::Set(s) => Rc::as_ptr(s).cast(),
        Value::Tuple(t) => Rc::as_ptr(t).cast(),
        Value::Dict(d) => Rc::as_ptr(d).cast(),
        Value::Object(o) => Rc::as_ptr(o).cast(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(b: &[u8]) -> Result<Value, TorchError> {
        Unpickler::new(b, PidStyle::Zip).load(0)
    }

    #[test]
    fn scalars_and_containers() {
        // {'a': [1, -2, 3.5], 'b': (True, None)}
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00eX\x01\x00\x00\x00b\x88N\x86u.";
        let v = load(p).unwrap();
        let Value::Dict(d) = v else { panic!() };
        let d = d.0.borrow();
        let Some(Value::List(l)) = d.get_str("a") else {
            panic!()
        };
        let l = l.0.borrow();
        assert!(matches!(l[0], Value::Int(1)));
        assert!(matches!(l[1], Value::Int(-2)));
        assert!(matches!(l[2], Value::Float(f) if f == 3.5));
        assert!(matches!(d.get_str("b"), Some(Value::Tuple(t)) if t.0.len() == 2));
    }

    /// Fuzz finding (LeakSanitizer, torch/read): `l = []; l.append((l,)); d = {}; d['k'] = d`
    /// built reference cycles of `Rc` containers that were never freed. The back references
    /// are now placeholders, so the list and dict are uniquely owned after loading.
    #[test]
    fn reference_cycles_are_cut() {
        // EMPTY_LIST MEMOIZE BINGET0 TUPLE1 APPEND, and a dict that contains itself
        let p = b"\x80\x04]\x94h\x00\x85a.";
        let Value::List(l) = load(p).unwrap() else {
            panic!("not a list")
        };
        assert_eq!(Rc::strong_count(&l), 1, "the list is still part of a cycle");
        let items = l.0.borrow();
        // the tuple `(l,)` refers back to `l`, so the appended item is the placeholder
        assert!(matches!(&items[0], Value::Opaque(s) if s.contains("cyclic")));
        drop(items);
        let p = b"\x80\x04}\x94X\x01\x00\x00\x00kh\x00s.";
        let Value::Dict(d) = load(p).unwrap() else {
            panic!("not a dict")
        };
        assert_eq!(Rc::strong_count(&d), 1, "the dict is still part of a cycle");
        assert!(matches!(d.0.borrow().get_str("k"), Some(Value::Opaque(_))));
    }

    #[test]
    fn long1_decodes_torch_magic() {
        let p = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        assert!(matches!(
            load(p).unwrap(),
            Value::Int(0x1950a86a20f9469cfc6c)
        ));
        assert!(matches!(load(b"\x8a\x01\xff.").unwrap(), Value::Int(-1)));
    }

    #[test]
    fn protocol0_text_opcodes() {
        let p = b"(S'a\\'b\\x41'\np0\nI01\nL123L\nF1.5\nVx\\u00e9\ntp1\n.";
        let v = load(p).unwrap();
        let items = v.seq_items().unwrap();
        assert!(matches!(&items[0], Value::Str(s) if &**s == "a'bA"));
        assert!(matches!(items[1], Value::Bool(true)));
        assert!(matches!(items[2], Value::Int(123)));
        assert!(matches!(items[3], Value::Float(f) if f == 1.5));
        assert!(matches!(&items[4], Value::Str(s) if &**s == "x\u{e9}"));
    }

    #[test]
    fn pop_at_mark_pops_the_mark() {
        // MARK, POP (pops the mark), then TUPLE without mark must fail
        let e = load(b"(0t.").unwrap_err();
        assert!(e.to_string().contains("no MARK"), "{e}");
    }

    #[test]
    fn values_below_a_mark_are_protected() {
        // POP at the mark pops the mark; STOP then finds the int
        assert!(matches!(load(b"K\x01(0.").unwrap(), Value::Int(1)));
        let e = load(b"K\x01(a.").unwrap_err();
        assert!(e.to_string().contains("stack underflow"), "{e}");
    }
}
