//! The report page: `index.html` with its style, the models and build status, the metric
//! glossary, the shift and filter-quality tables, the sections of `fingerprint` and `stem`,
//! and the embedded figures; HTML escaping and number formatting.

use super::draw::Collected;
use super::fingerprint::{fingerprint_html, FingerprintRow};
use super::stem::{stem_html, StemSection};
use super::ReportOptions;
use crate::compare::study::{AggregateReport, BasisReport, ShiftReport};
use crate::db::build::BuildReport;
use crate::db::Db;
use base64::Engine;
use std::fmt::Write as _;

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn fmt(v: Option<f64>, d: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.d$}"),
        _ => "–".into(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn render_html(
    db: &Db,
    opts: &ReportOptions,
    by: Option<&str>,
    basis_r: &BasisReport,
    shift_r: Option<&ShiftReport>,
    agg: &AggregateReport,
    build_r: Option<&BuildReport>,
    stem: Option<&StemSection>,
    fingerprint: Option<(&crate::fingerprint::FingerprintModel, &[FingerprintRow])>,
    col: &Collected,
    warnings: &[String],
) -> String {
    let mut h = String::new();
    let n_filters: u64 = db
        .models
        .iter()
        .filter_map(|m| m.kernel(opts.kernel))
        .map(|k| k.n_filters)
        .sum();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>convlens report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}}
