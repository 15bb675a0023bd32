//! A small strict parser for the Python literals found in `.npy` headers: dicts, tuples, lists,
//! strings, integers, `True`, `False` and `None`. Nothing is evaluated.

use crate::NpyError;

/// Deepest nesting of containers accepted.
const MAX_DEPTH: usize = 16;
/// Most items accepted in one container.
const MAX_ITEMS: usize = 4096;

/// A parsed Python literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A string (`'...'` or `"..."`).
    Str(String),
    /// An integer (with an optional Python 2 `L` suffix in the source).
    Int(i128),
    /// `True` / `False`.
    Bool(bool),
    /// `None`.
    None,
    /// `( ... )` with a comma, or `()`.
    Tuple(Vec<Value>),
    /// `[ ... ]`.
    List(Vec<Value>),
    /// `{ key: value, ... }` in source order.
    Dict(Vec<(Value, Value)>),
}

impl std::fmt::Display for Value {
    /// Python-like rendering for error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seq = |f: &mut std::fmt::Formatter<'_>, items: &[Value]| {
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            Ok(())
        };
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Value::None => f.write_str("None"),
            Value::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            Value::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            Value::Dict(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    utf8: bool,
}

fn bad(pos: usize, what: impl Into<String>) -> NpyError {
    NpyError::Header {
        pos,
        problem: what.into(),
    }
}

