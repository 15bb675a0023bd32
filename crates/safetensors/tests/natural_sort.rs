//! Natural sort order against Python's
//! `sorted(sorted(keys), key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])`.

use std::cmp::Ordering;

use convlens_safetensors::natural_cmp;

#[test]
fn features_10_after_features_2() {
    assert_eq!(
        natural_cmp("features.10.weight", "features.2.weight"),
        Ordering::Greater
    );
    assert_eq!(
        natural_cmp("layer2.0.conv1", "layer10.0.conv1"),
        Ordering::Less
    );
}

#[test]
fn thirty_digit_numbers_do_not_overflow() {
    let a = "a123456789012345678901234567890";
    let b = "a123456789012345678901234567891";
    let c = "a99999999999999999999999999999"; // 29 digits, smaller
    assert_eq!(natural_cmp(a, b), Ordering::Less);
    assert_eq!(natural_cmp(c, a), Ordering::Less);
    assert_eq!(natural_cmp(b, b), Ordering::Equal);
}

#[test]
fn leading_zeros_compare_equal() {
    assert_eq!(natural_cmp("b007", "b7"), Ordering::Equal);
    assert_eq!(natural_cmp("conv007.w", "conv7.w"), Ordering::Equal);
    // the number ties, the following text decides
    assert_eq!(natural_cmp("b07x", "b7a"), Ordering::Greater);
    assert_eq!(
        natural_cmp(
            "a000123456789012345678901234567890",
            "a123456789012345678901234567890"
        ),
        Ordering::Equal
    );
}

#[test]
fn matches_python_order() {
    let mut names = vec![
        "features.10.weight",
        "features.2.weight",
        "features.1.bias",
        "features.1",
        "features",
        "features.",
        "layer1.0.conv1.weight",
        "layer10.0.conv1.weight",
        "layer2.0.conv1.weight",
        "a000123456789012345678901234567890",
        "a123456789012345678901234567891",
        "a99999999999999999999999999999",
        "b007",
        "b7",
        "b07x",
        "b7a",
        "Conv",
        "conv",
        "10",
        "9",
        "",
        "x\u{663}",
        "x2",
        "x4",
        "_a",
        "a_b",
        "a.b",
    ];
    // Python's sort is stable over the byte-sorted keys that safetensors lists
    names.sort_by(|a, b| natural_cmp(a, b).then_with(|| a.cmp(b)));
    let python = [
        "",
        "9",
        "10",
        "Conv",
        "_a",
        "a99999999999999999999999999999",
        "a000123456789012345678901234567890",
        "a123456789012345678901234567891",
        "a.b",
        "a_b",
        "b007",
        "b7",
        "b7a",
        "b07x",
        "conv",
        "features",
        "features.",
        "features.1",
        "features.1.bias",
        "features.2.weight",
        "features.10.weight",
        "layer1.0.conv1.weight",
        "layer2.0.conv1.weight",
        "layer10.0.conv1.weight",
        "x2",
        "x\u{663}", // ARABIC-INDIC DIGIT THREE: Python's \d matches it, int() gives 3
        "x4",
    ];
    assert_eq!(names, python);
}