h1{{font-size:1.6em}} h2{{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}}
table{{border-collapse:collapse;font-size:.85em;margin:.5em 0}} th,td{{border:1px solid #ddd;padding:.2em .5em;text-align:right}}
th{{background:#f4f4f4}} td:first-child,th:first-child{{text-align:left}}
figure{{margin:1.5em 0}} figure img{{width:640px;max-width:100%;height:auto;border:1px solid #eee}}
table.text td{{text-align:left}}
figcaption{{font-size:.85em;color:#444}} .warn{{color:#a40}} code{{background:#f4f4f4;padding:0 .2em}}
</style>
<script>
window.__errors=[];
window.addEventListener('error',function(e){{window.__errors.push(String(e.message||(e.target&&e.target.src)||'error'));}},true);
(function(){{var ce=console.error;console.error=function(){{window.__errors.push(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);}};}})();
window.addEventListener('load',function(){{var imgs=document.images,ok=0;for(var i=0;i<imgs.length;i++){{if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}}
document.body.setAttribute('data-images',ok+'/'+imgs.length);document.body.setAttribute('data-errors',String(window.__errors.length));}});
</script></head><body>
<h1>convlens report</h1>
<p>{} models, {} filters of size {}×{}{}. Database: <code>{}</code>.</p>
"#,
        db.models.len(),
        n_filters,
        opts.kernel[0],
        opts.kernel[1],
        by.map(|c| format!(", compared by <code>{}</code>", esc(c)))
            .unwrap_or_default(),
        esc(&db.dir.display().to_string()),
    );
    if !warnings.is_empty() {
        h.push_str("<ul class=\"warn\">");
        for w in warnings {
            let _ = write!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul>");
    }
    // models
    h.push_str("<h2>Models</h2><table><tr><th>model</th>");
    let wanted = [
        opts.compare.as_str(),
        "Network",
        "Training-Dataset",
        "Clean Accuracy",
        "Robust Accuracy",
        "Seed",
    ];
    let cols: Vec<String> = db
        .meta_columns()
        .into_iter()
        .filter(|c| wanted.contains(&c.as_str()))
        .collect();
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str(
        "<th>file</th><th>format</th><th>conv layers</th><th>filters</th><th>sparse</th></tr>",
    );
    for m in &db.models {
        let _ = write!(h, "<tr><td>{}</td>", esc(&m.name));
        for c in &cols {
            let _ = write!(h, "<td>{}</td>", esc(m.meta(c).unwrap_or("")));
        }
        let (n, s) = m
            .kernel(opts.kernel)
            .map_or((0, 0), |k| (k.n_filters, k.n_sparse));
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{n}</td><td>{s}</td></tr>",
            esc(&m.file),
            esc(&m.format),
            m.n_conv_layers
        );
    }
    h.push_str("</table>");
    if let Some(b) = build_r {
        let problems: Vec<_> = b
            .status
            .iter()
            .filter(|s| {
                !matches!(
                    s.outcome,
                    crate::db::build::Outcome::Added | crate::db::build::Outcome::Unchanged
                )
            })
            .collect();
        if !problems.is_empty() {
            h.push_str("<p>Not in the database or worth a look:</p><table><tr><th>model</th><th>file</th><th>status</th><th>detail</th></tr>");
            for s in problems {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&s.model),
                    esc(&s.file),
                    s.outcome.label(),
                    esc(&s.detail)
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str(METRICS_HTML);
    // shift table
    if let Some(s) = shift_r {
        for c in &s.comparisons {
            let _ = write!(
                h,
                "<h2>Distribution shift: {} vs {}{}</h2><p>Models: {} = {}; {} = {}. Weighted by the explained-variance ratios of the basis of all {} filters; coefficient range [{:.4}, {:.4}].</p>",
                esc(&c.groups[0]),
                esc(&c.groups[1]),
                if c.subset == "all" { String::new() } else { format!(" within {}", esc(&c.subset)) },
                esc(&c.groups[0]),
                esc(&c.models[0].join(", ")),
                esc(&c.groups[1]),
                esc(&c.models[1].join(", ")),
                s.basis.n_samples,
                s.coef_range[0],
                s.coef_range[1],
            );
            h.push_str("<table class=\"shift\"><tr><th>depth group</th><th>filters A</th><th>filters B</th><th>KL</th><th>bootstrap 95 %</th><th>within-group floor (mean)</th><th>replicate floor (mean)</th><th>KL / floor</th><th>KL smoothed</th><th>permutation p</th><th>BH q</th><th>status</th></tr>");
            for x in &c.cells {
                let perm = x.permutation.as_ref();
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                    esc(&x.bin),
                    x.n[0],
                    x.n[1],
                    fmt(x.kl, 4),
                    x.bootstrap_ci.map_or("–".into(), |c| format!("{:.4}–{:.4}", c[0], c[1])),
                    fmt(x.within_group.mean, 4),
                    fmt(x.replicates.mean, 4),
                    fmt(x.kl_over_floor, 2),
                    fmt(x.kl_smoothed, 4),
                    perm.map_or("–".into(), |p| format!(
                        "{:.3} ({}{})",
                        p.p_value,
                        if p.exact { "exact, " } else { "" },
                        p.permutations
                    )),
                    fmt(x.q_value, 3),
                    if x.significant == Some(true) { " *" } else { "" },
                    esc(&x.status)
                );
            }
            h.push_str("</table>");
        }
        if !s.pairs.is_empty() {
            h.push_str("<p>Per robust ↔ normal pair (overall KL):</p><table><tr><th>robust</th><th>normal</th><th>KL overall</th><th>KL first layer</th></tr>");
            for p in &s.pairs {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.pair.robust),
                    esc(&p.pair.normal),
                    fmt(p.kl[0], 4),
                    fmt(p.kl[1], 4)
                );
            }
            h.push_str("</table>");
        }
    }
    // aggregates: group means by depth
    if by.is_some() {
        h.push_str("<h2>Filter quality by depth (group means of the per-model aggregates)</h2><table><tr><th>depth group</th><th>group</th><th>models</th><th>sparsity</th><th>variance entropy</th><th>orthogonality</th></tr>");
        for b in crate::depth::ALL_BINS {
            let label = b.label();
            let mut groups: Vec<String> = agg.rows.iter().filter_map(|r| r.group.clone()).collect();
            groups.sort();
            groups.dedup();
            for g in groups {
                let rows: Vec<_> = agg
                    .rows
                    .iter()
                    .filter(|r| r.depth_group == label && r.group.as_deref() == Some(g.as_str()))
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let mean = |f: &dyn Fn(&crate::compare::study::ModelAggregate) -> f64| {
                    let v: Vec<f64> = rows
                        .iter()
                        .map(|r| f(r))
                        .filter(|x| x.is_finite())
                        .collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&label),
                    esc(&g),
                    rows.len(),
                    fmt(mean(&|r| r.agg.sparsity), 4),
                    fmt(mean(&|r| r.agg.variance_entropy.unwrap_or(f64::NAN)), 4),
                    fmt(mean(&|r| r.agg.orthogonality), 4)
                );
            }
        }
        h.push_str("</table>");
        if let Some(g) = &agg.groups {
            let _ = write!(
                h,
                "<p>Group differences ({} − {}) of the per-model means, permutation test over models (labels swapped only within robust ↔ normal pairs when pairings are given), Benjamini–Hochberg q across the depth groups and datasets of each metric (* q ≤ 0.05):</p><table class=\"tests\"><tr><th>subset</th><th>depth group</th><th>metric</th><th>models</th><th>difference</th><th>permutation p</th><th>BH q</th></tr>",
                esc(&g[0]),
                esc(&g[1]),
            );
            for t in &agg.tests {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                    esc(&t.subset),
                    esc(&t.depth_group),
                    esc(&t.metric),
                    t.n[0],
                    t.n[1],
                    fmt(t.difference, 4),
                    fmt(t.permutation.as_ref().map(|p| p.p_value), 3),
                    fmt(t.q_value, 3),
                    if t.significant == Some(true) { " *" } else { "" },
                );
            }
            h.push_str("</table>");
        }
    }
    if let Some((fm, rows)) = fingerprint {
        fingerprint_html(&mut h, db, opts, fm, rows);
    }
    if let Some(st) = stem {
        stem_html(&mut h, st);
    }
    let _ = write!(
        h,
        "<h2>Basis</h2><p>Explained-variance ratio of the basis of all models: {}.</p>",
        basis_r
            .full
            .explained_variance_ratio
            .iter()
            .map(|r| format!("{:.1} %", 100.0 * r))
            .collect::<Vec<_>>()
            .join(", ")
    );
    h.push_str("<h2>Figures</h2>");
    for (f, svg) in col.entries.iter().zip(&col.svgs) {
        let data = base64::engine::general_purpose::STANDARD.encode(svg.as_bytes());
        let _ = writeln!(
            h,
            "<figure id=\"{id}\"><img alt=\"{t}\" src=\"data:image/svg+xml;base64,{data}\"><figcaption><b>{t}.</b> {c} Files: <a href=\"figures/{id}.svg\">SVG</a>, <a href=\"figures/{id}.png\">PNG</a>, <a href=\"figures/{id}.pdf\">PDF</a>.</figcaption></figure>",
            id = esc(&f.id),
            t = esc(&f.title),
            c = esc(&f.caption),
        );
    }
    h.push_str("<p>Made by convlens. Numbers follow the published code of Gavrikov &amp; Keuper (CVPR 2022, CVPRW 2022); see the project's docs/decisions.md for deliberate differences.</p></body></html>\n");
    h
}

const METRICS_HTML: &str = r#"<h2>What is measured</h2>
<table class="text">
<tr><th>metric</th><th>meaning</th></tr>
<tr><td>sparsity</td><td>Share of filters whose largest |weight| is at most 1/100 of the layer's largest |weight|: filters that do (almost) nothing. Adversarially robust models tend to have fewer sparse filters.</td></tr>
<tr><td>variance entropy</td><td>Base-10 entropy of the PCA spectrum of a layer's l∞-scaled non-sparse filters: low when the filters are alike (few patterns), high when they spread over all directions (up to log10(9) ≈ 0.95 for 3×3).</td></tr>
<tr><td>orthogonality</td><td>1 − mean |cosine| between the output channels of a layer: 1 when every output channel looks for something different, lower when channels are redundant.</td></tr>
<tr><td>PCA basis</td><td>Principal components ("eigen-filters") of all l∞-scaled non-sparse filters; every filter is described by its coefficients c0…c8 in this basis.</td></tr>
<tr><td>distribution shift (KL)</td><td>Symmetric Kullback–Leibler divergence between two groups' coefficient distributions (70-bin histograms over the shared range, empty bins filled with float32 ε), summed over the components weighted by their explained-variance ratio — for all filters, the first conv layer, and each decile of normalised depth.</td></tr>
<tr><td>noise floor</td><td>The same KL between models that should not differ: replicate runs (same architecture and group, another seed) and random halves of a group. A shift is only meaningful well above it; "KL / floor" says how many times the floor it is.</td></tr>
<tr><td>KL smoothed</td><td>The same divergence between Gaussian-smoothed histograms (Silverman bandwidth): far less inflated by small samples than the plug-in KL, whose empty bins (filled with ε) dominate when a cell holds only a few dozen filters, e.g. a first layer.</td></tr>
<tr><td>permutation p, BH q</td><td>The share of relabellings of the models (labels shuffled between the groups, only within robust ↔ normal pairs when pairings are given; exact when all relabellings are few enough) whose KL is at least the observed one; q: Benjamini–Hochberg adjusted over the depth cells of all comparisons. With few models the smallest possible p is large: 2 vs 2 models cannot be significant.</td></tr>
<tr><td>fingerprint</td><td>Probability that a model was adversarially trained, from the explained-variance spectrum of its l∞-scaled non-sparse 3×3 filters (ridge logistic regression fitted to the robustness study's 114 published per-model bases).</td></tr>
</table>
"#;
