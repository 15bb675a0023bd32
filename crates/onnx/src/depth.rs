//! Graph depth of every ONNX node: the shared longest-path routine of
//! [`convlens_core::depth`] on tensor names (empty names are omitted optional inputs, not
//! edges, as in the reference).

pub(crate) use convlens_core::depth::Depths;

use crate::proto::NodeProto;

fn named(v: &[String]) -> Vec<&str> {
    v.iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Depths of `nodes` from the tensors named in `feeds`.
pub(crate) fn graph_depths(nodes: &[NodeProto], feeds: &[&str]) -> Depths {
    let feeds: Vec<&str> = feeds.iter().copied().filter(|f| !f.is_empty()).collect();
    convlens_core::depth::graph_depths(
        nodes.iter().map(|n| (named(&n.input), named(&n.output))),
        &feeds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn node(inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The reference's BFS, verbatim (only usable on DAGs).
    fn reference(nodes: &[NodeProto], feeds: &[&str]) -> Vec<Option<usize>> {
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for t in &n.input {
                if !t.is_empty() {
                    consumers.entry(t).or_default().push(i);
                }
            }
        }
        let mut depth: Vec<Option<usize>> = vec![None; nodes.len()];
        for f in feeds {
            let mut level = 0;
            let mut cand: BTreeSet<usize> = consumers
                .get(f)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            while !cand.is_empty() {
                let mut new = BTreeSet::new();
                for &c in &cand {
                    depth[c] = Some(depth[c].map_or(level, |d| d.max(level)));
                    for o in &nodes[c].output {
                        if !o.is_empty() {
                            new.extend(consumers.get(o.as_str()).into_iter().flatten());
                        }
                    }
                }
                cand = new;
                level += 1;
            }
        }
        depth
    }

    #[test]
    fn residual_block_depths() {
        // x -> a -> b -> add(b, a); c hangs off nothing
        let nodes = vec![
            node(&["x", "w"], &["a"]),
            node(&["a"], &["b"]),
            node(&["b", "a"], &["y"]),
            node(&["k"], &["z"]),
        ];
        let d = graph_depths(&nodes, &["x"]);
        assert_eq!(d.depth, vec![Some(0), Some(1), Some(2), None]);
        assert_eq!(d.cyclic, 0);
    }

    #[test]
    fn cycle_terminates_without_depth() {
        let nodes = vec![
            node(&["x"], &["a"]),
            node(&["a", "c"], &["b"]),
            node(&["b"], &["c"]),
            node(&["c"], &["d"]),
        ];
        let d = graph_depths(&nodes, &["x"]);
        assert_eq!(d.depth, vec![Some(0), None, None, None]);
        assert_eq!(d.cyclic, 3);
    }

    #[test]
    fn matches_reference_bfs_on_random_dags() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..300 {
            let n = 1 + rnd(14) as usize;
            let n_feeds = 1 + rnd(3) as usize;
            let mut names: Vec<String> = (0..n_feeds).map(|f| format!("in{f}")).collect();
            let mut nodes = Vec::new();
            let half = n / 2;
            for i in 0..n {
                // inputs drawn from earlier tensors (a DAG in this order), sometimes empty or
                // unknown names; shared names "s<k>" are produced only by the first half and
                // consumed only by the second half (several producers of one name)
                let k = rnd(4) as usize;
                let mut ins: Vec<String> = Vec::new();
                for _ in 0..k {
                    match rnd(12) {
                        0 => ins.push(String::new()),
                        1 => ins.push("const".into()),
                        2 if i >= half => ins.push(format!("s{}", rnd(2))),
                        _ => ins.push(names[rnd(names.len() as u64) as usize].clone()),
                    }
                }
                let mut outs = vec![format!("t{i}")];
                if rnd(5) == 0 {
                    outs.push(String::new());
                }
                if rnd(3) == 0 && i < half {
                    outs.push(format!("s{}", rnd(2)));
                }
                names.push(format!("t{i}"));
                nodes.push(NodeProto {
                    input: ins,
                    output: outs,
                    ..Default::default()
                });
            }
            // node order need not be topological
            for i in (1..nodes.len()).rev() {
                let j = rnd(i as u64 + 1) as usize;
                nodes.swap(i, j);
            }
            let feeds: Vec<String> = (0..n_feeds).map(|f| format!("in{f}")).collect();
            let feeds: Vec<&str> = feeds.iter().map(String::as_str).collect();
            let d = graph_depths(&nodes, &feeds);
            assert_eq!(d.depth, reference(&nodes, &feeds), "graph {nodes:?}");
            assert_eq!(d.cyclic, 0);
        }
    }

    #[test]
    fn long_chain_with_many_paths_is_fast() {
        // 2000 diamonds in a row: the reference BFS revisits, this is linear
        let mut nodes = Vec::new();
        let mut prev = "x".to_string();
        for i in 0..2000 {
            nodes.push(node(&[&prev], &[&format!("l{i}")]));
            nodes.push(node(&[&prev], &[&format!("r{i}")]));
            let out = format!("m{i}");
            nodes.push(node(&[&format!("l{i}"), &format!("r{i}")], &[&out]));
            prev = out;
        }
        let d = graph_depths(&nodes, &["x"]);
        assert_eq!(d.depth.last().copied().flatten(), Some(2 * 2000 - 1));
    }
}
