//! Reading real meta tables and CSV inference rules. Expected numbers were checked by hand with
//! Python's `csv` module (row counts, sums in file order, counts of `True`).

use convlens_table::{Column, Table};
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

fn shared(rel: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if root.is_dir() {
        Some(root.join(rel))
    } else {
        eprintln!("SKIPPED: ../shared not found");
        None
    }
}

fn types(t: &Table) -> Vec<(String, &'static str)> {
    t.columns()
        .map(|(n, c)| (n.to_string(), c.type_name()))
        .collect()
}

fn ty(t: &Table, name: &str) -> &'static str {
    t.require(name).unwrap().type_name()
}

#[test]
fn cifar10_mini_meta() {
    let t = Table::read_csv(&fixture("zoo/cifar10-mini/meta.csv"), true).unwrap();
    assert_eq!(t.n_rows(), 12);
    assert_eq!(t.n_columns(), 16);
    let expect = [
        ("Name", "str"),
        ("Robust", "bool"),
        ("Clean Accuracy", "f64"),
        ("Robust Accuracy", "f64"),
        ("Network", "str"),
        ("Training-Dataset", "str"),
        ("Seed", "i64"),
        ("Epochs", "i64"),
        ("Threat", "str"),
        ("Eps", "str"),
        ("Train Attack", "str"),
        ("Eval Attack", "str"),
        ("Params", "i64"),
        ("Input Mean", "str"),
        ("Input Std", "str"),
        ("Files", "str"),
    ];
    let got = types(&t);
    let want: Vec<(String, &str)> = expect.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    assert_eq!(got, want);

    let robust = t.require("Robust").unwrap().as_bool().unwrap();
    assert_eq!(robust.iter().filter(|x| **x == Some(true)).count(), 6);
    let clean = t.require("Clean Accuracy").unwrap().as_f64().unwrap();
    let sum: f64 = clean.iter().map(|x| x.unwrap()).sum();
    assert_eq!(sum, 839.2299999999999);
    let params: i64 = t
        .require("Params")
        .unwrap()
        .as_i64()
        .unwrap()
        .iter()
        .map(|x| x.unwrap())
        .sum();
    assert_eq!(params, 10_399_224);
    let epochs: Vec<i64> = t
        .require("Epochs")
        .unwrap()
        .as_i64()
        .unwrap()
        .iter()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(epochs, [5, 4, 23, 14, 9, 12, 6, 7, 28, 20, 23, 9]);
    // Quoted fields with commas.
    let names = t.require("Name").unwrap().as_str().unwrap();
    assert_eq!(names[1].as_deref(), Some("mobilenetv2_x0_5_robust_s0"));
    let train = t.require("Train Attack").unwrap().as_str().unwrap();
    assert_eq!(train[0].as_deref(), Some("none"));
    assert_eq!(
        train[1].as_deref(),
        Some("PGD-3 (alpha 2.5*eps/3, random start)")
    );
    let eval = t.require("Eval Attack").unwrap().as_str().unwrap();
    assert_eq!(
        eval[11].as_deref(),
        Some("PGD-10 (alpha 2/255, random start), 200 test images (20 per class)")
    );
    assert_eq!(names[11].as_deref(), Some("wrn16_2_robust_s0"));
    assert_eq!(clean[11], Some(60.49));
}

#[test]
fn cifar10_mini_meta_with_bom_and_crlf() {
    let raw = std::fs::read(fixture("zoo/cifar10-mini/meta.csv")).unwrap();
    let plain = Table::from_csv_bytes(&raw, true).unwrap();
    let mut dos = b"\xEF\xBB\xBF".to_vec();
    for &b in &raw {
        if b == b'\n' {
            dos.push(b'\r');
        }
        dos.push(b);
    }
    let t = Table::from_csv_bytes(&dos, true).unwrap();
    assert_eq!(t.names().next(), Some("Name"));
    assert_eq!(t, plain);
}

