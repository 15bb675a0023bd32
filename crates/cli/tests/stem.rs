//! `convlens stem` end to end: tables, JSON and figures, image pairs, failures.

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

fn tmp(tag: &str) -> String {
    let d = std::env::temp_dir().join(format!("convlens-cli-stem-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.display().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const IMAGES: &str = "fixtures/stem/adv_examples.npz";
const ST: &str = "fixtures/zoo/cifar10-mini/resnet20_robust_s0.safetensors";
const ONNX: &str = "fixtures/zoo/cifar10-mini/resnet20_normal_s0.onnx";
const META: &str = "fixtures/zoo/cifar10-mini/meta.csv";

#[test]
fn two_models_give_tables_json_and_figures_independent_of_threads() {
    let mut runs = Vec::new();
    for j in ["1", "2"] {
        let out = tmp(&format!("two{j}"));
        let r = convlens(&[
            "-j", j, "stem", ST, ONNX, "--images", IMAGES, "--meta", META, "--steps", "3", "-o",
            &out,
        ]);
        let err = text(&r.stderr);
        assert!(r.status.success(), "{err}");
        // which layer, what was folded, what was assumed
        assert!(
            err.contains("resnet20_robust_s0: stem conv1 (16×3×3×3"),
            "{err}"
        );
        assert!(err.contains("BatchNorm bn1 folded (found by name"), "{err}");
        assert!(
            err.contains("assumed (no graph): stride 1, padding 1x1"),
            "{err}"
        );
        assert!(
            err.contains("resnet20_normal_s0: stem /conv1/Conv"),
            "{err}"
        );
        assert!(err.contains("normalisation: meta table"), "{err}");
        let stdout = text(&r.stdout);
        assert!(stdout.contains("resnet20_robust_s0") && stdout.contains("resnet20_normal_s0"));
        assert!(
            stdout.contains("robust ") && stdout.contains("normal "),
            "{stdout}"
        );
        let dir = Path::new(&out);
        for f in [
            "stem.json",
            "stem_filters.csv",
            "stem_filters.parquet",
            "stem_models.csv",
            "stem_models.parquet",
        ] {
            assert!(dir.join(f).exists(), "{f} missing");
        }
        for m in ["resnet20_robust_s0", "resnet20_normal_s0"] {
            for ext in ["svg", "png", "pdf"] {
                let p = dir.join(format!("stem_{m}.{ext}"));
                assert!(
                    std::fs::metadata(&p).unwrap().len() > 1000,
                    "{}",
                    p.display()
                );
            }
            let svg = std::fs::read_to_string(dir.join(format!("stem_{m}.svg"))).unwrap();
            // 16 channels × 4 rows
            assert_eq!(svg.matches("class=\"act\"").count(), 64);
        }
        let models = std::fs::read_to_string(dir.join("stem_models.csv")).unwrap();
        assert_eq!(models.lines().count(), 3, "{models}");
        let header = models.lines().next().unwrap();
        for c in [
            "model",
            "robust",
            "layer",
            "batch_norm",
            "centre_share",
            "relu_removed",
            "stem_gain",
        ] {
            assert!(header.split(',').any(|h| h == c), "{c} not in {header}");
        }
        assert!(models.contains(",True,conv1,") && models.contains(",False,/conv1/Conv,"));
        let filters = std::fs::read_to_string(dir.join("stem_filters.csv")).unwrap();
        assert_eq!(filters.lines().count(), 1 + 32);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("stem.json")).unwrap()).unwrap();
        assert_eq!(json["reports"].as_array().unwrap().len(), 2);
        assert_eq!(json["failed"].as_array().unwrap().len(), 0);
        assert_eq!(json["robust_vs_normal"]["robust"]["models"], 1);
        assert_eq!(
            json["reports"][0]["summary"]["perturbed_key"],
            "resnet20_robust_s0"
        );
        runs.push(
            [
                "stem.json",
                "stem_models.csv",
                "stem_filters.csv",
                "stem_resnet20_robust_s0.svg",
            ]
            .map(|f| std::fs::read(dir.join(f)).unwrap()),
        );
    }
    assert!(runs[0] == runs[1], "outputs differ between -j 1 and -j 2");
}

#[test]
fn a_failing_model_does_not_stop_the_others() {
    let out = tmp("fail");
    std::fs::create_dir_all(&out).unwrap();
    let bad = Path::new(&out).join("not_a_model.onnx");
    std::fs::write(&bad, b"hello").unwrap();
    let r = convlens(&[
        "stem",
        bad.to_str().unwrap(),
        ST,
        "--images",
        IMAGES,
        "--steps",
        "0",
        "-o",
        &out,
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", text(&r.stderr));
    let err = text(&r.stderr);
    assert!(
        err.contains("failed: ") && err.contains("not_a_model.onnx"),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("stem.json")).unwrap())
            .unwrap();
    assert_eq!(json["reports"].as_array().unwrap().len(), 1);
    assert_eq!(json["failed"][0]["model"], "not_a_model");
    assert!(json["reports"][0]["summary"]["stem_gain"].is_null());
}

#[test]
fn unknown_perturbed_key_names_the_available_ones() {
    let r = convlens(&[
        "stem",
        ST,
        "--images",
        IMAGES,
        "--perturbed",
        "nope",
        "--steps",
        "0",
    ]);
    assert_eq!(r.status.code(), Some(1));
    let err = text(&r.stderr);
    assert!(err.contains("no perturbed images \"nope\""), "{err}");
    assert!(err.contains("resnet20_normal_s0"), "{err}");
}

fn npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_image_pair_with_normalisation_flags() {
    let out = tmp("pair");
    std::fs::create_dir_all(&out).unwrap();
    let dir = Path::new(&out);
    let clean: Vec<f32> = (0..3 * 32 * 32).map(|i| (i % 97) as f32 / 97.0).collect();
    let adv: Vec<f32> = clean
        .iter()
        .enumerate()
        .map(|(i, v)| (v + if i % 2 == 0 { 0.03 } else { -0.03 }).clamp(0.0, 1.0))
        .collect();
    npy(&dir.join("clean.npy"), &[3, 32, 32], &clean);
    npy(&dir.join("adv.npy"), &[3, 32, 32], &adv);
    let adv_path = dir.join("adv.npy").display().to_string();
    let r = convlens(&[
        "stem",
        ST,
        "--images",
        dir.join("clean.npy").to_str().unwrap(),
        "--perturbed",
        &adv_path,
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--eps",
        "4/255",
        "--steps",
        "2",
        "-o",
        &out,
    ]);
    let err = text(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("normalisation: options"), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stem.json")).unwrap()).unwrap();
    let s = &json["reports"][0]["summary"];
    assert_eq!(s["perturbed_key"], "adv.npy");
    assert!((s["eps"].as_f64().unwrap() - 4.0 / 255.0).abs() < 1e-12);
    assert!((s["perturbation_linf"].as_f64().unwrap() - 0.03).abs() < 1e-6);
    assert_eq!(json["n_images"], 1);
}

#[test]
fn whole_shared_zoo_gives_twelve_rows() {
    let zoo = root().join("../shared/zoo/cifar10-mini");
    if !zoo.is_dir() {
        eprintln!("SKIPPED: ../shared not found");
        return;
    }
    let out = tmp("zoo");
    let models: Vec<String> = std::fs::read_dir(&zoo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(models.len(), 12);
    let images = zoo.join("adv_examples.npz").display().to_string();
    let meta = zoo.join("meta.csv").display().to_string();
    let mut args: Vec<&str> = vec!["stem"];
    args.extend(models.iter().map(String::as_str));
    args.extend([
        "--images", &images, "--meta", &meta, "--steps", "0", "-o", &out,
    ]);
    let r = convlens(&args);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let csv = std::fs::read_to_string(Path::new(&out).join("stem_models.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13, "{csv}");
    assert_eq!(csv.matches(",True,").count(), 6);
    let stdout = text(&r.stdout);
    assert!(
        stdout.contains("\nrobust        6 ") && stdout.contains("\nnormal        6 "),
        "{stdout}"
    );
}
