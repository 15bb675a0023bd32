//! `convlens report` on the demo zoo, opened in headless Chromium: the page renders (non-blank
//! screenshot), every image loads and no script or resource error is raised.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> Option<PathBuf> {
    for c in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(c).exists() {
            return Some(PathBuf::from(c));
        }
    }
    None
}

fn headless(bin: &Path, profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn report_opens_in_headless_chromium() {
    let Some(bin) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is missing in CI: .ci/run must install it");
        }
        eprintln!("SKIPPED: chromium not installed (apt-get install chromium); CI installs it");
        return;
    };
    let out = std::env::temp_dir().join(format!("convlens-report-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let r = Command::new(env!("CARGO_BIN_EXE_convlens"))
        .args(["report", "examples/demo-zoo", "-o"])
        .arg(&out)
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let index = out.join("index.html");
    let url = format!("file://{}", index.display());
    // DOM after load: the page's own check of its images and errors
    let dom = headless(&bin, &out.join("profile1"), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let body = dom
        .split("<body")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .expect("no body in the dumped DOM");
    let images = body
        .split("data-images=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("page script did not run");
    let (ok, total) = images.split_once('/').unwrap();
    assert!(total.parse::<usize>().unwrap() >= 11, "{images}");
    assert_eq!(ok, total, "images loaded: {images}");
    assert!(
        body.contains("data-errors=\"0\""),
        "console/script errors: {body}"
    );
    // screenshot: non-blank
    let shot = out.join("shot.png");
    let s = headless(
        &bin,
        &out.join("profile2"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2400",
        ],
        &url,
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    let dec = png::Decoder::new(std::io::Cursor::new(std::fs::read(&shot).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 2400));
    let ch = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let ink = px
        .chunks(ch)
        .filter(|p| p[0] < 160 || p[1] < 160 || p[2] < 160)
        .count();
    let total = px.len() / ch;
    assert!(
        ink * 50 > total,
        "screenshot nearly blank: {ink} of {total} pixels"
    );
    let _ = std::fs::remove_dir_all(&out);
}
