//! `convlens._convlens`: the native module of the `convlens` Python package.
//!
//! Every function here is a thin wrapper over the `convlens` library: it converts Python
//! arguments, releases the interpreter lock while the library works, and hands back JSON text
//! (the same serialisation as the CLI's `--format json`) and tables of typed columns (the same
//! columns as the CLI's CSV and Parquet files). The Python layer (`convlens/*.py`) turns those
//! into pandas DataFrames, figure objects and exceptions.

mod errors;
mod tensors;

use convlens::compare::shift::Density;
use convlens::compare::study::{self, Scope, ShiftOptions};
use convlens::db::build::{BuildOptions, BuildReport};
use convlens::db::select::Condition;
use convlens::db::Db;
use convlens::extract::KernelSelect;
use convlens::quality::{analyse_checkpoint, inspect_checkpoint};
use convlens::stem::{AnalysisOptions, ImageSet, LoadOptions, PgdOptions, StemModel};
use convlens_core::Checkpoint;
use convlens_table::{Column, Table};
use errors::{argument_error, file_error, to_py, Failure};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use std::path::{Path, PathBuf};

/// A model handed over from Python: a file path, or named arrays.
enum Source {
    Path(PathBuf),
    Tensors { name: String, ckpt: Box<Checkpoint> },
}

impl Source {
    fn extract(py: Python<'_>, src: &Bound<'_, PyAny>) -> PyResult<Source> {
        if let Ok(p) = src.extract::<PathBuf>() {
            return Ok(Source::Path(p));
        }
        let tup = src.cast::<PyTuple>().map_err(|_| {
            argument_error(
                py,
                "a model is a path, or (name, [(key, typestr, shape, strides, ptr, owner), ...])",
            )
        })?;
        if tup.len() != 2 {
            return Err(argument_error(
                py,
                "a tensor source is a (name, tensors) pair",
            ));
        }
        let name: String = tup.get_item(0)?.extract()?;
        let list = tup.get_item(1)?;
        let ckpt = tensors::checkpoint(py, &list)?;
        Ok(Source::Tensors {
            name,
            ckpt: Box::new(ckpt),
        })
    }

    /// The checkpoint and the name used for it in reports; `entry` picks the model inside a
    /// PyTorch training checkpoint.
    fn read(
        &self,
        entry: Option<&str>,
    ) -> Result<(PathBuf, std::borrow::Cow<'_, Checkpoint>), Failure> {
        match self {
            Source::Path(p) => {
                let opts = convlens::read::ReadOptions {
                    entry: entry.map(str::to_string),
                };
                let c = convlens::read::read_with(p, &opts).map_err(Failure::from_read)?;
                Ok((p.clone(), std::borrow::Cow::Owned(c)))
            }
            Source::Tensors { name, ckpt } => {
                if entry.is_some() {
                    return Err(Failure::argument(format!(
                        "{name}: entry is for checkpoint files; pass the state dict itself"
                    )));
                }
                Ok((PathBuf::from(name), std::borrow::Cow::Borrowed(ckpt)))
            }
        }
    }
}

fn kernel_select(py: Python<'_>, kernel: &str) -> PyResult<KernelSelect> {
    kernel
        .parse::<KernelSelect>()
        .map_err(|e| argument_error(py, &format!("kernel {kernel:?}: {e}")))
}

fn kernel_size(py: Python<'_>, kernel: &str) -> PyResult<[usize; 2]> {
    match kernel_select(py, kernel)? {
        KernelSelect::Size(a, b) => Ok([a, b]),
        KernelSelect::All => Err(argument_error(
            py,
            "a single kernel size such as \"3x3\" is needed here",
        )),
    }
}

/// A table as `(names, types, columns)`: types are `str`, `i64`, `f64`, `bool`; missing
/// values are `None`.
fn table_to_py<'py>(py: Python<'py>, t: &Table) -> PyResult<Bound<'py, PyTuple>> {
    let names = PyList::empty(py);
    let types = PyList::empty(py);
    let cols = PyList::empty(py);
    for (name, col) in t.columns() {
        names.append(name)?;
        types.append(col.type_name())?;
        let list = match col {
            Column::Str(v) => PyList::new(py, v.iter().map(|x| x.as_deref()))?,
            Column::I64(v) => PyList::new(py, v.iter())?,
            Column::F64(v) => PyList::new(py, v.iter())?,
            Column::Bool(v) => PyList::new(py, v.iter())?,
        };
        cols.append(list)?;
    }
    PyTuple::new(py, [names.into_any(), types.into_any(), cols.into_any()])
}

