//! Controller expectations, as in Kubernetes' `UIDTrackingControllerExpectations`: after issuing
//! creates or deletes for an owner, the controller waits until its informer has seen them before
//! acting again, so a lagging cache never makes it create or delete twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Expectations older than this are considered satisfied (a watch event may have been lost).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expected {
    adds: i64,
    /// Keys (`namespace/name`) of pods whose deletion we wait to observe; tracking them by key means
    /// one pod's deletion is counted once even though it shows up as a deletionTimestamp update
    /// and then as a delete event.
    deletes: HashSet<String>,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `adds` pod creations are about to be issued for `owner`.
    pub fn expect_creations(&self, owner: &str, adds: usize) {
        self.expect_creations_at(owner, adds, Instant::now());
    }

    pub fn expect_creations_at(&self, owner: &str, adds: usize, now: Instant) {
        let adds = i64::try_from(adds).unwrap_or(i64::MAX);
        self.lock().insert(owner.to_owned(), Expected { adds, deletes: HashSet::new(), since: now });
    }

    /// Records that the pods `pod_keys` are about to be deleted for `owner`.
    pub fn expect_deletions(&self, owner: &str, pod_keys: impl IntoIterator<Item = String>) {
        self.expect_deletions_at(owner, pod_keys, Instant::now());
    }

    pub fn expect_deletions_at(&self, owner: &str, pod_keys: impl IntoIterator<Item = String>, now: Instant) {
        self.lock().insert(owner.to_owned(), Expected { adds: 0, deletes: pod_keys.into_iter().collect(), since: now });
    }

    /// The informer saw a pod of `owner` appear (or a create failed and will never appear).
    pub fn creation_observed(&self, owner: &str) {
        if let Some(expected) = self.lock().get_mut(owner) {
            expected.adds -= 1;
        }
    }

    /// Lowers the expected creations by `count` (creates that were skipped).
    pub fn lower_creations(&self, owner: &str, count: usize) {
        if let Some(expected) = self.lock().get_mut(owner) {
            expected.adds -= i64::try_from(count).unwrap_or(i64::MAX);
        }
    }

    /// The informer saw `pod_key` of `owner` go (or its delete failed).
    pub fn deletion_observed(&self, owner: &str, pod_key: &str) {
        if let Some(expected) = self.lock().get_mut(owner) {
            expected.deletes.remove(pod_key);
        }
    }

    /// Whether the owner may be acted upon: nothing recorded, all observed, or expired.
    pub fn satisfied(&self, owner: &str) -> bool {
        self.satisfied_at(owner, Instant::now())
    }

    pub fn satisfied_at(&self, owner: &str, now: Instant) -> bool {
        match self.lock().get(owner) {
            None => true,
            Some(expected) => (expected.adds <= 0 && expected.deletes.is_empty()) || now.saturating_duration_since(expected.since) > EXPECTATIONS_TIMEOUT,
        }
    }

    /// Forgets the owner (it was deleted).
    pub fn delete(&self, owner: &str) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_all_be_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        // Other owners are independent.
        e.expect_creations("ns/other", 1);
        assert!(e.satisfied("ns/rs"));
        assert!(!e.satisfied("ns/other"));
    }

    #[test]
    fn skipped_creations_lower_the_count() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 7);
        e.creation_observed("ns/rs");
        e.lower_creations("ns/rs", 6);
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn deletions_are_tracked_per_pod_and_counted_once() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", ["ns/a".to_owned(), "ns/b".to_owned()]);
        e.deletion_observed("ns/rs", "ns/a");
        // The same pod seen again (deletionTimestamp update, then delete event) counts once.
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn expectations_expire() {
        let e = Expectations::default();
        let start = Instant::now();
        e.expect_creations_at("ns/rs", 3, start);
        assert!(!e.satisfied_at("ns/rs", start + EXPECTATIONS_TIMEOUT));
        assert!(e.satisfied_at("ns/rs", start + EXPECTATIONS_TIMEOUT + Duration::from_secs(1)));
    }

    #[test]
    fn deleted_owner_is_forgotten() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 1);
        e.delete("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
