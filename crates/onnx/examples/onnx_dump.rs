//! Prints the convolution nodes of an ONNX file, one per line (tab-separated): node index,
//! name, op, weight name, weight shape, graph depth, max |w|, groups, strides, layout, notes.

use std::path::Path;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: onnx_dump MODEL.onnx");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let dir = Path::new(&path).parent().map(Path::to_path_buf);
    let ck = match convlens_onnx::read(convlens_core::Blob::from_vec(bytes), dir.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    println!("# tensors {} notes {:?}", ck.tensors.len(), ck.notes);
    println!("# metadata {:?}", ck.metadata);
    let Some(g) = &ck.graph else { return };
    println!(
        "# nodes {} inputs {:?} first_ops {:?}",
        g.n_nodes, g.inputs, g.first_ops
    );
    for c in &g.convs {
        let (shape, maxabs) = match &c.weight {
            Ok(w) => (
                format!("{:?}", w.shape()),
                format!(
                    "{:.9e}",
                    w.to_f32().iter().fold(0f32, |m, x| m.max(x.abs()))
                ),
            ),
            Err(e) => (format!("ERR {e}"), String::from("-")),
        };
        let depth = c.graph_depth.map_or("-".to_string(), |d| d.to_string());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:?}\t{:?}\t{:?}",
            c.node_index,
            c.name,
            c.op.name(),
            c.weight_name,
            shape,
            depth,
            maxabs,
            c.groups,
            c.strides,
            c.layout,
            c.notes
        );
    }
}
