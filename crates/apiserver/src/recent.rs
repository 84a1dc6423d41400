//! The decoded values of the objects this server created last, so that the first update of one
//! starts from its value instead of decoding the cached JSON again: the scheduler binds a new pod
//! within milliseconds, and decoding each pod for its binding was a twentieth of a burst's work.
//!
//! Only created objects' values are kept, a trade measured in a burst of 60,000 pods at 5,000 nodes
//! with every write's value kept: each binding found its pod's value (99% within 1,024 writes of
//! the create), but 82 of 55,000 status writes found the binding's, as the simulated kubelets fell
//! thousands of writes behind, and nothing took a running pod's status. A value nobody takes is
//! freed when it leaves, a tree of a hundred allocations long out of the CPU's caches by then:
//! those frees were 4–5% of the server's CPU time. At lighter load a kubelet's first status write
//! would find the binding's value, and now decodes the pod instead; that load leaves CPU to spare.
//!
//! Invariant: a value is handed out only for the exact revision it was stored at, and only once
//! (the update that takes it owns it); anything else decodes from the watch cache as before.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tugboat_store::Revision;

/// Values kept: a burst's creates are bound within a few hundred writes, unless the scheduler is
/// thousands of pods behind (then the values leave untaken, and the bindings decode).
pub const CAPACITY: usize = 1024;

pub struct RecentlyCreated {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    values: HashMap<Arc<str>, (Revision, Value)>,
    /// Every put, oldest first; an entry whose value was since taken or replaced is skipped when
    /// it reaches the front. Its length bounds the map's.
    order: VecDeque<(Arc<str>, Revision)>,
}

impl RecentlyCreated {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves at worst a value that is never taken.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `value`, the object stored under `key` at `revision` (resourceVersion included).
    pub fn put(&self, key: &str, revision: Revision, value: Value) {
        let key: Arc<str> = key.into();
        let mut dropped = Vec::new();
        let mut state = self.lock();
        dropped.extend(state.values.insert(key.clone(), (revision, value)));
        state.order.push_back((key, revision));
        while state.order.len() > self.capacity {
            let Some((oldest, revision)) = state.order.pop_front() else { break };
            if state.values.get(&oldest).is_some_and(|(kept, _)| *kept == revision) {
                dropped.extend(state.values.remove(&oldest));
            }
        }
        // Freeing a value's tree takes longer than the rest of a put: not while others wait.
        drop(state);
        drop(dropped);
    }

    /// The value of `key` at `revision`, if kept; it is no longer kept afterwards.
    pub fn take(&self, key: &str, revision: Revision) -> Option<Value> {
        let mut state = self.lock();
        // Kept at a revision the caller's read has not caught up with yet: it stays.
        let kept = state.values.get(key).map(|(kept, _)| *kept).filter(|kept| *kept <= revision)?;
        // At an older revision it was written since by someone else, and can never be asked for
        // again: it goes too, freed once the lock is released (as in `put`).
        let (_, value) = state.values.remove(key)?;
        drop(state);
        (kept == revision).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_is_taken_once_and_only_at_its_revision() {
        let recent = RecentlyCreated::new(8);
        recent.put("/pods/a", 5, json!({"n": 5}));
        assert_eq!(recent.take("/pods/a", 4), None, "another revision");
        recent.put("/pods/a", 6, json!({"n": 6}));
        assert_eq!(recent.take("/pods/a", 6), Some(json!({"n": 6})));
        assert_eq!(recent.take("/pods/a", 6), None, "taken already");
        assert_eq!(recent.take("/pods/b", 1), None);
    }

    #[test]
    fn a_newer_write_replaces_the_value_and_the_oldest_go_first() {
        let recent = RecentlyCreated::new(2);
        recent.put("/a", 1, json!(1));
        recent.put("/a", 2, json!(2));
        assert_eq!(recent.take("/a", 1), None, "a read behind the write");
        assert_eq!(recent.take("/a", 3), None, "written since by someone else");
        assert_eq!(recent.take("/a", 2), None, "forgotten once a later revision was asked for");
        recent.put("/a", 3, json!(3));
        recent.put("/b", 4, json!(4));
        recent.put("/c", 5, json!(5));
        assert_eq!(recent.take("/a", 3), None, "evicted: two puts came after it");
        assert_eq!((recent.take("/b", 4), recent.take("/c", 5)), (Some(json!(4)), Some(json!(5))));
        assert!(recent.lock().order.len() <= 2 && recent.lock().values.is_empty());
    }
}