fn json<T: serde::Serialize>(py: Python<'_>, v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| argument_error(py, &format!("serialisation: {e}")))
}

fn table_err(py: Python<'_>, e: convlens_table::TableError) -> PyErr {
    argument_error(py, &e.to_string())
}

/// `inspect(src, kernel, entry)` → `(json, layers_table)`.
#[pyfunction]
#[pyo3(signature = (src, kernel, entry=None))]
fn inspect<'py>(
    py: Python<'py>,
    src: &Bound<'py, PyAny>,
    kernel: &str,
    entry: Option<String>,
) -> PyResult<(String, Bound<'py, PyTuple>)> {
    let k = kernel_select(py, kernel)?;
    let source = Source::extract(py, src)?;
    let report = py
        .detach(|| {
            let (path, ckpt) = source.read(entry.as_deref())?;
            Ok::<_, Failure>(inspect_checkpoint(&path, &ckpt, k))
        })
        .map_err(|e| to_py(py, e))?;
    let t = convlens::tables::inspect_layers(&[&report]).map_err(|e| table_err(py, e))?;
    Ok((json(py, &report)?, table_to_py(py, &t)?))
}

/// `quality(src, kernel, entry)` → `(json, layers_table, groups_table)`.
#[pyfunction]
#[pyo3(signature = (src, kernel, entry=None))]
fn quality<'py>(
    py: Python<'py>,
    src: &Bound<'py, PyAny>,
    kernel: &str,
    entry: Option<String>,
) -> PyResult<(String, Bound<'py, PyTuple>, Bound<'py, PyTuple>)> {
    let k = kernel_select(py, kernel)?;
    let source = Source::extract(py, src)?;
    let report = py
        .detach(|| {
            let (path, ckpt) = source.read(entry.as_deref())?;
            analyse_checkpoint(&path, &ckpt, k).map_err(Failure::from_analyse)
        })
        .map_err(|e| to_py(py, e))?;
    let layers = convlens::tables::quality_layers(&[&report]).map_err(|e| table_err(py, e))?;
    let groups = convlens::tables::quality_groups(&[&report]).map_err(|e| table_err(py, e))?;
    Ok((
        json(py, &report)?,
        table_to_py(py, &layers)?,
        table_to_py(py, &groups)?,
    ))
}

/// `find_models(dir)` → model files under a folder (recursively), as the CLI finds them.
#[pyfunction]
fn find_models(py: Python<'_>, dir: PathBuf) -> PyResult<Vec<PathBuf>> {
    convlens::read::find_models(&dir)
        .map_err(|e| file_error(py, &dir, &format!("cannot list folder: {e}")))
}

/// `model_name(path)` → the model name a file is joined to the meta table by.
#[pyfunction]
fn model_name(path: PathBuf) -> String {
    convlens::read::model_name(&path)
}

/// Status rows as `(model, file, outcome, detail)` tuples.
fn status_rows(s: &[convlens::db::build::StatusEntry]) -> Vec<(String, String, String, String)> {
    s.iter()
        .map(|e| {
            (
                e.model.clone(),
                e.file.clone(),
                e.outcome.label().to_string(),
                e.detail.clone(),
            )
        })
        .collect()
}

/// Filter counts per kernel size as `("3x3", n)` pairs.
fn kernel_counts(filters: &[([usize; 2], u64)]) -> Vec<(String, u64)> {
    filters
        .iter()
        .map(|(k, n)| (format!("{}x{}", k[0], k[1]), *n))
        .collect()
}

/// A build or merge summary as `(summary_json, status rows)`.
fn summary_to_py(
    py: Python<'_>,
    doc: serde_json::Value,
    status: &[convlens::db::build::StatusEntry],
) -> PyResult<(String, Py<PyAny>)> {
    Ok((
        json(py, &doc)?,
        status_rows(status).into_pyobject(py)?.into_any().unbind(),
    ))
}

fn build_report_to_py(py: Python<'_>, r: &BuildReport) -> PyResult<(String, Py<PyAny>)> {
    let doc = serde_json::json!({
        "models_in_db": r.models_in_db,
        "filters": kernel_counts(&r.filters),
    });
    summary_to_py(py, doc, &r.status)
}

