//! Setting up the chosen convolution as a [`StemModel`]: checks of its shape and weights, its
//! geometry (stride, padding, dilation), the BatchNorm folded into weights and bias; and stems
//! built by hand from explicit weights.

use super::batch_norm::{bn_group, find_bn_graphless, BnParams};
use super::{
    unsupported, BnChoice, LoadOptions, StemError, StemInfo, StemModel, DEFAULT_BN_EPS,
    MAX_DILATION, MAX_IN_CHANNELS, MAX_KERNEL, MAX_OUT_CHANNELS, MAX_PAD, MAX_STRIDE,
};
use crate::extract::ConvLayer;
use convlens_core::Checkpoint;
use std::path::PathBuf;

fn geometry_usize(
    v: &[i64],
    n: usize,
    what: &str,
    lo: usize,
    hi: usize,
) -> Result<Vec<usize>, String> {
    if v.len() != n {
        return Err(format!("{what} {v:?} should have {n} values"));
    }
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .ok()
                .filter(|x| (lo..=hi).contains(x))
                .ok_or_else(|| format!("{what} {v:?} outside {lo}..={hi}"))
        })
        .collect()
}

impl StemModel {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn from_layer(
        name: &str,
        ckpt: &Checkpoint,
        layer: &ConvLayer,
        opts: &LoadOptions,
        mut notes: Vec<String>,
        followed_by: Option<String>,
        graph_bn: Option<(String, BnParams)>,
        mut bn_rule: String,
    ) -> Result<StemModel, StemError> {
        let lname = layer.name.as_str();
        if layer.op != "Conv" || layer.transposed {
            return Err(StemError::NotPlainConv(format!(
                "{lname} is a {}; only a plain Conv can be analysed",
                layer.op
            )));
        }
        let groups = layer.groups.unwrap_or(1).max(1);
        let (out, ipg, kh, kw) = (layer.out_channels, layer.in_per_group, layer.kh, layer.kw);
        if out == 0 || out > MAX_OUT_CHANNELS || out % groups != 0 {
            return Err(unsupported(
                lname,
                format!("{out} output channels in {groups} groups"),
            ));
        }
        let in_ch = ipg.saturating_mul(groups);
        if ipg == 0 || in_ch > MAX_IN_CHANNELS {
            return Err(unsupported(lname, format!("{in_ch} input channels")));
        }
        if kh == 0 || kw == 0 || kh > MAX_KERNEL || kw > MAX_KERNEL {
            return Err(unsupported(
                lname,
                format!("kernel {kh}x{kw} is outside 1..={MAX_KERNEL}"),
            ));
        }
        let mut weight: Vec<f64> = layer.weights_oihw().into_iter().map(f64::from).collect();
        if weight.iter().any(|w| !w.is_finite()) {
            return Err(unsupported(
                lname,
                "the weight holds NaN or infinite values",
            ));
        }
        let mut bias = match &layer.bias {
            Some(b) => {
                if !b.dtype().is_float() || b.numel() != out {
                    return Err(unsupported(
                        lname,
                        format!("bias of shape {:?} for {out} channels", b.shape()),
                    ));
                }
                let v = b.to_f64();
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(unsupported(lname, "the bias holds NaN or infinite values"));
                }
                v
            }
            None => vec![0.0; out],
        };
        let has_bias = layer.bias.is_some();

        // geometry
        let graph = layer.strides.is_some();
        let (mut stride, mut pads, dilation, mut geometry) = if graph {
            let node = ckpt
                .graph
                .as_ref()
                .and_then(|g| g.convs.iter().find(|c| c.node_index == layer.order));
            let bad = |e: String| unsupported(lname, e);
            let strides = layer.strides.clone().unwrap_or_default();
            let stride = if strides.is_empty() {
                vec![1, 1]
            } else {
                geometry_usize(&strides, 2, "strides", 1, MAX_STRIDE).map_err(bad)?
            };
            let dil = layer.dilations.clone().unwrap_or_default();
            let dilation = if dil.is_empty() {
                vec![1, 1]
            } else {
                geometry_usize(&dil, 2, "dilations", 1, MAX_DILATION).map_err(bad)?
            };
            let auto = node.and_then(|n| n.auto_pad.clone()).unwrap_or_default();
            let p = layer.pads.clone().unwrap_or_default();
            let pads = match auto.as_str() {
                "" | "NOTSET" => {
                    if p.is_empty() {
                        vec![0; 4]
                    } else {
                        geometry_usize(&p, 4, "pads", 0, MAX_PAD).map_err(bad)?
                    }
                }
                "VALID" => vec![0; 4],
                "SAME_UPPER" | "SAME_LOWER" => Vec::new(), // resolved per image size
                other => return Err(unsupported(lname, format!("auto_pad {other:?}"))),
            };
            let pads4 = if pads.is_empty() {
                notes.push(format!(
                    "auto_pad {auto}: padding depends on the image size; computed for each input"
                ));
                [usize::MAX; 4]
            } else {
                [pads[0], pads[1], pads[2], pads[3]]
            };
            (
                [stride[0], stride[1]],
                pads4,
                [dilation[0], dilation[1]],
                "graph attributes".to_string(),
            )
        } else {
            (
                [1, 1],
                [kh / 2, kw / 2, kh / 2, kw / 2],
                [1, 1],
                format!(
                    "assumed (no graph): stride 1, padding {}x{} (k/2), dilation 1",
                    kh / 2,
                    kw / 2
                ),
            )
        };
        if let Some(s) = opts.stride {
            if s == 0 || s > MAX_STRIDE {
                return Err(StemError::Options(format!(
                    "stride {s} is outside 1..={MAX_STRIDE}"
                )));
            }
            stride = [s, s];
        }
        if let Some(p) = opts.padding {
            if p > MAX_PAD {
                return Err(StemError::Options(format!(
                    "padding {p} is outside 0..={MAX_PAD}"
                )));
            }
            pads = [p; 4];
        }
        if opts.stride.is_some() || opts.padding.is_some() {
            let what = if graph {
                "options (overriding the graph's attributes)".to_string()
            } else {
                "options".to_string()
            };
            geometry = format!(
                "{what}: stride {}, padding {}{}",
                stride[0],
                if pads[0] == usize::MAX {
                    "auto".to_string()
                } else {
                    pads[0].to_string()
                },
                if graph {
                    String::new()
                } else {
                    ", dilation 1".to_string()
                }
            );
        }

