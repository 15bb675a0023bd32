//! Partial databases and `db merge`: a database built in pieces (by `--part`, by file lists, in
//! any grouping) and merged is byte for byte the database of a single build of the same files;
//! inputs that cannot be merged exactly are refused with the reason.

mod common;

use common::*;
use convlens::db::build::{build, BuildOptions, Outcome};
use convlens::db::merge::{merge, merge_with, ShardTransfer};
use convlens::extract::KernelSelect;
use std::path::{Path, PathBuf};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convlens-merge-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Asserts that two database folders hold the same files with the same bytes.
fn assert_same_db(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let ka: Vec<&String> = ta.keys().collect();
    let kb: Vec<&String> = tb.keys().collect();
    assert_eq!(
        ka,
        kb,
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (k, va) in &ta {
        assert!(
            va == &tb[k],
            "{k} differs between {} and {}:\n{}\n---\n{}",
            a.display(),
            b.display(),
            String::from_utf8_lossy(&va[..va.len().min(2000)]),
            String::from_utf8_lossy(&tb[k][..tb[k].len().min(2000)])
        );
    }
    assert!(ta.contains_key("build.json") && ta.contains_key("status.csv"));
}

fn demo_opts() -> BuildOptions {
    BuildOptions {
        meta: Some(root().join("examples/demo-zoo/meta.csv")),
        ..Default::default()
    }
}

fn build_into(zoo: &Path, out: &Path, opts: &BuildOptions) -> convlens::db::build::BuildReport {
    build(zoo, out, opts, &|_, _, _| {}).unwrap()
}

#[test]
fn demo_zoo_in_parts_merges_to_the_single_build() {
    let zoo = root().join("examples/demo-zoo");
    let single = temp_dir("demo-single");
    let r = build_into(&zoo, &single, &demo_opts());
    assert_eq!(r.models_in_db, 4);
    // three parts by the shard selector
    let mut parts = Vec::new();
    let mut in_parts = 0;
    for i in 0..3 {
        let p = temp_dir(&format!("demo-part{i}"));
        let r = build_into(
            &zoo,
            &p,
            &BuildOptions {
                part: Some((i, 3)),
                ..demo_opts()
            },
        );
        in_parts += r.models_in_db;
        parts.push(p);
    }
    assert_eq!(in_parts, 4, "every model in exactly one part");
    let merged = temp_dir("demo-merged");
    let m = merge(&parts, &merged).unwrap();
    assert_eq!(m.models, 4);
    assert!(m.deduplicated.is_empty());
    assert_same_db(&single, &merged);
    // in another order, and as a merge of a merge
    let reversed: Vec<PathBuf> = parts.iter().rev().cloned().collect();
    let merged_rev = temp_dir("demo-merged-rev");
    merge(&reversed, &merged_rev).unwrap();
    assert_same_db(&single, &merged_rev);
    // more parts than models (empty partial databases), without a meta table
    let plain = temp_dir("demo-plain");
    build_into(&zoo, &plain, &BuildOptions::default());
    let eight: Vec<PathBuf> = (0..8)
        .map(|i| {
            let p = temp_dir(&format!("demo-eighth{i}"));
            build_into(
                &zoo,
                &p,
                &BuildOptions {
                    part: Some((i, 8)),
                    ..Default::default()
                },
            );
            p
        })
        .collect();
    assert!(convlens::db::Db::open(&eight[7]).unwrap().models.is_empty());
    let merged8 = temp_dir("demo-merged8");
    merge(&eight, &merged8).unwrap();
    assert_same_db(&plain, &merged8);
    for d in eight.iter().chain([&plain, &merged8]) {
        let _ = std::fs::remove_dir_all(d);
    }
    // hard-linked shards: the same bytes, no data moved
    let linked = temp_dir("demo-linked");
    merge_with(&parts, &linked, ShardTransfer::HardLink).unwrap();
    assert_same_db(&single, &linked);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let shard = "filters/3x3/resnet20_robust_s1.npy";
        let owner = parts.iter().find(|p| p.join(shard).exists()).unwrap();
        assert_eq!(
            std::fs::metadata(linked.join(shard)).unwrap().ino(),
            std::fs::metadata(owner.join(shard)).unwrap().ino()
        );
    }
    let m01 = temp_dir("demo-m01");
    merge(&parts[..2], &m01).unwrap();
    let m012 = temp_dir("demo-m012");
    merge(&[m01.clone(), parts[2].clone()], &m012).unwrap();
    assert_same_db(&single, &m012);
    // file lists (relative to the zoo, one of them absolute), a different grouping
    let files = [
        vec![
            PathBuf::from("resnet20_robust_s1.onnx"),
            PathBuf::from("./adv_examples.npz"),
        ],
        vec![zoo.join("resnet20_normal_s0.ckpt")],
        vec![
            PathBuf::from("resnet20_normal_s1.safetensors"),
            PathBuf::from("resnet20_robust_s0.legacy.pt"),
        ],
    ];
    let mut lists = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let p = temp_dir(&format!("demo-list{i}"));
        build_into(
            &zoo,
            &p,
            &BuildOptions {
                files: f.clone(),
                ..demo_opts()
            },
        );
        lists.push(p);
    }
    let merged_lists = temp_dir("demo-merged-lists");
    merge(&lists, &merged_lists).unwrap();
    assert_same_db(&single, &merged_lists);
    // the same lists built as one partial database: again the same bytes
    let one_list = temp_dir("demo-one-list");
    build_into(
        &zoo,
        &one_list,
        &BuildOptions {
            files: files.concat(),
            ..demo_opts()
        },
    );
    assert_same_db(&single, &one_list);
    for d in parts.iter().chain(&lists).chain([
        &single,
        &merged,
        &merged_rev,
        &m01,
        &m012,
        &merged_lists,
        &one_list,
    ]) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A zoo with every kind of status row: a duplicate file of one model, an unreadable file, a