/// `db_build(zoo, out, meta, name_column, formats, kernel, force, files, progress)` →
/// `(summary_json, [(model, file, outcome, detail), ...])`.
#[pyfunction]
#[pyo3(signature = (zoo, out, meta=None, name_column="Name".to_string(), formats=Vec::new(), kernel="3x3", force=false, files=Vec::new(), progress=None, part=None, entry=None))]
#[allow(clippy::too_many_arguments)]
fn db_build(
    py: Python<'_>,
    zoo: PathBuf,
    out: PathBuf,
    meta: Option<PathBuf>,
    name_column: String,
    formats: Vec<String>,
    kernel: &str,
    force: bool,
    files: Vec<PathBuf>,
    progress: Option<Py<PyAny>>,
    part: Option<(usize, usize)>,
    entry: Option<String>,
) -> PyResult<(String, Py<PyAny>)> {
    let kernel = kernel_select(py, kernel)?;
    if let Some((i, n)) = part {
        if n == 0 || i >= n {
            return Err(argument_error(
                py,
                &format!("part ({i}, {n}): need 0 <= i < n"),
            ));
        }
    }
    let opts = BuildOptions {
        meta,
        name_column,
        formats,
        kernel,
        force,
        files,
        part,
        entry,
    };
    let r = py
        .detach(|| {
            convlens::db::build::build(&zoo, &out, &opts, &|done, total, name| {
                if let Some(cb) = &progress {
                    Python::attach(|py| {
                        if let Err(e) = cb.call1(py, (done, total, name)) {
                            e.print(py);
                        }
                    });
                }
            })
        })
        .map_err(|e| to_py(py, Failure::from_db(e)))?;
    build_report_to_py(py, &r)
}

/// `db_merge(inputs, out, link)` → `(summary_json, [(model, file, outcome, detail), ...])`:
/// merges partial databases into a new one, identical to a single build of the same files.
#[pyfunction]
#[pyo3(signature = (inputs, out, link=false))]
fn db_merge(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    out: PathBuf,
    link: bool,
) -> PyResult<(String, Py<PyAny>)> {
    let transfer = if link {
        convlens::db::merge::ShardTransfer::HardLink
    } else {
        convlens::db::merge::ShardTransfer::Copy
    };
    let r = py
        .detach(|| convlens::db::merge::merge_with(&inputs, &out, transfer))
        .map_err(|e| to_py(py, Failure::from_db(e)))?;
    let doc = serde_json::json!({
        "models_in_db": r.models,
        "deduplicated": r.deduplicated,
        "filters": kernel_counts(&r.filters),
    });
    summary_to_py(py, doc, &r.status)
}

fn open_db(py: Python<'_>, dir: &Path) -> PyResult<Db> {
    py.detach(|| Db::open(dir))
        .map_err(|e| to_py(py, Failure::from_db(e)))
}

fn scope(
    py: Python<'_>,
    conditions: Vec<String>,
    pairs: Option<PathBuf>,
    kernel: &str,
) -> PyResult<Scope> {
    let conditions = conditions
        .iter()
        .map(|c| {
            c.parse::<Condition>()
                .map_err(|e| argument_error(py, &format!("condition {c:?}: {e}")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Scope {
        conditions,
        pairs,
        kernel: Some(kernel_size(py, kernel)?),
    })
}

fn density(py: Python<'_>, d: &str) -> PyResult<Density> {
    match d {
        "hist" | "histogram" => Ok(Density::Histogram),
        "kde" => Ok(Density::Kde),
        _ => Err(argument_error(
            py,
            &format!("density {d:?}: use \"hist\" or \"kde\""),
        )),
    }
}

/// `db_summary(db)` → JSON with the models of the database and their filter counts.
#[pyfunction]
fn db_models(py: Python<'_>, db: PathBuf) -> PyResult<String> {
    let d = open_db(py, &db)?;
    let models: Vec<serde_json::Value> = d
        .models
        .iter()
        .map(|m| {
            let shards: Vec<serde_json::Value> = m
                .kernels
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "kernel": format!("{}x{}", k.kernel[0], k.kernel[1]),
                        "filters": k.n_filters,
                        "shard": d.dir.join(&k.shard),
                    })
                })
                .collect();
            serde_json::json!({"model": m.name, "shards": shards})
        })
        .collect();
    json(py, &models)
}

