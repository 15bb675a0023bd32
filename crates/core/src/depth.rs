//! Graph depth of every node: the longest path (in node hops) from a graph data input.
//!
//! The reference (`ModelTopology.get_layers_by_depth` of onnxzoo2filterdb, as re-implemented by
//! `reference.py`) runs a level-by-level BFS from each feed and keeps, per node, the largest
//! level at which it is reached. On a DAG that is the longest path from the feeds' consumers,
//! which is computed here in linear time on the bipartite node/tensor graph (so that many
//! producers or consumers of one tensor cost no quadratic edge list). Nodes on or after a
//! cycle reachable from a feed would make the reference loop forever; they get no depth.
//!
//! Tensors are identified by any hashable key (ONNX: tensor names, TFLite: tensor indices).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Per-node depth (`None` = unreachable from the feeds or behind a cycle) and the number of
/// reachable nodes left without a depth because of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depths {
    /// Depth of each node, in node order.
    pub depth: Vec<Option<usize>>,
    /// Nodes reachable from a feed that have no depth because they lie on or after a cycle.
    pub cyclic: usize,
}

/// Depths of `nodes` (each given as its input and output tensor keys) from the tensors in
/// `feeds`.
pub fn graph_depths<K, I, O>(nodes: impl IntoIterator<Item = (I, O)>, feeds: &[K]) -> Depths
where
    K: Eq + Hash + Clone,
    I: IntoIterator<Item = K>,
    O: IntoIterator<Item = K>,
{
    let mut ids: HashMap<K, usize> = HashMap::new();
    fn id_of<K: Eq + Hash>(key: K, ids: &mut HashMap<K, usize>) -> usize {
        let n = ids.len();
        *ids.entry(key).or_insert(n)
    }
    let mut node_in: Vec<Vec<usize>> = Vec::new();
    let mut node_out: Vec<Vec<usize>> = Vec::new();
    for (ins, outs) in nodes {
        let mut ins: Vec<usize> = ins.into_iter().map(|k| id_of(k, &mut ids)).collect();
        ins.sort_unstable();
        ins.dedup();
        let mut outs: Vec<usize> = outs.into_iter().map(|k| id_of(k, &mut ids)).collect();
        outs.sort_unstable();
        outs.dedup();
        node_in.push(ins);
        node_out.push(outs);
    }
    let n_nodes = node_in.len();
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
    let mut n_reach = vec![false; n_nodes];
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
    // consumers get level 0, and it also waits for reachable producers of the same tensor.
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
    let mut n_level: Vec<i64> = vec![i64::MIN; n_nodes];
    let mut n_done = vec![false; n_nodes];
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

    #[test]
    fn integer_keyed_graph() {
        // 0 -> op0 -> 1 -> op1 -> 2 ; op2 reads 1 and 2 ; op3 reads a constant 9
        let nodes: Vec<(Vec<i32>, Vec<i32>)> = vec![
            (vec![0, 5], vec![1]),
            (vec![1], vec![2]),
            (vec![1, 2], vec![3]),
            (vec![9], vec![5]),
        ];
        let d = graph_depths(nodes, &[0]);
        assert_eq!(d.depth, vec![Some(0), Some(1), Some(2), None]);
        assert_eq!(d.cyclic, 0);
    }
}
