//! End-to-end tests of the `convlens` binary on real and hostile files.

use serde_json::Value;
use std::path::{Path, PathBuf};
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

fn expected(name: &str) -> Value {
    let p = root().join("fixtures/expected").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Peak resident memory of finished child processes, in KiB.
fn children_max_rss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss
}

#[test]
fn hostile_corpus_fails_per_file_without_panic() {
    let dir = root().join("fixtures/hostile");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "py"))
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 14, "hostile corpus is incomplete: {files:?}");
    let good = "fixtures/zoo/cifar10-mini/resnet20_normal_s0.safetensors".to_string();
    let mut args = vec!["quality", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    args.push(&good);
    let out = convlens(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), files.len() + 1);
    for (item, f) in items.iter().zip(&files) {
        let err = item["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{f} did not fail"));
        assert!(
            err.contains(f.as_str()),
            "error does not name the file: {err}"
        );
        assert!(stderr.contains(err), "stderr lacks: {err}");
    }
    // the good model after them was still analysed
    let last = items.last().unwrap();
    assert_eq!(last["layers"].as_array().unwrap().len(), 19);
    // what each attack must say
    let msg = |name: &str| {
        items
            .iter()
            .zip(&files)
            .find(|(_, f)| f.ends_with(name))
            .map(|(i, _)| i["error"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(msg("os_system.pt").contains("`os.system`"));
    assert!(msg("eval.pth").contains("eval"));
    assert!(msg("external_etc_passwd.onnx").contains("../../etc/passwd"));
    assert!(msg("shape_larger_than_storage.pt").contains("storage holds 10"));
    assert!(msg("nan_inf_weights.safetensors").contains("2 non-finite"));
    assert!(msg("zero_size.safetensors").contains("zero elements"));
    assert!(msg("empty.pt").contains("empty"));
    assert!(msg("truncated_zip.pt").contains("zip"));
    assert!(msg("corrupt_legacy.pt").contains("truncated"));
    assert!(msg("object_array.npy").contains("object array"));
    // no allocation sized by a hostile header: the whole run stays small (largest file < 1 MB)
    let rss = children_max_rss_kib();
    assert!(rss < 96 * 1024, "peak RSS {rss} KiB");
}

#[test]
fn quality_json_matches_the_oracle_and_csv_agrees() {
    let f = "fixtures/zoo/cifar10-mini/resnet20_robust_s0.legacy.pt";
    let out = convlens(&["quality", "--format", "json", f]);
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &json[0];
    assert_eq!(m["file"], f);
    assert_eq!(m["format"], "torch-legacy");
    // the legacy file holds the same weights as the safetensors file the oracle analysed
    let exp = expected("resnet20_robust_s0.safetensors.json");
    let el = exp["models"][0]["layers"].as_array().unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), el.len());
    for (l, e) in layers.iter().zip(el) {
        for (k, ek) in [
            ("variance_entropy", "entropy"),
            ("orthogonality", "ortho"),
            ("sparsity", "layer_sparse_share"),
        ] {
            let (a, b) = (l[k].as_f64().unwrap(), e[ek].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{k}: {a} vs {b}");
        }
        assert_eq!(l["kernel"], serde_json::json!([3, 3]));
    }
    // CSV: one row per layer, same numbers
    let out = convlens(&["quality", "--format", "csv", f]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let col = headers
        .iter()
        .position(|h| h == "variance_entropy")
        .unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), layers.len());
    for (r, l) in rows.iter().zip(layers) {
        let v: f64 = r[col].parse().unwrap();
        assert_eq!(v, l["variance_entropy"].as_f64().unwrap());
    }
    // depth groups as CSV
    let out = convlens(&["quality", "--format", "csv", "--groups", f]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        1 + exp["models"][0]["depth_bins"].as_object().unwrap().len()
    );
}