/// `basis(db, by, where, pairs, kernel)` → `(json, table)`.
#[pyfunction]
#[pyo3(signature = (db, by=None, conditions=Vec::new(), pairs=None, kernel="3x3"))]
fn basis<'py>(
    py: Python<'py>,
    db: PathBuf,
    by: Option<String>,
    conditions: Vec<String>,
    pairs: Option<PathBuf>,
    kernel: &str,
) -> PyResult<(String, Bound<'py, PyTuple>)> {
    let sc = scope(py, conditions, pairs, kernel)?;
    let d = open_db(py, &db)?;
    let r = py
        .detach(|| study::basis(&d, &sc, by.as_deref()))
        .map_err(|e| to_py(py, Failure::from_db(e)))?;
    let t = convlens::tables::basis(&r).map_err(|e| table_err(py, e))?;
    Ok((json(py, &r)?, table_to_py(py, &t)?))
}

/// `shift(db, by, ...)` → `(json, cells_table, pairs_table)`.
#[pyfunction]
#[pyo3(signature = (db, by="Robust".to_string(), within=None, conditions=Vec::new(), pairs=None, kernel="3x3", density="hist", splits=50, bootstrap=200, seed=0x5EED, replicate_column=None, match_columns=Vec::new(), permutations=convlens::compare::stats::PERMUTATIONS, exact_permutations=true))]
#[allow(clippy::too_many_arguments)]
fn shift<'py>(
    py: Python<'py>,
    db: PathBuf,
    by: String,
    within: Option<String>,
    conditions: Vec<String>,
    pairs: Option<PathBuf>,
    kernel: &str,
    density: &str,
    splits: usize,
    bootstrap: usize,
    seed: u64,
    replicate_column: Option<String>,
    match_columns: Vec<String>,
    permutations: usize,
    exact_permutations: bool,
) -> PyResult<(String, Bound<'py, PyTuple>, Bound<'py, PyTuple>)> {
    let sc = scope(py, conditions, pairs, kernel)?;
    let opts = ShiftOptions {
        by,
        within,
        density: self::density(py, density)?,
        splits,
        bootstrap,
        seed,
        replicate_column,
        match_columns,
        permutations,
        exact_permutations,
    };
    let d = open_db(py, &db)?;
    let r = py
        .detach(|| study::shift(&d, &sc, &opts))
        .map_err(|e| to_py(py, Failure::from_db(e)))?;
    let (cells, prs) = convlens::tables::shift(&r).map_err(|e| table_err(py, e))?;
    Ok((
        json(py, &r)?,
        table_to_py(py, &cells)?,
        table_to_py(py, &prs)?,
    ))
}

/// `kl_matrix(db, by, cell, ...)` → `(json, table)`.
#[pyfunction]
#[pyo3(signature = (db, by="model".to_string(), cell="overall".to_string(), conditions=Vec::new(), pairs=None, kernel="3x3", density="hist"))]
#[allow(clippy::too_many_arguments)]
fn kl_matrix<'py>(
    py: Python<'py>,
    db: PathBuf,
    by: String,
    cell: String,
    conditions: Vec<String>,
    pairs: Option<PathBuf>,
    kernel: &str,
    density: &str,
) -> PyResult<(String, Bound<'py, PyTuple>)> {
    let sc = scope(py, conditions, pairs, kernel)?;
    let dens = self::density(py, density)?;
    let d = open_db(py, &db)?;
    let r = py
        .detach(|| study::kl_matrix(&d, &sc, &by, &cell, dens))
        .map_err(|e| to_py(py, Failure::from_db(e)))?;
    let t = convlens::tables::kl_matrix(&r).map_err(|e| table_err(py, e))?;
    Ok((json(py, &r)?, table_to_py(py, &t)?))
}

