//! Which globals a pickle may mention and which it may call.
//!
//! Nothing is ever imported or run: "calling" an allowed global means that the pickle machine
//! computes an inert value for it (a tensor description, a dict, an object record).

/// Modules whose every attribute is refused as soon as a pickle mentions it.
const DENIED_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "subprocess",
    "_posixsubprocess",
    "sys",
    "shutil",
    "socket",
    "socketserver",
    "ssl",
    "select",
    "selectors",
    "importlib",
    "imp",
    "pkgutil",
    "zipimport",
    "pickle",
    "_pickle",
    "cPickle",
    "pickletools",
    "shelve",
    "dill",
    "cloudpickle",
    "joblib",
    "marshal",
    "runpy",
    "webbrowser",
    "code",
    "codeop",
    "pty",
    "tty",
    "ctypes",
    "_ctypes",
    "cffi",
    "multiprocessing",
    "concurrent",
    "threading",
    "_thread",
    "thread",
    "signal",
    "asyncio",
    "pdb",
    "bdb",
    "trace",
    "timeit",
    "profile",
    "cProfile",
    "platform",
    "gc",
    "inspect",
    "types",
    "functools",
    "operator",
    "_operator",
    "io",
    "_io",
    "fileinput",
    "tempfile",
    "glob",
    "urllib",
    "urllib2",
    "http",
    "httplib",
    "requests",
    "ftplib",
    "smtplib",
    "telnetlib",
    "xmlrpc",
    "commands",
    "popen2",
    "distutils",
    "setuptools",
    "pip",
    "torch.hub",
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
];

/// Names refused in the builtins module (`builtins`, Python 2 `__builtin__`).
const DENIED_BUILTINS: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "compile",
    "open",
    "file",
    "__import__",
    "getattr",
    "setattr",
    "delattr",
    "globals",
    "locals",
    "vars",
    "input",
    "raw_input",
    "breakpoint",
    "exit",
    "quit",
    "help",
    "reload",
    "apply",
    "type",
    "__build_class__",
    "__loader__",
];

/// Individual attributes refused in otherwise harmless modules.
const DENIED_NAMES: &[(&str, &str)] = &[
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch.serialization", "_load"),
    ("torch.serialization", "_legacy_load"),
    ("torch.jit", "load"),
    ("torch._C", "_jit_script_compile"),
    ("numpy", "load"),
    ("numpy", "loadtxt"),
    ("numpy", "fromfile"),
    ("numpy.lib.npyio", "load"),
];

/// Python 2 module names as Python 3 knows them.
pub(crate) fn canonical_module(module: &str) -> &str {
    match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        other => other,
    }
}

/// True when a pickle mentioning `module.name` must be refused outright.
pub(crate) fn is_denied(module: &str, name: &str) -> bool {
    let module = canonical_module(module);
    let in_module = |m: &str| {
        module == m
            || module
                .strip_prefix(m)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    if DENIED_MODULES.iter().any(|m| in_module(m)) {
        return true;
    }
    if module == "builtins" && DENIED_BUILTINS.contains(&name) {
        return true;
    }
    // dunder attributes are how sandbox escapes usually start (`__class__`, `__globals__`...)
    let dunder = name.len() > 4 && name.starts_with("__") && name.ends_with("__");
    if dunder && name != "__newobj__" && name != "__newobj_ex__" {
        return true;
    }
    DENIED_NAMES.iter().any(|(m, n)| *m == module && *n == name)
}

/// What "calling" an allowed global produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callable {
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)`.
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])`.
    RebuildTensorV3,
    /// `_rebuild_parameter*` and `torch.nn.Parameter(data, ...)`: the first argument.
    FirstArg,
    /// `torch._tensor._rebuild_from_type(_v2)(func, type, args, state)`.
    RebuildFromType,
    /// A tensor kind convlens does not read; the string says which.
    SkipTensor(&'static str),
    /// `collections.OrderedDict`, `dict`, `defaultdict`, `Counter`.
    Dict,
    /// `list`, `collections.deque`.
    List,
    /// `tuple`, `torch.Size`.
    Tuple,
    /// `set`, `frozenset`.
    Set,
    /// `copyreg._reconstructor(cls, base, state)` and `copyreg.__newobj__(cls, *args)`.
    Reconstruct,
    /// `_codecs.encode(text, encoding)`: bytes of a Python 3 pickle at protocol 2.
    CodecsEncode,
    /// `bytes()`/`bytearray()`.
    Bytes,
    /// `torch.serialization._get_layout(name)` and `torch.jit._pickle` helpers: the first argument.
    Identity,
    /// A harmless class whose instance is kept as an inert object.
    InertObject,
}

