//! Library errors as the Python exceptions of `convlens.errors`.

use convlens::db::DbError;
use convlens::quality::AnalyseError;
use convlens::read::ReadError;
use convlens::report::ReportError;
use pyo3::prelude::*;
use std::path::{Path, PathBuf};

/// What went wrong, sorted into the two exception classes a user sees.
#[derive(Debug)]
pub enum Failure {
    /// A file cannot be used: `convlens.FileError` with its path and the reason.
    File { path: PathBuf, reason: String },
    /// An argument is unusable: `convlens.ArgumentError`.
    Argument(String),
}

impl Failure {
    pub fn file(path: &Path, reason: String) -> Failure {
        Failure::File {
            path: path.to_path_buf(),
            reason,
        }
    }

    pub fn argument(msg: String) -> Failure {
        Failure::Argument(msg)
    }

    pub fn from_read(e: ReadError) -> Failure {
        Failure::File {
            path: e.path,
            reason: e.kind.to_string(),
        }
    }

    /// A file failure from a message that starts with `"{path}: "`.
    pub fn stripped(path: PathBuf, msg: &str) -> Failure {
        let prefix = format!("{}: ", path.display());
        let reason = msg.strip_prefix(&prefix).unwrap_or(msg).to_string();
        Failure::File { path, reason }
    }

    pub fn from_analyse(e: AnalyseError) -> Failure {
        let msg = e.to_string();
        match e {
            AnalyseError::Read(r) => Failure::from_read(r),
            AnalyseError::BadLayer {
                path,
                layer,
                reason,
            } => Failure::File {
                path,
                reason: format!("layer {layer:?}: {reason}"),
            },
            AnalyseError::NoConvLayers { path, .. } => Failure::stripped(path, &msg),
        }
    }

    pub fn from_db(e: DbError) -> Failure {
        let msg = e.to_string();
        match e {
            DbError::Io(path, e) => Failure::File {
                path,
                reason: e.to_string(),
            },
            DbError::Record(path, r) => Failure::File {
                path,
                reason: format!("damaged model record: {r}"),
            },
            DbError::NotADb(path) => Failure::stripped(path, &msg),
            _ => Failure::Argument(msg),
        }
    }

    pub fn from_report(e: ReportError) -> Failure {
        match e {
            ReportError::Db(d) => Failure::from_db(d),
            ReportError::Io(path, e) => Failure::File {
                path,
                reason: e.to_string(),
            },
        }
    }
}

fn raise(
    py: Python<'_>,
    class: &str,
    args: impl for<'a> FnOnce(Python<'a>, &Bound<'a, PyAny>) -> PyResult<Bound<'a, PyAny>>,
) -> PyErr {
    let made = py
        .import("convlens.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| args(py, &c));
    match made {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

/// The Python exception of a failure.
pub fn to_py(py: Python<'_>, f: Failure) -> PyErr {
    match f {
        Failure::File { path, reason } => file_error(py, &path, &reason),
        Failure::Argument(m) => argument_error(py, &m),
    }
}

/// `convlens.FileError(path, reason)`.
pub fn file_error(py: Python<'_>, path: &Path, reason: &str) -> PyErr {
    let p = path.display().to_string();
    raise(py, "FileError", |_, c| c.call1((p, reason)))
}

/// `convlens.ArgumentError(message)`.
pub fn argument_error(py: Python<'_>, msg: &str) -> PyErr {
    raise(py, "ArgumentError", |_, c| c.call1((msg,)))
}
