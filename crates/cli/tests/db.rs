//! The database commands end to end: build, status, basis, shift, kl-matrix, aggregate.

use convlens_testdata::{root, tree};
use std::process::{Command, Output};

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

#[test]
fn partial_builds_merge_to_the_single_build() {
    let meta = "examples/demo-zoo/meta.csv";
    let single = tmp("merge-single");
    let out = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--meta",
        meta,
        "-o",
        &single,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // three parts by the shard selector
    let mut parts = Vec::new();
    for i in 0..3 {
        let p = tmp(&format!("merge-part{i}"));
        let part = format!("{i}/3");
        let out = convlens(&[
            "-j",
            "1",
            "db",
            "build",
            "examples/demo-zoo",
            "--meta",
            meta,
            "--part",
            &part,
            "-o",
            &p,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parts.push(p);
    }
    let merged = tmp("merge-merged");
    let mut args = vec!["db", "merge"];
    args.extend(parts.iter().map(String::as_str));
    args.extend(["-o", &merged]);
    let out = convlens(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("merged 3 databases") && err.contains("4 models"),
        "{err}"
    );
    // two partial databases by file lists (a list file with a comment, and single files)
    let list = tmp("merge-list.txt");
    std::fs::write(
        &list,
        "# the robust ones\nresnet20_robust_s0.legacy.pt\n\nresnet20_robust_s1.onnx\r\n",
    )
    .unwrap();
    let (la, lb) = (tmp("merge-la"), tmp("merge-lb"));
    let out = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--meta",
        meta,
        "--files",
        &list,
        "-o",
        &la,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--meta",
        meta,
        "--file",
        "resnet20_normal_s0.ckpt",
        "--file",
        "resnet20_normal_s1.safetensors",
        "--file",
        "adv_examples.npz",
        "-o",
        &lb,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged_lists = tmp("merge-merged-lists");
    let out = convlens(&["db", "merge", &la, &lb, "-o", &merged_lists]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ts = tree(std::path::Path::new(&single));
    assert!(ts.contains_key("build.json") && ts.contains_key("filters/3x3/resnet20_robust_s1.npy"));
    for m in [&merged, &merged_lists] {
        assert!(
            ts == tree(std::path::Path::new(m)),
            "{m} differs from the single build"
        );
        // as `diff -r` sees it, where it is installed
        if let Ok(d) = Command::new("diff").args(["-r", &single, m]).output() {
            assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stdout));
        }
    }
    // refusals: other settings, a bad part, a missing list
    let k = tmp("merge-kernel");
    let out = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--meta",
        meta,
        "--kernel",
        "all",
        "--part",
        "1/3",
        "-o",
        &k,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = tmp("merge-bad");
    let out = convlens(&["db", "merge", &parts[0], &k, "-o", &bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("different settings") && err.contains("kernel: 3x3 vs all"),
        "{err}"
    );
    let out = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--part",
        "3/3",
        "-o",
        &bad,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid part \"3/3\""), "{err}");
    let out = convlens(&[
        "db",
        "build",
        "examples/demo-zoo",
        "--files",
        "no-such-list.txt",
        "-o",
        &bad,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-list.txt"), "{err}");
    for d in parts
        .iter()
        .chain([&single, &merged, &la, &lb, &merged_lists, &k, &bad])
    {
        let _ = std::fs::remove_dir_all(d);
    }
    let _ = std::fs::remove_file(&list);
}
