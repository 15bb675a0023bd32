//! Graph depth of every node: the longest path (in node hops) from a graph data input.
//!
//! The reference (`ModelTopology.get_layers_by_depth` of onnxzoo2filterdb, as re-implemented by
//! `reference.py`) runs a level-by-level BFS from each feed and keeps, per node, the largest
//! level at which it is reached. On a DAG that is the longest path from the feeds' consumers,
//! which is computed here in linear time on the bipartite node/tensor graph (so that many
//! producers or consumers of one tensor name cost no quadratic edge list). Nodes on or after a
//! cycle reachable from a feed would make the reference loop forever; they get no depth.

use std::collections::{HashMap, VecDeque};

use crate::proto::NodeProto;

/// Per-node depth (`None` = unreachable from the feeds or behind a cycle) and the number of
/// reachable nodes left without a depth because of a cycle.
pub(crate) struct Depths {
    pub depth: Vec<Option<usize>>,
    pub cyclic: usize,
}

/// Depths of `nodes` from the tensors named in `feeds`.
pub(crate) fn graph_depths(nodes: &[NodeProto], feeds: &[&str]) -> Depths {
    // tensor ids; empty names are not edges (as in the reference)
    let mut ids: HashMap<&str, usize> = HashMap::new();
    fn id_of<'a>(name: &'a str, ids: &mut HashMap<&'a str, usize>) -> usize {
        let n = ids.len();
        *ids.entry(name).or_insert(n)
    }
    let mut node_in: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
    let mut node_out: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let mut ins: Vec<usize> = n
            .input
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| id_of(s.as_str(), &mut ids))
            .collect();
        ins.sort_unstable();
        ins.dedup();
        let mut outs: Vec<usize> = n
            .output
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| id_of(s.as_str(), &mut ids))
            .collect();
        outs.sort_unstable();
        outs.dedup();
        node_in.push(ins);
        node_out.push(outs);
    }
    let n_tensors = ids.len();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n_tensors];
    let mut producers: Vec<Vec<usize>> = vec![Vec::new(); n_tensors];
    for (i, (ins, outs)) in node_in.iter().zip(&node_out).enumerate() {
        for &t in ins {
            if let Some(c) = consumers.get_mut(t) {
                c.push(i);
            }
        }
        for &t in outs {
            if let Some(p) = producers.get_mut(t) {
                p.push(i);
            }
        }
    }

    // reachability from the feeds
    let mut t_reach = vec![false; n_tensors];
    let mut n_reach = vec![false; nodes.len()];
    let mut is_feed = vec![false; n_tensors];
    let mut stack: Vec<usize> = Vec::new();
    for f in feeds {
        if let Some(&t) = ids.get(f) {
            if let (Some(r), Some(fd)) = (t_reach.get_mut(t), is_feed.get_mut(t)) {
                *fd = true;
                if !*r {
                    *r = true;
                    stack.push(t);
                }
            }
        }
    }
    while let Some(t) = stack.pop() {
        for &c in consumers.get(t).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(r) = n_reach.get_mut(c) {
                if !*r {
                    *r = true;
                    for &o in node_out.get(c).map(Vec::as_slice).unwrap_or(&[]) {
                        if let Some(tr) = t_reach.get_mut(o) {
                            if !*tr {
                                *tr = true;
                                stack.push(o);
                            }
                        }
                    }
                }
            }
        }
    }

    // Kahn's algorithm on the reachable part; a feed tensor starts at level -1 so that its
    // consumers get level 0, and it also waits for reachable producers of the same name.
    let mut t_indeg: Vec<usize> = producers
        .iter()
        .map(|ps| {
            ps.iter()
                .filter(|&&p| n_reach.get(p) == Some(&true))
                .count()
        })
        .collect();
    let mut n_indeg: Vec<usize> = node_in
        .iter()
        .map(|ins| {
            ins.iter()
                .filter(|&&t| t_reach.get(t) == Some(&true))
                .count()
        })
        .collect();
    let mut t_level: Vec<i64> = is_feed
        .iter()
        .map(|&f| if f { -1 } else { i64::MIN })
        .collect();
    let mut n_level: Vec<i64> = vec![i64::MIN; nodes.len()];
    let mut n_done = vec![false; nodes.len()];
    let mut queue: VecDeque<Vertex> = VecDeque::new();
    for (t, (&r, &d)) in t_reach.iter().zip(&t_indeg).enumerate() {
        if r && d == 0 {
            queue.push_back(Vertex::Tensor(t));
        }
    }
    while let Some(v) = queue.pop_front() {
        match v {
            Vertex::Tensor(t) => {
                let level = t_level.get(t).copied().unwrap_or(i64::MIN);
                for &c in consumers.get(t).map(Vec::as_slice).unwrap_or(&[]) {
                    if let (Some(l), Some(d)) = (n_level.get_mut(c), n_indeg.get_mut(c)) {
                        *l = (*l).max(level.saturating_add(1));
                        *d = d.saturating_sub(1);
                        if *d == 0 {
                            queue.push_back(Vertex::Node(c));
                        }
                    }
                }
            }
            Vertex::Node(c) => {
                if let Some(done) = n_done.get_mut(c) {
                    *done = true;
                }
                let level = n_level.get(c).copied().unwrap_or(i64::MIN);
                for &o in node_out.get(c).map(Vec::as_slice).unwrap_or(&[]) {
                    if let (Some(l), Some(d)) = (t_level.get_mut(o), t_indeg.get_mut(o)) {
                        *l = (*l).max(level);
                        *d = d.saturating_sub(1);
                        if *d == 0 {
                            queue.push_back(Vertex::Tensor(o));
                        }
                    }
                }
            }
        }
    }
    let mut cyclic = 0;
    let depth = n_reach
        .iter()
        .zip(n_done.iter().zip(&n_level))
        .map(|(&reach, (&done, &level))| {
            if !reach {
                None
            } else if !done {
                cyclic += 1;
                None
            } else {
                usize::try_from(level).ok()
            }
        })
        .collect();
    Depths { depth, cyclic }
}

enum Vertex {
    Tensor(usize),
    Node(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

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
