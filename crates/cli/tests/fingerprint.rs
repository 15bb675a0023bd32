//! `convlens fingerprint` end to end, and the statistics columns of `shift` / `aggregate`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn convlens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convlens"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run convlens")
}

fn tmp(tag: &str) -> String {
    let d = std::env::temp_dir().join(format!("convlens-cli-fp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.display().to_string()
}

#[test]
fn fingerprint_reports_probability_and_evidence_and_refuses_clearly() {
    let r = convlens(&[
        "fingerprint",
        "examples/demo-zoo/resnet20_robust_s1.onnx",
        "examples/demo-zoo/resnet20_normal_s1.safetensors",
        "fixtures/third_party/lpips/alex_v0.1.pth",
        "--format",
        "json",
    ]);
    // one refused file: exit code 1, the others still reported
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("refused") && err.contains("alex_v0.1.pth"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 3);
    for m in &a[..2] {
        let p = m["probability_robust"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(m["evidence"].as_array().unwrap().len(), 3);
        assert_eq!(m["spectrum"].as_array().unwrap().len(), 9);
    }
    assert!(a[2]["error"]
        .as_str()
        .unwrap()
        .contains("non-sparse 3x3 filters"));
    // a folder: its image archive (no convolution) is skipped, the four models reported
    let r = convlens(&["fingerprint", "--format", "json", "examples/demo-zoo"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("skipped (no 3x3 convolution)"));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    // the text table names the features and the reference medians
    let r = convlens(&["fingerprint", "examples/demo-zoo/resnet20_robust_s1.onnx"]);
    assert!(r.status.success());
    let t = String::from_utf8_lossy(&r.stdout);
    assert!(
        t.contains("P(adversarially trained)") && t.contains("robust median"),
        "{t}"
    );
}

#[test]
fn fingerprint_train_writes_the_bundled_model_again() {
    let out = tmp("train");
    std::fs::create_dir_all(&out).unwrap();
    let model = format!("{out}/fingerprint.json");
    let r = convlens(&[
        "fingerprint",
        "--train",
        "fixtures/paper/model_spectra.csv",
        "--validate",
        "examples/demo-zoo",
        "-o",
        &model,
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("leave-one-paper-out accuracy"), "{err}");
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    let bundled: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("crates/convlens/data/fingerprint.json")).unwrap(),
    )
    .unwrap();
    for k in ["model", "reference", "training_names"] {
        assert_eq!(ours[k], bundled[k], "{k}");
    }
    assert_eq!(
        ours["validation"]["leave_one_paper_out"],
        bundled["validation"]["leave_one_paper_out"]
    );
    assert_eq!(
        ours["validation"]["transfer"][0],
        bundled["validation"]["transfer"][0]
    );
    // the model file is usable with --model
    let r = convlens(&[
        "fingerprint",
        "--model",
        &model,
        "examples/demo-zoo/resnet20_robust_s1.onnx",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // a model whose reference populations are empty is refused (no panic)
    let mut v = ours.clone();
    v["reference"][0]["robust"] = serde_json::json!([]);
    std::fs::write(&model, v.to_string()).unwrap();
    let r = convlens(&["fingerprint", "--model", &model, "examples/demo-zoo"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("reference populations"));
    // a broken model file is refused with its name
    std::fs::write(&model, "{\"not\": \"a model\"}").unwrap();
    let r = convlens(&["fingerprint", "--model", &model, "examples/demo-zoo"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("fingerprint.json"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn shift_and_aggregate_tables_carry_the_tests() {
    let db = tmp("db");
    let r = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--meta",
        "examples/demo-zoo/meta.csv",
        "-o",
        &db,
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let o = tmp("shift");
    let r = convlens(&["shift", &db, "--bootstrap", "0", "-o", &o]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let csv = std::fs::read_to_string(format!("{o}/shift.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for c in [
        "kl_smoothed",
        "p_value",
        "q_value",
        "significant",
        "effect_size",
        "kl_over_floor",
    ] {
        assert!(header.contains(&c), "{c} missing: {header:?}");
    }
    let p = header.iter().position(|c| *c == "p_value").unwrap();
    let n = header.iter().position(|c| *c == "permutations").unwrap();
    for line in csv.lines().skip(1) {
        // depth labels such as "(0.0, 0.1]" are quoted: count the fields from the end
        let f: Vec<&str> = line.split(',').collect();
        let at = |i: usize| f[f.len() - (header.len() - i)];
        // 2 vs 2 models: the 6 labellings are enumerated
        assert_eq!(at(n), "6", "{line}");
        let pv: f64 = at(p).parse().unwrap();
        assert!(pv >= 1.0 / 3.0 - 1e-12, "{line}");
    }
    let r = convlens(&["aggregate", &db, "--by", "Robust", "-o", &o]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let t = std::fs::read_to_string(format!("{o}/aggregate_tests.csv")).unwrap();
    assert_eq!(t.lines().count(), 1 + 3 * 11, "{t}");
    let _ = std::fs::remove_dir_all(&db);
    let _ = std::fs::remove_dir_all(&o);
}
