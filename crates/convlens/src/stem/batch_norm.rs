//! The BatchNorm after the stem: its parameters, checked, and how it is found in a file
//! without a graph (by name, by file order, or by width).

use super::DEFAULT_BN_EPS;
use crate::extract::ConvLayer;
use convlens_core::Checkpoint;

/// BatchNorm parameters of one BatchNorm.
pub(super) struct BnParams {
    pub(super) scale: Vec<f64>,
    pub(super) shift: Vec<f64>,
    pub(super) mean: Vec<f64>,
    pub(super) var: Vec<f64>,
    pub(super) eps: f64,
}

pub(super) fn vec1(ckpt: &Checkpoint, name: &str, len: usize) -> Result<Option<Vec<f64>>, String> {
    let Some(t) = ckpt.tensor(name) else {
        return Ok(None);
    };
    if !t.dtype().is_float() {
        return Err(format!(
            "{name} has type {}, not floating point",
            t.dtype().name()
        ));
    }
    if t.shape() != [len] {
        return Err(format!(
            "{name} has shape {:?}, expected [{len}] (one value per output channel)",
            t.shape()
        ));
    }
    let v = t.to_f64();
    if v.iter().any(|x| !x.is_finite()) {
        return Err(format!("{name} holds NaN or infinite values"));
    }
    Ok(Some(v))
}

/// The BatchNorm `prefix` for `len` channels: `prefix.running_mean` and `.running_var` are
/// required, `.weight` (1) and `.bias` (0) optional.
pub(super) fn bn_group(
    ckpt: &Checkpoint,
    prefix: &str,
    len: usize,
    eps: f64,
) -> Result<BnParams, String> {
    let mean = vec1(ckpt, &format!("{prefix}.running_mean"), len)?
        .ok_or_else(|| format!("no tensor {prefix}.running_mean"))?;
    let var = vec1(ckpt, &format!("{prefix}.running_var"), len)?
        .ok_or_else(|| format!("no tensor {prefix}.running_var"))?;
    let scale = vec1(ckpt, &format!("{prefix}.weight"), len)?.unwrap_or_else(|| vec![1.0; len]);
    let shift = vec1(ckpt, &format!("{prefix}.bias"), len)?.unwrap_or_else(|| vec![0.0; len]);
    check_bn(mean, var, scale, shift, eps)
}

pub(super) fn check_bn(
    mean: Vec<f64>,
    var: Vec<f64>,
    scale: Vec<f64>,
    shift: Vec<f64>,
    eps: f64,
) -> Result<BnParams, String> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(format!("epsilon {eps} is not a non-negative number"));
    }
    if let Some(v) = var.iter().find(|&&v| v + eps <= 0.0) {
        return Err(format!(
            "running variance {v} + epsilon {eps} is not positive"
        ));
    }
    Ok(BnParams {
        scale,
        shift,
        mean,
        var,
        eps,
    })
}

/// A complete BatchNorm group of `len` channels, or `None` (wrong size, incomplete, invalid).
fn try_bn(ckpt: &Checkpoint, prefix: &str, len: usize) -> Option<BnParams> {
    bn_group(ckpt, prefix, len, DEFAULT_BN_EPS).ok()
}

/// The BatchNorm names rule (a) tries for a layer: `P.(N+1)` for `P.N`, and `P.bnS` / `P.normS`
/// for `P.convS`.
fn sibling_names(layer: &str) -> Vec<String> {
    let (prefix, last) = match layer.rsplit_once('.') {
        Some((p, l)) => (format!("{p}."), l),
        None => (String::new(), layer),
    };
    let mut out = Vec::new();
    if let Ok(n) = last.parse::<u64>() {
        if let Some(m) = n.checked_add(1) {
            out.push(format!("{prefix}{m}"));
        }
    }
    if last.contains("conv") {
        out.push(format!("{prefix}{}", last.replacen("conv", "bn", 1)));
        out.push(format!("{prefix}{}", last.replacen("conv", "norm", 1)));
    }
    out
}

/// Finds the BatchNorm after the stem of a file without a graph. Returns the name, its
/// parameters and the rule that found it (or why none was found).
pub(super) fn find_bn_graphless(
    ckpt: &Checkpoint,
    layer: &ConvLayer,
    has_bias: bool,
) -> (Option<(String, BnParams)>, String) {
    let out = layer.out_channels;
    // (a) by name
    for cand in sibling_names(&layer.name) {
        if let Some(p) = try_bn(ckpt, &cand, out) {
            return (
                Some((cand.clone(), p)),
                format!("found by name ({} → {cand})", layer.name),
            );
        }
    }
    // (b) the next BatchNorm after the weight in file order, before any other 4-D weight
    for t in ckpt.tensors.iter().skip(layer.order.saturating_add(1)) {
        if t.tensor.shape().len() == 4 && t.tensor.dtype().is_float() {
            break;
        }
        if let Some(prefix) = t.name.strip_suffix(".running_mean") {
            if t.tensor.shape().len() == 1 {
                if let Some(p) = try_bn(ckpt, prefix, out) {
                    return (
                        Some((prefix.to_string(), p)),
                        format!(
                            "the first BatchNorm after {} in file order ({})",
                            layer.weight_name, ckpt.order_source
                        ),
                    );
                }
                break;
            }
        }
    }
    // (c) names sorted alphabetically: the first BatchNorm of the stem's width, for a stem
    // without bias (a bias-free convolution is followed by a normalisation)
    if ckpt.order_source == convlens_safetensors::ORDER_NATURAL && !has_bias {
        for t in &ckpt.tensors {
            if let Some(prefix) = t.name.strip_suffix(".running_mean") {
                if let Some(p) = try_bn(ckpt, prefix, out) {
                    return (
                        Some((prefix.to_string(), p)),
                        format!(
                            "assumed: the first BatchNorm of {out} channels in the file (tensor names are sorted, so module order is unknown; the stem has no bias)"
                        ),
                    );
                }
            }
        }
    }
    (
        None,
        "none found (no BatchNorm named after the layer, none right after it in file order)"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_names_follow_the_conventions() {
        assert_eq!(sibling_names("features.0"), ["features.1"]);
        assert_eq!(sibling_names("conv1"), ["bn1", "norm1"]);
        assert_eq!(sibling_names("stem.conv"), ["stem.bn", "stem.norm"]);
        assert!(sibling_names("stem").is_empty());
    }
}