#[test]
fn inspect_lists_every_conv_with_totals() {
    let f = "fixtures/third_party/rapidocr/ch_PP-OCRv4_det_infer.onnx";
    let out = convlens(&["inspect", "--format", "json", f]);
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = json[0]["layers"].as_array().unwrap();
    let exp = expected("thirdparty_ch_PP-OCRv4_det_infer.onnx.json");
    let n_conv = layers.iter().filter(|l| l["op"] == "Conv").count() as u64;
    assert_eq!(n_conv, exp["models"][0]["n_conv_layers"].as_u64().unwrap());
    let transposed: Vec<&Value> = layers.iter().filter(|l| l["transposed"] == true).collect();
    assert_eq!(transposed.len(), 2);
    assert!(transposed.iter().all(|l| l["conv_depth"].is_null()));
    let totals = json[0]["totals"].as_array().unwrap();
    let sum: u64 = totals.iter().map(|t| t["layers"].as_u64().unwrap()).sum();
    assert_eq!(sum as usize, layers.len());
    let t33 = totals
        .iter()
        .find(|t| t["kernel"] == serde_json::json!([3, 3]))
        .unwrap();
    let exp33 = exp["models"][0]["layers"].as_array().unwrap();
    let conv33 = layers
        .iter()
        .filter(|l| l["kh"] == 3 && l["kw"] == 3 && l["op"] == "Conv")
        .count();
    assert_eq!(conv33, exp33.len());
    assert!(t33["layers"].as_u64().unwrap() as usize >= conv33);
    // table output names the file and the totals
    let out = convlens(&["inspect", f]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("total 3x3"));
    assert!(text.contains("ConvTranspose"));
}

#[test]
fn output_is_identical_for_any_thread_count() {
    let dir = "examples/demo-zoo";
    let a = convlens(&["-j", "1", "quality", "--format", "json", dir]);
    let b = convlens(&["-j", "2", "quality", "--format", "json", dir]);
    let c = convlens(&["-j", "2", "quality", "--format", "json", dir]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(b.stdout, c.stdout);
}

#[test]
fn folders_are_searched_and_bad_usage_is_exit_2() {
    let out = convlens(&["inspect", "--format", "csv", "examples/demo-zoo"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for f in [
        "resnet20_normal_s0.ckpt",
        "resnet20_robust_s1.onnx",
        "resnet20_robust_s0.legacy.pt",
    ] {
        assert!(text.contains(f), "{f} missing");
    }
    let out = convlens(&["quality", "--kernel", "3", "x.pt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KxK"));
    let missing = Path::new("no/such/file.pt");
    let out = convlens(&["quality", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.pt"));
}

#[test]
fn entry_picks_a_model_of_a_training_checkpoint() {
    let f = "fixtures/checkpoints/gan.pt";
    // default: the generator (first in file order), the discriminator listed in the notes
    let out = convlens(&["inspect", "--format", "json", f]);
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["entry"], "G");
    let shapes: Vec<&Value> = json[0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["shape"])
        .collect();
    assert_eq!(
        shapes,
        [
            &serde_json::json!([8, 8, 3, 3]),
            &serde_json::json!([4, 8, 3, 3]),
            &serde_json::json!([3, 4, 3, 3])
        ]
    );
    // --entry D: its two convs
    let out = convlens(&["quality", "--format", "json", "--entry", "D", f]);
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["entry"], "D");
    assert_eq!(json[0]["layers"].as_array().unwrap().len(), 2);
    // an unknown entry: exit 1, the file and the candidates named
    let out = convlens(&["inspect", "--entry", "generator", f]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("gan.pt") && err.contains("`G`, `D`"), "{err}");
}

#[test]
fn report_reads_the_asked_entry() {
    let out_dir =
        std::env::temp_dir().join(format!("convlens-report-entry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let o = out_dir.display().to_string();
    let f = "fixtures/checkpoints/model_ema.pt";
    let out = convlens(&[
        "report",
        f,
        "-o",
        &o,
        "--figures",
        "filters",
        "--entry",
        "model_ema",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("db/models/model_ema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["entry"], "model_ema");
    let table = std::fs::read_to_string(out_dir.join("db/models.csv")).unwrap();
    assert!(table.lines().next().unwrap().contains(",entry,"), "{table}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
