//! Natural ("human") ordering of tensor names, identical to the oracle's Python key
//! `[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]`.

use std::cmp::Ordering;

/// First code point (the digit zero) of every run of ten Unicode decimal digits (category Nd,
/// which Python's `\d` matches), Unicode 14.0 as in Python 3.11. Unicode guarantees that decimal
/// digits come in contiguous runs from 0 to 9.
const DIGIT_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// Value of `c` if it is a Unicode decimal digit.
fn digit_value(c: char) -> Option<u32> {
    let cp = c as u32;
    if c.is_ascii() {
        return c.to_digit(10);
    }
    // last zero not above cp
    let i = DIGIT_ZEROS.partition_point(|&z| z <= cp);
    let zero = *DIGIT_ZEROS.get(i.checked_sub(1)?)?;
    let v = cp - zero;
    (v < 10).then_some(v)
}

/// Splits a name into alternating text and digit-run tokens, starting and ending with a
/// (possibly empty) text token, like `re.split(r"(\d+)", s)`.
struct Tokens<'a> {
    rest: &'a str,
    next_is_text: bool,
    done: bool,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let want_digit = !self.next_is_text;
        let end = self
            .rest
            .char_indices()
            .find(|&(_, c)| digit_value(c).is_some() != want_digit)
            .map_or(self.rest.len(), |(i, _)| i);
        let (tok, rest) = self.rest.split_at(end);
        self.rest = rest;
        if self.next_is_text && rest.is_empty() {
            self.done = true;
        }
        self.next_is_text = !self.next_is_text;
        Some(tok)
    }
}

/// Compares two non-empty runs of decimal digits by numeric value, for any length.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    let is_zero = |c: char| digit_value(c) == Some(0);
    let (x, y) = (a.trim_start_matches(is_zero), b.trim_start_matches(is_zero));
    let value = |c: char| digit_value(c).unwrap_or(0);
    x.chars()
        .count()
        .cmp(&y.chars().count())
        .then_with(|| x.chars().map(value).cmp(y.chars().map(value)))
}

/// Orders names the way the oracle's `natural_key` does: text parts by code point, digit runs by
/// numeric value (any length, leading zeros ignored), a name that is a prefix of the other first.
/// Names that differ only in leading zeros compare equal (break ties with `str::cmp`).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut ta = Tokens {
        rest: a,
        next_is_text: true,
        done: false,
    };
    let mut tb = Tokens {
        rest: b,
        next_is_text: true,
        done: false,
    };
    let mut is_text = true;
    loop {
        match (ta.next(), tb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = if is_text { x.cmp(y) } else { cmp_digits(x, y) };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
        is_text = !is_text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<&str> {
        Tokens {
            rest: s,
            next_is_text: true,
            done: false,
        }
        .collect()
    }

    #[test]
    fn splits_like_re_split() {
        // re.split(r"(\d+)", s) in Python
        assert_eq!(tokens(""), vec![""]);
        assert_eq!(tokens("abc"), vec!["abc"]);
        assert_eq!(tokens("12"), vec!["", "12", ""]);
        assert_eq!(tokens("a1b22"), vec!["a", "1", "b", "22", ""]);
        assert_eq!(tokens("x\u{663}y"), vec!["x", "\u{663}", "y"]);
    }

    #[test]
    fn digit_values() {
        assert_eq!(digit_value('7'), Some(7));
        assert_eq!(digit_value('\u{669}'), Some(9)); // ARABIC-INDIC DIGIT NINE
        assert_eq!(digit_value('\u{FF10}'), Some(0)); // FULLWIDTH DIGIT ZERO
        assert_eq!(digit_value('\u{1D7FF}'), Some(9)); // MATHEMATICAL MONOSPACE DIGIT NINE
        assert_eq!(digit_value('\u{B2}'), None); // SUPERSCRIPT TWO is not Nd
        assert_eq!(digit_value('a'), None);
        assert_eq!(digit_value('\u{65F}'), None);
    }
}
