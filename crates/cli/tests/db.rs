//! The database commands end to end: build, status, basis, shift, kl-matrix, aggregate.

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
    let d = std::env::temp_dir().join(format!("convlens-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.display().to_string()
}

#[test]
fn demo_zoo_study_is_deterministic_across_thread_counts() {
    let db = tmp("db");
    let out = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--meta",
        "examples/demo-zoo/meta.csv",
        "-o",
        &db,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 models (4 added"), "{err}");
    for f in [
        "models.parquet",
        "models.csv",
        "layers.parquet",
        "layers.csv",
        "status.csv",
    ] {
        assert!(std::path::Path::new(&db).join(f).exists(), "{f} missing");
    }
    let mut outputs = Vec::new();
    for j in ["1", "2"] {
        let o = tmp(&format!("shift{j}"));
        let r = convlens(&[
            "-j",
            j,
            "shift",
            &db,
            "--by",
            "Robust",
            "--pairs",
            "examples/demo-zoo/pairings.csv",
            "-o",
            &o,
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let files: Vec<Vec<u8>> = [
            "shift.json",
            "shift.csv",
            "shift.parquet",
            "shift_pairs.csv",
        ]
        .iter()
        .map(|f| std::fs::read(std::path::Path::new(&o).join(f)).unwrap())
        .collect();
        outputs.push(files);
    }
    assert_eq!(outputs[0], outputs[1]);
    let csv = String::from_utf8(outputs[0][1].clone()).unwrap();
    assert_eq!(csv.lines().count(), 1 + 12, "{csv}");
    assert!(csv.lines().nth(1).unwrap().contains(",overall,False,True,"));
    // pairs table: two pairs x 12 cells
    let pairs = String::from_utf8(outputs[0][3].clone()).unwrap();
    assert_eq!(pairs.lines().count(), 1 + 24);
    for cmd in [
        vec!["basis", db.as_str(), "--by", "Robust"],
        vec!["kl-matrix", db.as_str(), "--by", "model"],
        vec!["aggregate", db.as_str(), "--by", "Robust"],
    ] {
        let r = convlens(&cmd);
        assert!(
            r.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert!(v.is_object());
    }
    let r = convlens(&["kl-matrix", &db, "--by", "model"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["labels"].as_array().unwrap().len(), 4);
    assert_eq!(v["kl"][0][0], 0.0);
    assert_eq!(v["kl"][0][1], v["kl"][1][0]);
    let r = convlens(&["db", "status", &db]);
    assert!(r.status.success());
    let _ = std::fs::remove_dir_all(&db);
}

#[test]
fn failures_in_a_build_change_the_exit_code() {
    let zoo = tmp("badzoo");
    std::fs::create_dir_all(&zoo).unwrap();
    std::fs::copy(
        root().join("examples/demo-zoo/resnet20_robust_s1.onnx"),
        format!("{zoo}/resnet20_robust_s1.onnx"),
    )
    .unwrap();
    std::fs::write(format!("{zoo}/broken.pt"), b"PK\x03\x04 not really").unwrap();
    let db = tmp("baddb");
    let r = convlens(&["db", "build", &zoo, "-o", &db]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("failed: broken (broken.pt)"), "{err}");
    assert!(err.contains("1 models (1 added"), "{err}");
    let r = convlens(&["db", "status", &db]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stdout).contains("broken,broken.pt,failed,"));
    let r = convlens(&["shift", "/nonexistent/db"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not a convlens database"));
    let _ = std::fs::remove_dir_all(&zoo);
    let _ = std::fs::remove_dir_all(&db);
}
