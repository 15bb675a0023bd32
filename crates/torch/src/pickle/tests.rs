//! Unit tests of the pickle machine: scalars and containers, reference cycles, LONG1,
//! protocol-0 text opcodes and marks.

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
