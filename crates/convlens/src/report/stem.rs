//! The report's first-layer (stem) section: the stem analysis of every model of a zoo against
//! its clean and adversarial images, and its table.

use super::html::{esc, fmt};
use super::ReportOptions;
use crate::db::Db;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The stem analysis of every model of a zoo.
pub struct StemSection {
    /// The image file.
    pub images: PathBuf,
    /// Models analysed.
    pub reports: Vec<crate::stem::StemReport>,
    /// Robust vs normal means.
    pub summary: crate::stem::ZooSummary,
    /// Models that could not be analysed, with the reason.
    pub failed: Vec<(String, String)>,
}

fn parse_triplet(v: Option<&str>) -> Option<Vec<f64>> {
    let v: Vec<f64> = v?
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    (!v.is_empty()).then_some(v)
}

pub(super) fn stem_section(
    db: &Db,
    zoo: Option<&Path>,
    opts: &ReportOptions,
    by: Option<&str>,
    warnings: &mut Vec<String>,
) -> Option<StemSection> {
    let zoo = zoo?;
    let images = opts.images.clone().or_else(|| {
        let p = zoo.join("adv_examples.npz");
        p.exists().then_some(p)
    })?;
    let set = match crate::stem::ImageSet::load_npz(&images) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("stem analysis: {e}"));
            return None;
        }
    };
    let entries: Vec<crate::stem::ZooEntry> = db
        .models
        .iter()
        .map(|m| crate::stem::ZooEntry {
            name: m.name.clone(),
            path: zoo.join(&m.file),
            robust: by
                .and_then(|c| m.meta(c))
                .map(crate::db::select::canonical)
                .and_then(|v| match v.as_str() {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                }),
            norm: parse_triplet(m.meta("Input Mean")).zip(parse_triplet(m.meta("Input Std"))),
            entry: m.entry.clone().filter(|e| !e.is_empty()),
        })
        .collect();
    let results =
        crate::stem::analyse_zoo(&entries, &set, &crate::stem::AnalysisOptions::default());
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (e, r) in entries.iter().zip(results) {
        match r {
            Ok(r) => reports.push(r),
            Err(err) => {
                warnings.push(format!("stem analysis of {}: {err}", e.name));
                failed.push((e.name.clone(), err.to_string()));
            }
        }
    }
    let summary = crate::stem::zoo_summary(&reports);
    Some(StemSection {
        images,
        reports,
        summary,
        failed,
    })
}

pub(super) fn stem_html(h: &mut String, st: &StemSection) {
    let _ = write!(
        h,
        "<h2>First layer: do robust stems remove perturbations?</h2><p>The stem (first conv, with its bias and BatchNorm folded) and a ReLU applied to the clean images of <code>{}</code> and to each model's own adversarial versions. <i>pre/post change</i>: ‖a(x+δ) − a(x)‖ / ‖a(x)‖ before and after the ReLU; <i>ReLU removed</i>: share of the perturbation's energy the ReLU removes; <i>centre share</i>: filter energy in the centre tap (1×1-likeness); <i>near-duplicates</i>: filters with a cosine-similar twin (≥ 0.9); <i>stem gain</i>: the largest post-ReLU change an L∞ perturbation can cause in the stem alone (projected gradient ascent).</p>",
        esc(&st.images.display().to_string())
    );
    h.push_str("<table><tr><th>model</th><th>robust</th><th>layer</th><th>centre share</th><th>near-duplicate filters</th><th>pre change</th><th>post change</th><th>ReLU removed</th><th>stem gain</th></tr>");
    for r in &st.reports {
        let m = &r.summary;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.model),
            m.robust.map_or("–".into(), |b| b.to_string()),
            esc(&m.layer),
            fmt(m.centre_share, 3),
            m.filters_with_duplicate,
            m.filters,
            fmt(m.pre_change, 3),
            fmt(m.post_change, 3),
            fmt(m.relu_removed, 3),
            fmt(m.stem_gain, 3)
        );
    }
    for (label, g) in [
        ("robust (mean)", &st.summary.robust),
        ("normal (mean)", &st.summary.normal),
    ] {
        if g.models == 0 {
            continue;
        }
        let _ = write!(
            h,
            "<tr><th>{label}</th><th>{} models</th><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            g.models,
            fmt(g.centre_share, 3),
            fmt(g.duplicate_share, 3),
            fmt(g.pre_change, 3),
            fmt(g.post_change, 3),
            fmt(g.relu_removed, 3),
            fmt(g.stem_gain, 3)
        );
    }
    h.push_str("</table>");
    for (m, e) in &st.failed {
        let _ = write!(h, "<p class=\"warn\">{}: {}</p>", esc(m), esc(e));
    }
}