/// model without meta row, a layer of zeros, meta rows without files and a duplicate meta row.
fn broken_zoo() -> Option<PathBuf> {
    let zoo = temp_dir("broken-zoo");
    std::fs::create_dir_all(zoo.join("sub")).unwrap();
    for f in [
        "resnet20_normal_s0.safetensors",
        "resnet20_normal_s1.safetensors",
        "resnet20_robust_s0.safetensors",
        "resnet20_robust_s1.safetensors",
        "resnet20_normal_s0.pt",
    ] {
        std::fs::copy(zoo_file(f)?, zoo.join(f)).unwrap();
    }
    std::fs::copy(
        zoo_file("resnet20_robust_s1.safetensors")?,
        zoo.join("stray_model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        zoo.join("sub/vgg11_w16_robust_s0.safetensors"),
        b"garbage, not a model",
    )
    .unwrap();
    std::fs::copy(
        fixture("hostile/nan_inf_weights.safetensors"),
        zoo.join("nan_inf.safetensors"),
    )
    .unwrap();
    std::fs::write(
        zoo.join("meta.csv"),
        "Name,Robust,Network\n\
         resnet20_normal_s0,False,resnet20\n\
         resnet20_normal_s1,False,resnet20\n\
         resnet20_robust_s0,True,resnet20\n\
         resnet20_robust_s1,True,resnet20\n\
         vgg11_w16_robust_s0,True,vgg11\n\
         wrn16_2_normal_s0,False,wrn16_2\n\
         nan_inf,True,x\n\
         resnet20_normal_s0,False,dup\n",
    )
    .unwrap();
    Some(zoo)
}

#[test]
fn broken_zoo_in_parts_merges_to_the_single_build() {
    let Some(zoo) = broken_zoo() else { return };
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        ..Default::default()
    };
    let single = temp_dir("broken-single");
    let r = build_into(&zoo, &single, &opts);
    // the zoo exercises every kind of row
    for o in [
        Outcome::Added,
        Outcome::Failed,
        Outcome::Duplicate,
        Outcome::MissingFile,
        Outcome::NoMetaRow,
    ] {
        assert!(
            r.with(o.clone()).count() > 0,
            "no {o:?} row: {:?}",
            r.status
        );
    }
    assert_eq!(r.with(Outcome::MissingFile).count(), 1, "{:?}", r.status); // wrn16_2_normal_s0
    for n in [2, 3, 7] {
        let parts: Vec<PathBuf> = (0..n)
            .map(|i| {
                let p = temp_dir(&format!("broken-{n}-{i}"));
                build_into(
                    &zoo,
                    &p,
                    &BuildOptions {
                        part: Some((i, n)),
                        ..opts.clone()
                    },
                );
                p
            })
            .collect();
        let merged = temp_dir(&format!("broken-merged-{n}"));
        let m = merge(&parts, &merged).unwrap();
        assert_eq!(m.models, r.models_in_db);
        assert_same_db(&single, &merged);
        for p in parts.iter().chain([&merged]) {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    // the zoo mounted elsewhere (as on another machine): the same database, failure reasons
    // included (they name files relative to the zoo folder)
    let elsewhere = temp_dir("broken-zoo-elsewhere");
    std::fs::rename(&zoo, &elsewhere).unwrap();
    let moved = temp_dir("broken-moved");
    let mopts = BuildOptions {
        meta: Some(elsewhere.join("meta.csv")),
        ..Default::default()
    };
    build_into(
        &elsewhere,
        &moved,
        &BuildOptions {
            part: Some((0, 2)),
            ..mopts.clone()
        },
    );
    let other = temp_dir("broken-other");
    build_into(
        &elsewhere,
        &other,
        &BuildOptions {
            part: Some((1, 2)),
            ..mopts
        },
    );
    std::fs::rename(&elsewhere, &zoo).unwrap();
    let failed = r.with(Outcome::Failed).next().unwrap();
    assert!(
        !failed.detail.contains(&zoo.display().to_string()),
        "{}",
        failed.detail
    );
    let mm = temp_dir("broken-moved-merged");
    merge(&[moved.clone(), other.clone()], &mm).unwrap();
    // records hold the files' mtimes, which a rename keeps: byte for byte the same
    assert_same_db(&single, &mm);
    for p in [&moved, &other, &mm] {
        let _ = std::fs::remove_dir_all(p);
    }
    // the two files of one model in two partial databases: different contents, refused
    let a = temp_dir("broken-a");
    let b = temp_dir("broken-b");
    build_into(
        &zoo,
        &a,
        &BuildOptions {
            files: vec!["resnet20_normal_s0.pt".into()],
            ..opts.clone()
        },
    );
    build_into(
        &zoo,
        &b,
        &BuildOptions {
            files: vec!["resnet20_normal_s0.safetensors".into()],
            ..opts.clone()
        },
    );
    let e = merge(&[a.clone(), b.clone()], &temp_dir("broken-ab"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"resnet20_normal_s0\"")
            && e.contains("different contents")
            && e.contains("resnet20_normal_s0.pt"),
        "{e}"
    );
    // a failed model and a stored one of the same name: refused as well
    let c = temp_dir("broken-c");
    build_into(
        &zoo,
        &c,
        &BuildOptions {
            files: vec!["sub/vgg11_w16_robust_s0.safetensors".into()],
            ..opts.clone()
        },
    );
    let d = temp_dir("broken-d");
    std::fs::create_dir_all(zoo.join("other")).unwrap();
    std::fs::copy(
        zoo.join("resnet20_robust_s0.safetensors"),
        zoo.join("other/vgg11_w16_robust_s0.safetensors"),
    )
    .unwrap();
    build_into(
        &zoo,
        &d,
        &BuildOptions {
            files: vec!["other/vgg11_w16_robust_s0.safetensors".into()],
            ..opts.clone()
        },
    );
    let e = merge(&[c.clone(), d.clone()], &temp_dir("broken-cd"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vgg11_w16_robust_s0") && e.contains("failed") && e.contains("added"),
        "{e}"
    );
    // the same failing file in two inputs: one row, as in a single build
    let cc = temp_dir("broken-cc");
    let m = merge(&[c.clone(), c.clone()], &cc).unwrap();
    assert_eq!(m.models, 0);
    assert_same_db(&c, &cc);
    for p in [&single, &a, &b, &c, &d, &cc, &zoo] {
        let _ = std::fs::remove_dir_all(p);
    }
}

#[test]
fn identical_models_in_several_inputs_are_stored_once() {
    let zoo = root().join("examples/demo-zoo");
    let single = temp_dir("dup-single");
    build_into(&zoo, &single, &demo_opts());
    let parts: Vec<PathBuf> = (0..2)
        .map(|i| {
            let p = temp_dir(&format!("dup-part{i}"));
            build_into(
                &zoo,
                &p,
                &BuildOptions {
                    part: Some((i, 2)),
                    ..demo_opts()
                },
            );
            p
        })
        .collect();
    let names1: Vec<String> = convlens::db::Db::open(&parts[1])
        .unwrap()
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert!(!names1.is_empty());
    // part 1 twice, and the full database on top: everything identical is kept once
    let merged = temp_dir("dup-merged");
    let m = merge(
        &[parts[0].clone(), parts[1].clone(), parts[1].clone()],
        &merged,
    )
    .unwrap();
    assert_eq!(m.deduplicated, names1);
    assert_same_db(&single, &merged);
    let merged2 = temp_dir("dup-merged2");
    let m = merge(
        &[single.clone(), parts[0].clone(), merged.clone()],
        &merged2,
    )
    .unwrap();
    assert_eq!(m.deduplicated.len(), 4);
    assert_same_db(&single, &merged2);
    // the same bytes under two paths: kept from the file a single build prefers, the other
    // listed as a duplicate, exactly as the single build lists it
    let zoo2 = temp_dir("dup-zoo");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(zoo2.join(sub)).unwrap();
        std::fs::copy(
            zoo.join("resnet20_robust_s1.onnx"),
            zoo2.join(sub).join("resnet20_robust_s1.onnx"),
        )
        .unwrap();
    }
    let one = temp_dir("dup-one");
    let r = build_into(&zoo2, &one, &BuildOptions::default());
    let dup: Vec<_> = r.with(Outcome::Duplicate).collect();
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].file, "b/resnet20_robust_s1.onnx");
    let (pa, pb) = (temp_dir("dup-pa"), temp_dir("dup-pb"));
    build_into(
        &zoo2,
        &pb,
        &BuildOptions {
            files: vec!["b/resnet20_robust_s1.onnx".into()],
            ..Default::default()
        },
    );
    build_into(
        &zoo2,
        &pa,
        &BuildOptions {
            files: vec!["a/resnet20_robust_s1.onnx".into()],
            ..Default::default()
        },
    );
    let ab = temp_dir("dup-ab");
    let m = merge(&[pb.clone(), pa.clone()], &ab).unwrap();
    assert_eq!(m.deduplicated, vec!["resnet20_robust_s1".to_string()]);
    assert_same_db(&one, &ab);
    for p in parts
        .iter()
        .chain([&single, &merged, &merged2, &zoo2, &one, &pa, &pb, &ab])
    {
        let _ = std::fs::remove_dir_all(p);
    }
}