/// The inert meaning of calling `module.name`, or `None` when calling it is not allowed.
pub(crate) fn callable(module: &str, name: &str) -> Option<Callable> {
    use Callable::*;
    let module = canonical_module(module);
    Some(match (module, name) {
        ("torch._utils", "_rebuild_tensor") => RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => FirstArg,
        ("torch.nn.parameter", "Parameter") | ("torch.nn", "Parameter") => FirstArg,
        ("torch._tensor" | "torch.tensor", "_rebuild_from_type" | "_rebuild_from_type_v2") => {
            RebuildFromType
        }
        ("torch._utils", "_rebuild_qtensor") => SkipTensor("quantized tensor"),
        ("torch._utils", "_rebuild_sparse_tensor" | "_rebuild_sparse_csr") => {
            SkipTensor("sparse tensor")
        }
        ("torch._utils", "_rebuild_nested_tensor") => SkipTensor("nested tensor"),
        ("torch._utils", "_rebuild_meta_tensor_no_storage") => SkipTensor("meta tensor (no data)"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy") => {
            SkipTensor("device tensor stored as a NumPy array")
        }
        ("torch._utils", "_rebuild_wrapper_subclass") => SkipTensor("tensor subclass"),
        (
            "torch._utils",
            "_rebuild_xla_tensor" | "_rebuild_mlc_tensor" | "_rebuild_mkldnn_tensor",
        ) => SkipTensor("device-specific tensor"),
        ("collections", "OrderedDict" | "defaultdict" | "Counter") => Dict,
        ("builtins", "dict") => Dict,
        ("collections", "deque") | ("builtins", "list") => List,
        ("builtins", "tuple") | ("torch", "Size") => Tuple,
        ("builtins", "set" | "frozenset") => Set,
        ("copyreg", "_reconstructor" | "__newobj__" | "__newobj_ex__") => Reconstruct,
        ("_codecs", "encode") => CodecsEncode,
        ("builtins", "bytes" | "bytearray") => Bytes,
        ("torch.serialization", "_get_layout") => Identity,
        (
            "torch.jit._pickle",
            "build_intlist" | "build_doublelist" | "build_boollist" | "build_tensorlist"
            | "restore_type_tag",
        ) => Identity,
        (
            "builtins",
            "slice" | "complex" | "range" | "object" | "int" | "float" | "str" | "bool",
        ) => InertObject,
        ("torch", "device" | "dtype" | "finfo" | "iinfo") => InertObject,
        ("argparse", "Namespace") => InertObject,
        (
            "pathlib",
            "Path" | "PosixPath" | "WindowsPath" | "PurePath" | "PurePosixPath" | "PureWindowsPath",
        ) => InertObject,
        ("datetime", "datetime" | "date" | "time" | "timedelta" | "timezone") => InertObject,
        ("decimal", "Decimal") | ("fractions", "Fraction") | ("uuid", "UUID") => InertObject,
        ("numpy", "dtype" | "ndarray") => InertObject,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct" | "scalar") => {
            InertObject
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_globals_are_denied() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("os.path", "join"),
            ("subprocess", "Popen"),
            ("builtins", "eval"),
            ("__builtin__", "eval"),
            ("builtins", "getattr"),
            ("__builtin__", "__import__"),
            ("torch", "load"),
            ("collections", "__class__"),
        ] {
            assert!(is_denied(m, n), "{m}.{n}");
        }
        for (m, n) in [
            ("torch._utils", "_rebuild_tensor_v2"),
            ("collections", "OrderedDict"),
            ("__builtin__", "set"),
            ("models", "PreActBlock"),
            ("ossify", "thing"),
            ("copyreg", "__newobj__"),
        ] {
            assert!(!is_denied(m, n), "{m}.{n}");
        }
    }

    #[test]
    fn only_inert_callables_are_allowed() {
        assert_eq!(
            callable("torch._utils", "_rebuild_tensor_v2"),
            Some(Callable::RebuildTensorV2)
        );
        assert_eq!(callable("__builtin__", "set"), Some(Callable::Set));
        assert_eq!(
            callable("copy_reg", "_reconstructor"),
            Some(Callable::Reconstruct)
        );
        assert_eq!(callable("models", "PreActBlock"), None);
        assert_eq!(callable("builtins", "print"), None);
    }
}