        // batch norm
        let bn: Option<(String, BnParams)> = match &opts.bn {
            BnChoice::Off => {
                if bn_rule.is_empty() {
                    bn_rule = "not folded (turned off)".to_string();
                }
                None
            }
            BnChoice::Named(prefix) => {
                let p = bn_group(ckpt, prefix, out, DEFAULT_BN_EPS).map_err(|reason| {
                    StemError::BatchNorm {
                        name: prefix.clone(),
                        reason,
                    }
                })?;
                bn_rule = "named in the options (epsilon 1e-5 assumed)".to_string();
                Some((prefix.clone(), p))
            }
            BnChoice::Auto if graph => {
                if bn_rule.is_empty() {
                    bn_rule = "none after the stem in the graph (an exporter may have folded it into the weights)".to_string();
                }
                graph_bn
            }
            BnChoice::Auto => {
                let (found, rule) = find_bn_graphless(ckpt, layer, has_bias);
                bn_rule = if found.is_some() {
                    format!("{rule}; epsilon 1e-5 assumed")
                } else {
                    rule
                };
                found
            }
        };
        if let Some((_, p)) = &bn {
            let per = weight.len() / out;
            for o in 0..out {
                let s = p.scale[o] / (p.var[o] + p.eps).sqrt();
                for w in &mut weight[o * per..(o + 1) * per] {
                    *w *= s;
                }
                bias[o] = (bias[o] - p.mean[o]) * s + p.shift[o];
            }
        }
        Ok(StemModel {
            name: name.to_string(),
            file: PathBuf::new(),
            info: StemInfo {
                layer: layer.name.clone(),
                weight_name: layer.weight_name.clone(),
                out_channels: out,
                in_channels: in_ch,
                groups,
                kh,
                kw,
                stride,
                pads,
                dilation,
                geometry,
                has_bias,
                batch_norm: bn.map(|(n, _)| n),
                batch_norm_rule: bn_rule,
                followed_by,
                notes,
            },
            weight,
            bias,
        })
    }

    /// A stem from explicit effective weights (OIHW, `out × in/groups × kh × kw`) and bias, for
    /// hand-built cases. Padding `(top, left, bottom, right)`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_weights(
        name: &str,
        weight: Vec<f64>,
        bias: Vec<f64>,
        shape: [usize; 4],
        groups: usize,
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
    ) -> Result<StemModel, StemError> {
        let [out, ipg, kh, kw] = shape;
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let ok = groups >= 1
            && (1..=MAX_OUT_CHANNELS).contains(&out)
            && out % groups == 0
            && ipg >= 1
            && ipg.saturating_mul(groups) <= MAX_IN_CHANNELS
            && (1..=MAX_KERNEL).contains(&kh)
            && (1..=MAX_KERNEL).contains(&kw)
            && n == Some(weight.len())
            && bias.len() == out
            && stride.iter().all(|s| (1..=MAX_STRIDE).contains(s))
            && dilation.iter().all(|d| (1..=MAX_DILATION).contains(d))
            && pads.iter().all(|p| *p <= MAX_PAD)
            && weight.iter().chain(&bias).all(|v| v.is_finite());
        if !ok {
            return Err(StemError::Options(format!(
                "inconsistent stem: shape {shape:?}, groups {groups}, {} weights, {} biases, stride {stride:?}, pads {pads:?}, dilation {dilation:?}",
                weight.len(),
                bias.len()
            )));
        }
        Ok(StemModel {
            name: name.to_string(),
            file: PathBuf::new(),
            info: StemInfo {
                layer: name.to_string(),
                weight_name: String::new(),
                out_channels: out,
                in_channels: ipg * groups,
                groups,
                kh,
                kw,
                stride,
                pads,
                dilation,
                geometry: "given".to_string(),
                has_bias: true,
                batch_norm: None,
                batch_norm_rule: "given".to_string(),
                followed_by: None,
                notes: Vec::new(),
            },
            weight,
            bias,
        })
    }
}
