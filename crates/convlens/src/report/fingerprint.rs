//! The report's robustness-fingerprint section: the model's validation and each database
//! model's P(adversarially trained) with its evidence.

use super::html::{esc, fmt};
use super::ReportOptions;
use crate::db::Db;
use std::fmt::Write as _;

/// A model's fingerprint in the report, or why it was refused.
pub type FingerprintRow = (String, Result<crate::fingerprint::Fingerprint, String>);

pub(super) fn fingerprint_html(
    h: &mut String,
    db: &Db,
    opts: &ReportOptions,
    fm: &crate::fingerprint::FingerprintModel,
    rows: &[FingerprintRow],
) {
    let v = &fm.validation;
    let _ = write!(
        h,
        "<h2>Robustness fingerprint</h2><p>P(adversarially trained) from each model's explained-variance spectrum (first three ratios evr0–evr2 of the PCA of its l∞-scaled non-sparse 3×3 filters), by a ridge logistic regression fitted to the {} robust and {} normal models of the robustness study's published per-model bases. Validation on that table: leave-one-paper-out accuracy {:.3} ({} folds), leave-one-architecture-out {:.3} ({} folds).",
        fm.training_models[0],
        fm.training_models[1],
        v.leave_one_paper_out.accuracy,
        v.leave_one_paper_out.folds,
        v.leave_one_architecture_out.accuracy,
        v.leave_one_architecture_out.folds,
    );
    for t in &v.transfer {
        let _ = write!(
            h,
            " Transfer to <code>{}</code> (another training regime): accuracy {} on {} models.",
            esc(&t.zoo),
            fmt(t.accuracy, 3),
            t.n
        );
    }
    h.push_str(" Medians of the reference models: ");
    let med: Vec<String> = rows
        .iter()
        .find_map(|(_, r)| r.as_ref().ok())
        .map(|f| {
            f.prediction
                .evidence
                .iter()
                .map(|e| {
                    format!(
                        "{} robust {:.3} / normal {:.3}",
                        e.feature, e.robust_median, e.normal_median
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    h.push_str(&esc(&med.join("; ")));
    h.push_str(".</p><table class=\"fingerprint\"><tr><th>model</th>");
    let truth_col = db.meta_columns().into_iter().find(|c| c == &opts.compare);
    if let Some(c) = &truth_col {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("<th>non-sparse 3×3 filters</th><th>evr0</th><th>evr1</th><th>evr2</th><th>P(adversarially trained)</th><th>verdict</th></tr>");
    for (name, r) in rows {
        let _ = write!(h, "<tr><td>{}</td>", esc(name));
        if let Some(c) = &truth_col {
            let v = db
                .model(name)
                .and_then(|i| db.models[i].meta(c))
                .unwrap_or("");
            let _ = write!(h, "<td>{}</td>", esc(v));
        }
        match r {
            Ok(f) => {
                let ev = |j: usize| {
                    f.prediction.evidence.get(j).map_or("–".to_string(), |e| {
                        format!(
                            "{:.3} (percentile {:.0} of robust, {:.0} of normal models)",
                            e.value,
                            100.0 * e.percentile_in_robust,
                            100.0 * e.percentile_in_normal
                        )
                    })
                };
                let _ = write!(
                    h,
                    "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}{}</td></tr>",
                    f.n_filters,
                    ev(0),
                    ev(1),
                    ev(2),
                    f.prediction.probability_robust,
                    esc(&f.prediction.verdict),
                    f.prediction
                        .warning
                        .as_ref()
                        .map(|w| format!(" ({})", esc(w)))
                        .unwrap_or_default()
                );
            }
            Err(e) => {
                let _ = write!(h, "<td colspan=\"6\">refused: {}</td></tr>", esc(e));
            }
        }
    }
    h.push_str("</table>");
}
