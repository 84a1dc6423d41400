//! The cache's nodes, in name order in one slice.
//!
//! Why a slice: each pod's search walks hundreds of nodes from where the previous search stopped
//! (see `schedule`), and at 5,000 nodes that walk was memory-bound. Walking a slice reads memory
//! in order; walking a `BTreeMap` hops from leaf to leaf and reads each entry's key beside it.
//! Nodes come and go rarely, so shifting the slice (and renumbering the index) for each is
//! cheap. Look-ups by name (every pod event names its node) go through a hash index: a binary
//! search would read a dozen nodes' names, each a cache miss.

use crate::cache::NodeInfo;
use foldhash::HashMap;
use std::ops::Index;

#[derive(Default)]
pub struct NodeTable {
    /// Sorted by name, names unique.
    by_name: Vec<NodeInfo>,
    /// Each node's position in `by_name`.
    index: HashMap<String, usize>,
}

impl NodeTable {
    /// Where the node named `name` is, or where it would go.
    fn position(&self, name: &str) -> Result<usize, usize> {
        match self.index.get(name) {
            Some(at) => Ok(*at),
            None => Err(self.by_name.partition_point(|node| node.name.as_str() < name)),
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.position(name).ok().map(|at| &self.by_name[at])
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.position(name).ok().map(|at| &mut self.by_name[at])
    }

    /// The node named `name`, added empty (not Ready, no capacity) if it is not known yet.
    pub fn get_or_insert(&mut self, name: &str) -> &mut NodeInfo {
        let at = match self.position(name) {
            Ok(at) => at,
            Err(at) => {
                self.by_name.insert(at, NodeInfo::new(name));
                self.index.values_mut().filter(|position| **position >= at).for_each(|position| *position += 1);
                self.index.insert(name.to_owned(), at);
                at
            }
        };
        &mut self.by_name[at]
    }

    pub fn remove(&mut self, name: &str) -> Option<NodeInfo> {
        let at = self.index.remove(name)?;
        self.index.values_mut().filter(|position| **position > at).for_each(|position| *position -= 1);
        Some(self.by_name.remove(at))
    }

    /// Every node, in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, NodeInfo> {
        self.by_name.iter()
    }

    /// Every node once, in name order from the first not named below `start`, wrapping round.
    pub fn round_from(&self, start: &str) -> impl Iterator<Item = &NodeInfo> + Clone {
        let (before, from_start) = self.by_name.split_at(self.position(start).unwrap_or_else(|at| at));
        from_start.iter().chain(before)
    }

    /// The name of the node after the one named `name` in name order (None past the last).
    pub fn name_after(&self, name: &str) -> Option<&str> {
        let after = match self.position(name) {
            Ok(at) => at + 1,
            Err(at) => at,
        };
        self.by_name.get(after).map(|node| node.name.as_str())
    }
}

impl Index<&str> for NodeTable {
    type Output = NodeInfo;

    fn index(&self, name: &str) -> &NodeInfo {
        self.get(name).unwrap_or_else(|| panic!("no node named {name} in the cache"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> NodeTable {
        let mut table = NodeTable::default();
        for name in names {
            table.get_or_insert(name);
        }
        table
    }

    fn names<'a>(nodes: impl Iterator<Item = &'a NodeInfo>) -> Vec<&'a str> {
        nodes.map(|node| node.name.as_str()).collect()
    }

    #[test]
    fn keeps_nodes_in_name_order_whatever_order_they_come_in() {
        let mut table = table(&["c", "a", "d", "b"]);
        assert_eq!(names(table.iter()), ["a", "b", "c", "d"]);
        table.get_or_insert("b").pod_count = 7;
        assert_eq!(table.len(), 4, "a known name is not added twice");
        assert_eq!(table["b"].pod_count, 7);
        assert_eq!(table.remove("c").map(|node| node.name), Some("c".to_owned()));
        assert!(table.remove("c").is_none());
        assert_eq!(names(table.iter()), ["a", "b", "d"]);
        assert!(table.get("c").is_none() && table.get_mut("e").is_none());
        table.get_or_insert("c");
        assert_eq!(names(table.iter()), ["a", "b", "c", "d"]);
        assert!(table.iter().all(|node| table[node.name.as_str()].name == node.name), "the index follows every shift");
    }

    #[test]
    fn a_round_starts_at_the_first_name_not_below_the_start_and_wraps() {
        let table = table(&["n1", "n3", "n5"]);
        assert_eq!(names(table.round_from("n3")), ["n3", "n5", "n1"]);
        assert_eq!(names(table.round_from("n2")), ["n3", "n5", "n1"], "a start that is gone: the next name");
        assert_eq!(names(table.round_from("")), ["n1", "n3", "n5"]);
        assert_eq!(names(table.round_from("n9")), ["n1", "n3", "n5"], "past the last: from the first");
        assert_eq!(table.name_after("n3"), Some("n5"));
        assert_eq!(table.name_after("n4"), Some("n5"), "a name that is gone: the next one");
        assert_eq!(table.name_after("n5"), None);
    }
}
