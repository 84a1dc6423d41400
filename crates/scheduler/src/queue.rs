//! The active queue: pods ready for a scheduling attempt, higher `spec.priority` first and, among
//! equal priorities, first in first out (kube-scheduler's PrioritySort).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};

#[derive(PartialEq, Eq)]
struct Entry {
    priority: i32,
    sequence: Reverse<u64>,
    uid: String,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, self.sequence).cmp(&(other.priority, other.sequence))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
pub struct ActiveQueue {
    heap: BinaryHeap<Entry>,
    queued: HashSet<String>,
    next_sequence: u64,
}

impl ActiveQueue {
    /// Queues a pod unless it is queued already.
    pub fn push(&mut self, uid: &str, priority: i32) {
        if self.queued.insert(uid.to_owned()) {
            self.next_sequence += 1;
            self.heap.push(Entry { priority, sequence: Reverse(self.next_sequence), uid: uid.to_owned() });
        }
    }

    pub fn pop(&mut self) -> Option<String> {
        let entry = self.heap.pop()?;
        self.queued.remove(&entry.uid);
        Some(entry.uid)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.queued.contains(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_first_in_first_out() {
        let mut queue = ActiveQueue::default();
        queue.push("low-1", 0);
        queue.push("high", 1000);
        queue.push("low-2", 0);
        queue.push("negative", -5);
        queue.push("low-1", 0);
        queue.push("high-2", 1000);
        let order: Vec<String> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, ["high", "high-2", "low-1", "low-2", "negative"]);
    }
}
