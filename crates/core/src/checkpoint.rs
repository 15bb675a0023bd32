use crate::{KernelLayout, RawTensor};

/// The container format a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// ONNX protobuf model.
    Onnx,
    /// PyTorch zip archive (torch >= 1.6) holding a pickled state dict, checkpoint or module.
    TorchZip,
    /// PyTorch legacy stream format (torch < 1.6).
    TorchLegacy,
    /// TorchScript archive (`torch.jit.save`).
    TorchScript,
    /// safetensors file.
    Safetensors,
    /// NumPy `.npy` array.
    Npy,
    /// NumPy `.npz` archive.
    Npz,
    /// TensorFlow Lite flatbuffer (`.tflite`).
    TfLite,
    /// Keras 2 HDF5 file (`.h5`).
    KerasH5,
    /// Keras 3 archive (`.keras`).
    Keras,
    /// Arrays handed over in memory (e.g. a Python state dict), not read from a file.
    InMemory,
}

impl Format {
    /// Stable lowercase name used in outputs (`onnx`, `torch-zip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::TorchZip => "torch-zip",
            Format::TorchLegacy => "torch-legacy",
            Format::TorchScript => "torchscript",
            Format::Safetensors => "safetensors",
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::TfLite => "tflite",
            Format::KerasH5 => "keras-h5",
            Format::Keras => "keras",
            Format::InMemory => "in-memory",
        }
    }
}

/// A tensor with the name it has in the file (state-dict key, initializer name, ...).
#[derive(Debug, Clone)]
pub struct NamedTensor {
    /// Name in the file.
    pub name: String,
    /// The tensor.
    pub tensor: RawTensor,
}

/// Kind of convolution node in a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvOp {
    /// Ordinary convolution (`Conv`).
    Conv,
    /// Transposed convolution (`ConvTranspose`); weight layout IOHW.
    ConvTranspose,
    /// Integer convolution with a quantized weight (`ConvInteger`).
    ConvInteger,
    /// Quantized linear convolution (`QLinearConv`).
    QLinearConv,
    /// TFLite `CONV_2D` (weight layout OHWI).
    Conv2d,
    /// TFLite `DEPTHWISE_CONV_2D` (weight layout 1HWO, one input channel per filter).
    DepthwiseConv2d,
}

impl ConvOp {
    /// The operator name as written in the file (ONNX `op_type`, TFLite builtin operator).
    pub fn name(self) -> &'static str {
        match self {
            ConvOp::Conv => "Conv",
            ConvOp::ConvTranspose => "ConvTranspose",
            ConvOp::ConvInteger => "ConvInteger",
            ConvOp::QLinearConv => "QLinearConv",
            ConvOp::Conv2d => "CONV_2D",
            ConvOp::DepthwiseConv2d => "DEPTHWISE_CONV_2D",
        }
    }
}

/// A convolution node of a graph (ONNX, TFLite) with its attributes and resolved weight.
#[derive(Debug, Clone)]
pub struct ConvNode {
    /// Node name (or `node<index>` when the file has none).
    pub name: String,
    /// Operator.
    pub op: ConvOp,
    /// Position of the node in the graph's node list.
    pub node_index: usize,
    /// Name of the weight input.
    pub weight_name: String,
    /// The weight as real numbers (quantized weights already dequantized), or why it could
    /// not be resolved (not a constant, unsupported quantization, ...).
    pub weight: Result<RawTensor, String>,
    /// Axis order of `weight`.
    pub layout: KernelLayout,
    /// The bias, when it is a constant.
    pub bias: Option<RawTensor>,
    /// `group` attribute (1 when absent).
    pub groups: usize,
    /// `strides` attribute (empty when absent).
    pub strides: Vec<i64>,
    /// `dilations` attribute (empty when absent).
    pub dilations: Vec<i64>,
    /// `pads` attribute (empty when absent).
    pub pads: Vec<i64>,
    /// `auto_pad` attribute, when present.
    pub auto_pad: Option<String>,
    /// Longest path from a graph input, `None` when unreachable from any input.
    pub graph_depth: Option<usize>,
    /// Free-form remarks (e.g. "dequantized (w - zero_point) * scale").
    pub notes: Vec<String>,
}

/// One node of a graph: operator, name, wiring and its float attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphNode {
    /// Node name (may be empty).
    pub name: String,
    /// Operator type (`Conv`, `Relu`, `BatchNormalization`, ...).
    pub op_type: String,
    /// Input tensor names (empty names are omitted optional inputs).
    pub inputs: Vec<String>,
    /// Output tensor names.
    pub outputs: Vec<String>,
    /// Attributes holding a single float (e.g. `epsilon`).
    pub float_attrs: Vec<(String, f32)>,
}

impl GraphNode {
    /// The float attribute called `name`, if any.
    pub fn float_attr(&self, name: &str) -> Option<f32> {
        self.float_attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// `op_type ("name")`, or `op_type (node i)` for an unnamed node: for messages.
    pub fn label(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("{} (node {index})", self.op_type)
        } else {
            format!("{} ({:?})", self.op_type, self.name)
        }
    }
}

/// The part of a model graph convlens needs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Convolution nodes in node order.
    pub convs: Vec<ConvNode>,
    /// Total number of nodes in the graph.
    pub n_nodes: usize,
    /// Names of the graph's data inputs (excluding initializers).
    pub inputs: Vec<String>,
    /// Operator of the first node consuming a graph input, when there is one.
    pub first_ops: Vec<String>,
    /// Every node of the graph, in node order (indices match `ConvNode::node_index`).
    pub nodes: Vec<GraphNode>,
}

/// A parsed model file: named tensors in order of appearance and, when the file has one, its
/// graph of convolution nodes.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Container format.
    pub format: Format,
    /// Tensors in order of appearance (the order that defines depth when there is no graph).
    pub tensors: Vec<NamedTensor>,
    /// Convolution graph, for formats that have one.
    pub graph: Option<Graph>,
    /// Where the tensor order comes from (e.g. "pickle dict order", "metadata key_order").
    pub order_source: String,
    /// Remarks a user should see (unusual structure, ignored objects, ...).
    pub notes: Vec<String>,
    /// Free-form key/value metadata of the file (producer, opset, safetensors metadata...).
    pub metadata: Vec<(String, String)>,
}

impl Checkpoint {
    /// A checkpoint without a graph.
    pub fn from_tensors(format: Format, tensors: Vec<NamedTensor>, order_source: &str) -> Self {
        Checkpoint {
            format,
            tensors,
            graph: None,
            order_source: order_source.to_string(),
            notes: Vec::new(),
            metadata: Vec::new(),
        }
    }

    /// The tensor called `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&RawTensor> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| &t.tensor)
    }
}
