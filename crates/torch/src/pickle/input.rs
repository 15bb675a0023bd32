//! Reading opcode arguments: bounds-checked bytes, integers and lengths, newline-terminated
//! text, and the decoding of protocol-0 strings, Python 2 `str`s and LONG integers.

use super::Unpickler;
use crate::error::TorchError;
use crate::value::Value;
use std::rc::Rc;

impl<'a> Unpickler<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], TorchError> {
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

    pub(super) fn take_array<const N: usize>(&mut self) -> Result<[u8; N], TorchError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, TorchError> {
        Ok(self.take_array::<1>()?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, TorchError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    pub(super) fn len_u64(&mut self) -> Result<usize, TorchError> {
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} does not fit in memory")))
    }

    pub(super) fn len_i32(&mut self) -> Result<usize, TorchError> {
        let n = i32::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))
    }

    /// The bytes up to the next newline (excluded), for text opcodes.
    pub(super) fn line(&mut self) -> Result<&'a [u8], TorchError> {
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

    pub(super) fn line_str(&mut self) -> Result<&'a str, TorchError> {
        let l = self.line()?;
        std::str::from_utf8(l).map_err(|_| self.err("text argument is not valid UTF-8"))
    }
}

/// Python 2 `str` (and protocol-0 strings) decoded as torch does (`encoding="utf-8"`), kept as
/// bytes when they are not UTF-8.
pub(super) fn py2_str(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::Str(Rc::from(s)),
        Err(_) => Value::Bytes(Rc::from(b)),
    }
}

/// Decodes a little-endian two's complement integer (LONG1/LONG4).
pub(super) fn decode_long(b: &[u8]) -> Value {
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
pub(super) fn raw_unicode_escape(b: &[u8]) -> String {
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
pub(super) fn unquote(line: &[u8]) -> Option<Vec<u8>> {
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