/// `aggregate(db, by, ..., permutations, seed, within)` → `(json, table, tests_table)`.
#[pyfunction]
#[pyo3(signature = (db, by=None, conditions=Vec::new(), pairs=None, kernel="3x3", permutations=convlens::compare::stats::PERMUTATIONS, seed=0x5EED, within=None))]
#[allow(clippy::too_many_arguments)]
fn aggregate<'py>(
    py: Python<'py>,
    db: PathBuf,
    by: Option<String>,
    conditions: Vec<String>,
    pairs: Option<PathBuf>,
    kernel: &str,
    permutations: usize,
    seed: u64,
    within: Option<String>,
) -> PyResult<(String, Bound<'py, PyTuple>, Bound<'py, PyTuple>)> {
    let sc = scope(py, conditions, pairs, kernel)?;
    let opts = study::AggregateOptions {
        permutations,
        seed,
        within,
    };
    let d = open_db(py, &db)?;
    let r = py
        .detach(|| study::aggregate_with(&d, &sc, by.as_deref(), &opts))
        .map_err(|e| to_py(py, Failure::from_db(e)))?;
    let t = convlens::tables::aggregate(&r).map_err(|e| table_err(py, e))?;
    let tests = convlens::tables::aggregate_tests(&r).map_err(|e| table_err(py, e))?;
    Ok((
        json(py, &r)?,
        table_to_py(py, &t)?,
        table_to_py(py, &tests)?,
    ))
}

/// What `report` hands back: index path, figures `(id, title, caption)`, warnings.
type ReportResult = (PathBuf, Vec<(String, String, String)>, Vec<String>);

/// What `stem` hands back: JSON, per-filter and per-model tables, the figure's SVG.
type StemResult<'py> = (
    String,
    Bound<'py, PyTuple>,
    Bound<'py, PyTuple>,
    Option<String>,
);

/// `report(input, out, ...)` → `(index_path, [(id, title, caption)], warnings)`.
#[pyfunction]
#[pyo3(signature = (input, out, compare="Robust".to_string(), meta=None, pairs=None, bootstrap=200, images=None, figures=Vec::new(), kernel="3x3"))]
#[allow(clippy::too_many_arguments)]
fn report(
    py: Python<'_>,
    input: PathBuf,
    out: PathBuf,
    compare: String,
    meta: Option<PathBuf>,
    pairs: Option<PathBuf>,
    bootstrap: usize,
    images: Option<PathBuf>,
    figures: Vec<String>,
    kernel: &str,
) -> PyResult<ReportResult> {
    let opts = convlens::report::ReportOptions {
        compare,
        meta,
        pairs,
        bootstrap,
        images,
        figures,
        kernel: kernel_size(py, kernel)?,
        ..Default::default()
    };
    let r = py
        .detach(|| convlens::report::report(&input, &out, &opts))
        .map_err(|e| to_py(py, Failure::from_report(e)))?;
    let figs = r
        .figures
        .iter()
        .map(|f| (f.id.clone(), f.title.clone(), f.caption.clone()))
        .collect();
    let mut warnings = r.warnings.clone();
    if let Some(b) = &r.build {
        for e in &b.status {
            if e.outcome == convlens::db::build::Outcome::Failed {
                warnings.push(format!("failed: {} ({}): {}", e.model, e.file, e.detail));
            }
        }
    }
    Ok((r.index, figs, warnings))
}

/// Images for `stem`: an `.npz` path, or `(clean, [(key, perturbed), ...])` float32 arrays
/// given as tensor tuples.
fn image_set(py: Python<'_>, images: &Bound<'_, PyAny>) -> PyResult<ImageSet> {
    if let Ok(p) = images.extract::<PathBuf>() {
        return py
            .detach(|| ImageSet::load_npz(&p))
            .map_err(|e| file_error(py, &p, &e.to_string()));
    }
    let (clean, perturbed): (Bound<'_, PyAny>, Vec<(String, Bound<'_, PyAny>)>) =
        images.extract().map_err(|_| {
            argument_error(
                py,
                "images: a .npz path, or (clean N×C×H×W array, {key: perturbed array})",
            )
        })?;
    let (c, dims) = tensors::image_array(py, &clean, "clean images")?;
    let mut p = Vec::new();
    for (k, a) in perturbed {
        let (v, d) = tensors::image_array(py, &a, &format!("perturbed images {k:?}"))?;
        if d != dims {
            return Err(argument_error(
                py,
                &format!("perturbed images {k:?} have shape {d:?}, the clean ones {dims:?}"),
            ));
        }
        p.push((k, v));
    }
    ImageSet::from_arrays(c, dims, p, "arrays").map_err(|e| argument_error(py, &e.to_string()))
}