/// Parses `src` (the header text; UTF-8 when `utf8`, else Latin-1) as one literal followed only
/// by whitespace.
pub(crate) fn parse(src: &[u8], utf8: bool) -> Result<Value, NpyError> {
    let mut p = Parser { src, pos: 0, utf8 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != src.len() {
        return Err(bad(p.pos, "unexpected text after the header dictionary"));
    }
    Ok(v)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, NpyError> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err(bad(self.pos, "header ends where a value is expected"));
        };
        match c {
            b'{' | b'(' | b'[' if depth >= MAX_DEPTH => Err(bad(
                self.pos,
                format!("nested deeper than {MAX_DEPTH} levels"),
            )),
            b'{' => self.dict(depth),
            b'(' => self.tuple(depth),
            b'[' => {
                self.pos += 1;
                let (items, _) = self.items(b']', depth)?;
                Ok(Value::List(items))
            }
            b'\'' | b'"' => self.string(),
            b'u' | b'U' if matches!(self.src.get(self.pos + 1), Some(b'\'' | b'"')) => {
                self.pos += 1;
                self.string()
            }
            b'-' | b'+' | b'0'..=b'9' => self.int(),
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => self.keyword(),
            _ => Err(bad(
                self.pos,
                format!("unexpected character {:?}", c as char),
            )),
        }
    }

    /// Comma-separated values up to `close`; returns them and whether a comma was seen.
    fn items(&mut self, close: u8, depth: usize) -> Result<(Vec<Value>, bool), NpyError> {
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            if self.eat(close) {
                return Ok((items, comma));
            }
            if items.len() >= MAX_ITEMS {
                return Err(bad(self.pos, format!("more than {MAX_ITEMS} items")));
            }
            items.push(self.value(depth + 1)?);
            if self.eat(b',') {
                comma = true;
            } else if self.eat(close) {
                return Ok((items, comma));
            } else {
                return Err(bad(
                    self.pos,
                    format!("expected ',' or '{}'", close as char),
                ));
            }
        }
    }

    fn tuple(&mut self, depth: usize) -> Result<Value, NpyError> {
        self.pos += 1;
        let (mut items, comma) = self.items(b')', depth)?;
        // `(x)` is x itself in Python; a tuple needs a comma unless it is empty
        if items.len() == 1 && !comma {
            return Ok(items.remove(0));
        }
        Ok(Value::Tuple(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Value, NpyError> {
        self.pos += 1;
        let mut entries: Vec<(Value, Value)> = Vec::new();
        loop {
            if self.eat(b'}') {
                return Ok(Value::Dict(entries));
            }
            if entries.len() >= MAX_ITEMS {
                return Err(bad(self.pos, format!("more than {MAX_ITEMS} entries")));
            }
            let key_pos = self.pos;
            let key = self.value(depth + 1)?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(bad(key_pos, format!("duplicate key {key}")));
            }
            if !self.eat(b':') {
                return Err(bad(self.pos, "expected ':' after a dictionary key"));
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            if !self.eat(b',') {
                if self.eat(b'}') {
                    return Ok(Value::Dict(entries));
                }
                return Err(bad(self.pos, "expected ',' or '}'"));
            }
        }
    }

    fn string(&mut self) -> Result<Value, NpyError> {
        let start = self.pos;
        let quote = self.peek().unwrap_or(b'\'');
        self.pos += 1;
        let mut raw = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(bad(start, "unterminated string"));
            };
            self.pos += 1;
            match c {
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(bad(start, "unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'\\' | b'\'' | b'"' => raw.push(e),
                        _ => {
                            return Err(bad(
                                self.pos - 2,
                                format!("unsupported escape \\{}", e as char),
                            ))
                        }
                    }
                }
                b'\n' => return Err(bad(start, "unterminated string")),
                _ if c == quote => break,
                _ => raw.push(c),
            }
        }
        let s = if self.utf8 {
            String::from_utf8(raw).map_err(|_| bad(start, "string is not valid UTF-8"))?
        } else {
            raw.into_iter().map(char::from).collect()
        };
        Ok(Value::Str(s))
    }

    fn int(&mut self) -> Result<Value, NpyError> {
        let start = self.pos;
        let mut neg = false;
        if let Some(s @ (b'-' | b'+')) = self.peek() {
            neg = s == b'-';
            self.pos += 1;
        }
        let mut v: i128 = 0;
        let mut digits = 0usize;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(d - b'0')))
                .ok_or_else(|| bad(start, "integer too large"))?;
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return Err(bad(start, "sign without digits"));
        }
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        if matches!(
            self.peek(),
            Some(b'.' | b'e' | b'E' | b'j' | b'J' | b'_' | b'x' | b'X' | b'o' | b'b')
        ) {
            return Err(bad(start, "only decimal integers are supported"));
        }
        Ok(Value::Int(if neg { -v } else { v }))
    }

    fn keyword(&mut self) -> Result<Value, NpyError> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_')
        ) {
            self.pos += 1;
        }
        match self.src.get(start..self.pos) {
            Some(b"True") => Ok(Value::Bool(true)),
            Some(b"False") => Ok(Value::Bool(false)),
            Some(b"None") => Ok(Value::None),
            Some(w) => Err(bad(
                start,
                format!("unexpected name {:?}", String::from_utf8_lossy(w)),
            )),
            None => Err(bad(start, "unexpected end")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Value, NpyError> {
        parse(s.as_bytes(), false)
    }

    #[test]
    fn parses_numpy_header() {
        let v =
            p("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }          \n").unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (Value::Str("descr".into()), Value::Str("<f4".into())),
                (Value::Str("fortran_order".into()), Value::Bool(false)),
                (
                    Value::Str("shape".into()),
                    Value::Tuple(vec![Value::Int(3), Value::Int(4)])
                ),
            ])
        );
    }

    #[test]
    fn tuples_follow_python() {
        assert_eq!(p("()").unwrap(), Value::Tuple(vec![]));
        assert_eq!(p("(3,)").unwrap(), Value::Tuple(vec![Value::Int(3)]));
        assert_eq!(p("(3)").unwrap(), Value::Int(3));
        assert_eq!(
            p("(3L, 4L)").unwrap(),
            Value::Tuple(vec![Value::Int(3), Value::Int(4)])
        );
        assert_eq!(p("-7").unwrap(), Value::Int(-7));
    }

    #[test]
    fn refuses_non_literals() {
        assert!(p("{'a': __import__('os')}").is_err());
        assert!(p("{'a': 1.5}").is_err());
        assert!(p("{'a': 1, 'a': 2}").is_err());
        assert!(p("{'a': 1} x").is_err());
        assert!(p("{'a': 'b").is_err());
        assert!(p("{'a' 1}").is_err());
        assert!(p("(,)").is_err());
        assert!(p("99999999999999999999999999999999999999999").is_err());
        assert!(p(&"(".repeat(100)).is_err());
    }
}