#[test]
fn paper_robustness_meta() {
    let Some(p) = shared("paper/robustness_meta.csv") else {
        return;
    };
    let t = Table::read_csv(&p, true).unwrap();
    assert_eq!(t.n_rows(), 117);
    assert_eq!(t.n_columns(), 21);
    assert_eq!(ty(&t, "Name"), "str");
    assert_eq!(ty(&t, "Paper"), "str");
    assert_eq!(ty(&t, "Robust"), "bool");
    assert_eq!(ty(&t, "Pretraining-Dataset"), "bool");
    assert_eq!(ty(&t, "Clean Accuracy"), "f64");
    assert_eq!(ty(&t, "Robust Accuracy"), "f64");
    assert_eq!(ty(&t, "Backbone"), "str");
    // Entirely empty columns carry no type evidence: Str of None.
    for empty in [
        "Tracer Warning",
        "Selection",
        "Hide",
        "Input Shape",
        "Accessible",
    ] {
        let c = t.require(empty).unwrap().as_str().unwrap();
        assert!(c.iter().all(Option::is_none), "{empty}");
    }
    let robust = t.require("Robust").unwrap().as_bool().unwrap();
    assert_eq!(robust.iter().filter(|x| **x == Some(true)).count(), 71);
    let pre = t.require("Pretraining-Dataset").unwrap().as_bool().unwrap();
    assert_eq!(pre.iter().filter(|x| **x == Some(true)).count(), 17);
    let paper = t.require("Paper").unwrap().as_str().unwrap();
    assert_eq!(paper.iter().filter(|x| x.is_none()).count(), 3);
    let clean = t.require("Clean Accuracy").unwrap().as_f64().unwrap();
    assert_eq!(clean.iter().map(|x| x.unwrap()).sum::<f64>(), 9493.9);
    let ra = t.require("Robust Accuracy").unwrap().as_f64().unwrap();
    assert_eq!(
        ra.iter().map(|x| x.unwrap()).sum::<f64>(),
        3426.040000000001
    );
    let names = t.require("Name").unwrap().as_str().unwrap();
    assert_eq!(
        names[0].as_deref(),
        Some("robustbench_Salman2020Do_50_2_imagenet_linf_13")
    );
    assert_eq!(names[116].as_deref(), Some("timm_resnet18_imagenet1k_13"));
    assert_eq!(clean[116], Some(69.74));
}

fn infer_one(cells: &str) -> Column {
    let text = format!("x\n{}\n", cells.replace('|', "\n"));
    let t = Table::from_csv_bytes(text.as_bytes(), true).unwrap();
    t.require("x").unwrap().clone()
}

#[test]
fn inference_rules() {
    assert_eq!(
        infer_one("True|false|TRUE|\"\""),
        Column::Bool(vec![Some(true), Some(false), Some(true), None])
    );
    assert_eq!(
        infer_one("1| -2 |+3|NA"),
        Column::I64(vec![Some(1), Some(-2), Some(3), None])
    );
    // ints mixed with floats, nan and inf become F64
    let c = infer_one("1|2.5|nan|-inf|1e-3|N/A");
    let v = c.as_f64().unwrap();
    assert_eq!(v[0], Some(1.0));
    assert_eq!(v[1], Some(2.5));
    assert!(v[2].unwrap().is_nan());
    assert_eq!(v[3], Some(f64::NEG_INFINITY));
    assert_eq!(v[4], Some(0.001));
    assert_eq!(v[5], None);
    // too large for i64
    assert_eq!(
        infer_one("99999999999999999999|1"),
        Column::F64(vec![Some(1e20), Some(1.0)])
    );
    // anything else keeps the text verbatim, NA markers included
    assert_eq!(
        infer_one("8/255| 1 |NA"),
        Column::Str(vec![
            Some("8/255".into()),
            Some(" 1 ".into()),
            Some("NA".into())
        ])
    );
    assert_eq!(
        infer_one("True|1"),
        Column::Str(vec![Some("True".into()), Some("1".into())])
    );
    // only NA markers: no evidence, Str
    assert_eq!(
        infer_one("NA|\"\""),
        Column::Str(vec![Some("NA".into()), None])
    );
}

#[test]
fn duplicate_and_empty_headers_like_pandas() {
    let t = Table::from_csv_bytes(b",a,a,a.1\n0,1,2,3\n", true).unwrap();
    assert_eq!(t.names().collect::<Vec<_>>(), ["", "a", "a.1", "a.1.1"]);
    assert_eq!(t.require("a.1").unwrap(), &Column::I64(vec![Some(2)]));
}

#[test]
fn infer_false_keeps_text() {
    let t = Table::from_csv_bytes(b"a,b\n1,True\n,x\n", false).unwrap();
    assert_eq!(
        t.require("a").unwrap(),
        &Column::Str(vec![Some("1".into()), None])
    );
    assert_eq!(
        t.require("b").unwrap(),
        &Column::Str(vec![Some("True".into()), Some("x".into())])
    );
}