#[test]
fn inputs_that_cannot_be_merged_exactly_are_refused() {
    let zoo = root().join("examples/demo-zoo");
    let p0 = temp_dir("ref-p0");
    build_into(
        &zoo,
        &p0,
        &BuildOptions {
            part: Some((0, 2)),
            ..demo_opts()
        },
    );
    let p1 = temp_dir("ref-p1");
    build_into(
        &zoo,
        &p1,
        &BuildOptions {
            part: Some((1, 2)),
            ..demo_opts()
        },
    );
    let refused = |inputs: &[PathBuf], tag: &str| -> String {
        let out = temp_dir(tag);
        let e = merge(inputs, &out).unwrap_err().to_string();
        assert!(
            !out.join("build.json").exists(),
            "{tag}: a refused merge wrote a database"
        );
        let _ = std::fs::remove_dir_all(&out);
        e
    };
    // another kernel setting
    let k = temp_dir("ref-kernel");
    build_into(
        &zoo,
        &k,
        &BuildOptions {
            part: Some((1, 2)),
            kernel: KernelSelect::All,
            ..demo_opts()
        },
    );
    let e = refused(&[p0.clone(), k.clone()], "ref-o1");
    assert!(
        e.contains("different settings") && e.contains("kernel: 3x3 vs all"),
        "{e}"
    );
    // without the meta table, or with another one
    let nm = temp_dir("ref-nometa");
    build_into(
        &zoo,
        &nm,
        &BuildOptions {
            part: Some((1, 2)),
            ..Default::default()
        },
    );
    let e = refused(&[p0.clone(), nm.clone()], "ref-o2");
    assert!(
        e.contains("meta columns") && e.contains("meta table (BLAKE3)"),
        "{e}"
    );
    let meta2 = temp_dir("ref-meta2.csv");
    let text = std::fs::read_to_string(zoo.join("meta.csv")).unwrap();
    std::fs::write(&meta2, text.replacen("True", "TRUE", 1)).unwrap();
    let om = temp_dir("ref-othermeta");
    build_into(
        &zoo,
        &om,
        &BuildOptions {
            part: Some((1, 2)),
            meta: Some(meta2.clone()),
            ..Default::default()
        },
    );
    let e = refused(&[p0.clone(), om.clone()], "ref-o3");
    assert!(
        e.contains("meta table (BLAKE3)") && !e.contains("meta columns"),
        "{e}"
    );
    // another convlens version
    let v = temp_dir("ref-version");
    copy_dir(&p1, &v);
    let m = std::fs::read_to_string(v.join("build.json")).unwrap();
    let version = format!("\"convlens\": \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(m.contains(&version), "{m}");
    std::fs::write(
        v.join("build.json"),
        m.replace(&version, "\"convlens\": \"0.0.1\""),
    )
    .unwrap();
    let e = refused(&[p0.clone(), v.clone()], "ref-o4");
    assert!(
        e.contains(&format!(
            "convlens version: {} vs 0.0.1",
            env!("CARGO_PKG_VERSION")
        )),
        "{e}"
    );
    // no settings file (imported, or from an older convlens)
    std::fs::remove_file(v.join("build.json")).unwrap();
    let e = refused(&[p0.clone(), v.clone()], "ref-o5");
    assert!(e.contains("no build.json"), "{e}");
    // a damaged shard: named, nothing half-written is left as a database
    let t = temp_dir("ref-trunc");
    copy_dir(&p1, &t);
    let rec = &convlens::db::Db::open(&t).unwrap().models[0];
    let shard = t.join(&rec.kernels[0].shard);
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 4]).unwrap();
    let e = refused(&[p0.clone(), t.clone()], "ref-o6");
    assert!(
        e.contains(&shard.display().to_string()) && e.contains("bytes"),
        "{e}"
    );
    // an output folder that is not empty (e.g. one of the inputs)
    let e = merge(&[p0.clone(), p1.clone()], &p1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
    // not a database
    let e = refused(&[p0.clone(), zoo.clone()], "ref-o7");
    assert!(
        e.contains("no build.json") || e.contains("not a convlens database"),
        "{e}"
    );
    // a file list that leaves the zoo folder
    let e = build(
        &zoo,
        &temp_dir("ref-outside"),
        &BuildOptions {
            files: vec!["../README.md".into()],
            ..demo_opts()
        },
        &|_, _, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("../README.md") && e.contains("not inside the zoo folder"),
        "{e}"
    );
    for p in [&p0, &p1, &k, &nm, &meta2, &om, &v, &t] {
        let _ = std::fs::remove_dir_all(p);
        let _ = std::fs::remove_file(p);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}
