//! The opcode loop: one pickle read opcode by opcode until STOP, each opcode charged to the
//! work budget; the names of the opcodes for error messages.

use super::cycles::container_id;
use super::input::{decode_long, py2_str, raw_unicode_escape, unquote};
use super::Unpickler;
use crate::error::TorchError;
use crate::value::Value;
use std::rc::Rc;

pub(super) fn op_name(op: u8) -> &'static str {
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

impl Unpickler<'_> {
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
}
