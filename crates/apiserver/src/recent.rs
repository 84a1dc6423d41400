//! What this server knew about an object when it wrote it, kept for a moment for whoever reads
//! the object next, so they need not decode the JSON the write just encoded: the watch cache
//! learns what selectors read of each object this server writes (a watch with a field selector,
//! as every kubelet's, asks it of every change).
//!
//! Invariant: an entry is used only when its tag names exactly the version at hand (the stored
//! bytes themselves), so a write by anyone else (another server on the same etcd) makes an entry
//! useless, never wrong.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Names one stored encoding: its address (a store hands a write's bytes back as they were). An
/// entry tagged so keeps the bytes alive, so the address cannot come to name other bytes.
pub fn tag(bytes: &Bytes) -> i64 {
    bytes.as_ptr() as i64
}

/// Enough for the writes of a burst's last half second or so.
const CAPACITY: usize = 2048;

/// The latest entry per key, tagged with the version it describes; the oldest are forgotten.
pub struct Recent<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    by_key: HashMap<Arc<str>, (i64, T)>,
    /// Insertion order, oldest first, for eviction; a key taken or written again since leaves a
    /// stale entry here, recognised by its tag.
    order: VecDeque<(Arc<str>, i64)>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent { state: Mutex::new(State { by_key: HashMap::new(), order: VecDeque::new() }) }
    }
}

impl<T> Recent<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `entry` for `key` as it stands at `tag`.
    pub fn remember(&self, key: &str, tag: i64, entry: T) {
        let mut forgotten = Vec::new();
        let mut state = self.lock();
        let key: Arc<str> = key.into();
        forgotten.extend(state.by_key.insert(key.clone(), (tag, entry)));
        state.order.push_back((key, tag));
        while state.by_key.len() > CAPACITY || state.order.len() > 2 * CAPACITY {
            let Some((oldest, tag)) = state.order.pop_front() else { break };
            if state.by_key.get(&oldest).is_some_and(|(t, _)| *t == tag) {
                forgotten.extend(state.by_key.remove(&oldest));
            }
        }
        // Dropping an object's value is not free: not while others wait for the lock.
        drop(state);
        drop(forgotten);
    }

    /// The entry of `key`, if it was remembered at `tag`; it is forgotten.
    pub fn take(&self, key: &str, tag: i64) -> Option<T> {
        let mut state = self.lock();
        if state.by_key.get(key)?.0 != tag {
            return None;
        }
        state.by_key.remove(key).map(|(_, entry)| entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_taken_once_and_only_at_its_tag() {
        let recent = Recent::default();
        recent.remember("/pods/default/p", 7, "seven");
        assert_eq!(recent.take("/pods/default/p", 8), None, "another version is current");
        assert_eq!(recent.take("/pods/default/p", 7), Some("seven"));
        assert_eq!(recent.take("/pods/default/p", 7), None, "taken");
    }

    #[test]
    fn the_oldest_are_forgotten_first() {
        let recent = Recent::default();
        for i in 0..CAPACITY as i64 + 10 {
            recent.remember(&format!("/k/{i}"), i, i);
        }
        assert_eq!(recent.take("/k/0", 0), None);
        assert_eq!(recent.take("/k/9", 9), None);
        assert_eq!(recent.take("/k/10", 10), Some(10));
        // Rewriting one key many times keeps the order list bounded.
        for tag in 0..10 * CAPACITY as i64 {
            recent.remember("/k/hot", tag, tag);
        }
        let state = recent.lock();
        assert!(state.order.len() <= 2 * CAPACITY && state.by_key.len() <= CAPACITY);
    }
}