/// `stem(src, images, perturbed, robust, mean, std, eps, steps, step_size, seed, layer)` →
/// `(json, filters_table, models_table, svg_figure)`.
#[pyfunction]
#[pyo3(signature = (src, images, perturbed=None, robust=None, mean=None, std=None, eps=8.0/255.0, steps=0, step_size=None, seed=0, layer=None, entry=None))]
#[allow(clippy::too_many_arguments)]
fn stem<'py>(
    py: Python<'py>,
    src: &Bound<'py, PyAny>,
    images: &Bound<'py, PyAny>,
    perturbed: Option<String>,
    robust: Option<bool>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<f64>>,
    eps: f64,
    steps: usize,
    step_size: Option<f64>,
    seed: u64,
    layer: Option<String>,
    entry: Option<String>,
) -> PyResult<StemResult<'py>> {
    let source = Source::extract(py, src)?;
    let images = image_set(py, images)?;
    let defaults = AnalysisOptions::default();
    let pgd_defaults = PgdOptions::default();
    let opts = AnalysisOptions {
        load: LoadOptions {
            layer,
            entry: entry.clone(),
            ..Default::default()
        },
        norm: mean.zip(std),
        pgd: (steps > 0).then_some(PgdOptions {
            eps,
            steps,
            step_size: step_size.or(pgd_defaults.step_size),
            seed,
        }),
        ..defaults
    };
    let r = py
        .detach(|| {
            let (path, ckpt) = source.read(entry.as_deref())?;
            let name = match &source {
                Source::Path(p) => convlens::read::model_name(p),
                Source::Tensors { name, .. } => name.clone(),
            };
            let mut model = StemModel::from_checkpoint(&name, &ckpt, &opts.load)
                .map_err(|e| Failure::file(&path, e.to_string()))?;
            if let Source::Path(p) = &source {
                model.file = p.clone();
            }
            let norm = convlens::stem::choose_normalization(opts.norm.as_ref(), None, &images)
                .map_err(|e| Failure::argument(e.to_string()))?;
            let key = perturbed.clone().or_else(|| {
                images
                    .perturbed
                    .iter()
                    .any(|(k, _)| *k == name)
                    .then(|| name.clone())
            });
            convlens::stem::analyse(&model, &images, key.as_deref(), &norm, robust, &opts)
                .map_err(|e| Failure::file(&path, e.to_string()))
        })
        .map_err(|e| to_py(py, e))?;
    let (filters, models) =
        convlens::tables::stem(std::slice::from_ref(&r)).map_err(|e| table_err(py, e))?;
    let svg = convlens::stem::figure(&r).ok().map(|f| f.svg);
    Ok((
        json(py, &r)?,
        table_to_py(py, &filters)?,
        table_to_py(py, &models)?,
        svg,
    ))
}

/// `fingerprint(src, entry)` → JSON of the probability that the model was adversarially
/// trained, with its evidence (as `convlens fingerprint --format json`).
#[pyfunction]
#[pyo3(signature = (src, entry=None))]
fn fingerprint(py: Python<'_>, src: &Bound<'_, PyAny>, entry: Option<String>) -> PyResult<String> {
    let source = Source::extract(py, src)?;
    let fp = py
        .detach(|| {
            let fm = convlens::fingerprint::FingerprintModel::bundled()
                .map_err(|e| Failure::argument(format!("the bundled fingerprint model: {e}")))?;
            let (path, ckpt) = source.read(entry.as_deref())?;
            let report = analyse_checkpoint(&path, &ckpt, KernelSelect::Size(3, 3))
                .map_err(Failure::from_analyse)?;
            let (m, layers) = convlens::fingerprint::model_moments(&report);
            let name = match &source {
                Source::Path(p) => p.display().to_string(),
                Source::Tensors { name, .. } => name.clone(),
            };
            convlens::fingerprint::fingerprint_moments(&fm, &path, &name, &m, layers).map_err(|e| {
                match e {
                    convlens::fingerprint::FingerprintError::Analyse(a) => Failure::from_analyse(a),
                    other => Failure::stripped(path.clone(), &other.to_string()),
                }
            })
        })
        .map_err(|e| to_py(py, e))?;
    json(py, &fp)
}

/// `filters_figure(src, which, kernel)` → SVG of a layer's filters: `which` is `first`, `last`,
/// `rgb` (the stem as colour patches) or a layer name.
#[pyfunction]
#[pyo3(signature = (src, which="first", kernel="3x3", entry=None))]
fn filters_figure(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    which: &str,
    kernel: &str,
    entry: Option<String>,
) -> PyResult<String> {
    let k = kernel_select(py, kernel)?;
    let source = Source::extract(py, src)?;
    let which = which.to_string();
    let kernel = kernel.to_string();
    py.detach(|| {
        let (path, ckpt) = source.read(entry.as_deref())?;
        let ex = convlens::extract::extract(&ckpt);
        let layers: Vec<_> = ex.selected(k).filter(|l| !l.transposed).collect();
        let name = match &source {
            Source::Path(p) => convlens::read::model_name(p),
            Source::Tensors { name, .. } => name.clone(),
        };
        let layer = match which.as_str() {
            "first" | "rgb" => layers.first(),
            "last" => layers.last(),
            n => layers.iter().find(|l| l.name == n),
        }
        .copied()
        .ok_or_else(|| {
            Failure::argument(format!("{name}: no {which} conv layer of kernel {kernel}"))
        })?;
        let w = convlens::quality::checked_weights(layer)
            .map_err(|e| Failure::file(&path, format!("layer {:?}: {e}", layer.name)))?;
        let shape = [layer.out_channels, layer.in_per_group, layer.kh, layer.kw];
        let fig = if which == "rgb" {
            convlens_show::rgb_filters(&format!("{name} stem"), &w, shape)
        } else {
            convlens_show::filter_grid(&format!("{name} — layer {}", layer.name), &w, shape, 8, 16)
        };
        fig.map(|f| f.svg)
            .map_err(|e| Failure::argument(e.to_string()))
    })
    .map_err(|e| to_py(py, e))
}

fn figure_of(svg: String) -> convlens_show::Figure {
    convlens_show::Figure {
        svg,
        width_pt: 0.0,
        height_pt: 0.0,
    }
}

/// `render_png(svg, scale)` → PNG bytes (`scale` pixels per point; 4.1667 = 300 dpi).
#[pyfunction]
#[pyo3(signature = (svg, scale=convlens_show::PNG_SCALE_300_DPI))]
fn render_png(py: Python<'_>, svg: String, scale: f32) -> PyResult<Py<PyBytes>> {
    let png = py
        .detach(|| figure_of(svg).to_png(scale))
        .map_err(|e| argument_error(py, &format!("cannot render the figure: {e}")))?;
    Ok(PyBytes::new(py, &png).unbind())
}

/// `render_pdf(svg)` → PDF bytes.
#[pyfunction]
fn render_pdf(py: Python<'_>, svg: String) -> PyResult<Py<PyBytes>> {
    let pdf = py
        .detach(|| figure_of(svg).to_pdf())
        .map_err(|e| argument_error(py, &format!("cannot render the figure: {e}")))?;
    Ok(PyBytes::new(py, &pdf).unbind())
}

/// `set_threads(n)`: worker threads of the engine (call before the first analysis).
#[pyfunction]
fn set_threads(py: Python<'_>, n: usize) -> PyResult<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .build_global()
        .map_err(|e| argument_error(py, &format!("cannot set {n} threads: {e}")))
}

/// `_spin(seconds)`: burns CPU in Rust with the interpreter lock released (used by the test
/// that another Python thread keeps running).
#[pyfunction]
fn _spin(py: Python<'_>, seconds: f64) -> u64 {
    py.detach(|| {
        let t = std::time::Instant::now();
        let mut n = 0u64;
        while t.elapsed().as_secs_f64() < seconds {
            n = n.wrapping_add(1);
            std::hint::black_box(n);
        }
        n
    })
}

/// The native module.
#[pymodule]
fn _convlens(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PERMUTATIONS", convlens::compare::stats::PERMUTATIONS)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(quality, m)?)?;
    m.add_function(wrap_pyfunction!(find_models, m)?)?;
    m.add_function(wrap_pyfunction!(model_name, m)?)?;
    m.add_function(wrap_pyfunction!(db_build, m)?)?;
    m.add_function(wrap_pyfunction!(db_merge, m)?)?;
    m.add_function(wrap_pyfunction!(db_models, m)?)?;
    m.add_function(wrap_pyfunction!(basis, m)?)?;
    m.add_function(wrap_pyfunction!(shift, m)?)?;
    m.add_function(wrap_pyfunction!(kl_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(aggregate, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(stem, m)?)?;
    m.add_function(wrap_pyfunction!(filters_figure, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(render_png, m)?)?;
    m.add_function(wrap_pyfunction!(render_pdf, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_spin, m)?)?;
    Ok(())
}
