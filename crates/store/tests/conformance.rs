//! One conformance suite, run unchanged against every backend: each case is an async function
//! taking a fresh [`Fixture`], and `conformance!` turns it into one `#[tokio::test]` per backend.
//!
//! The etcd cases start a real etcd (`tugboat_testkit::Etcd`); if it is not installed they fail
//! with a message saying so, they are never skipped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tugboat_store::{
    EtcdStore, Event, EventKind, KeyValue, ListOptions, Revision, SqliteOptions, SqliteStore, Store, StoreError, WatchStream,
};

/// A fresh, empty store of one backend, which a case can also reopen.
struct Fixture {
    /// `None` only inside `reopen`.
    store: Option<Arc<dyn Store>>,
    backend: Backend,
}

enum Backend {
    Sqlite { dir: tempfile::TempDir },
    Etcd { etcd: tugboat_testkit::Etcd },
}

impl Backend {
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite { dir } => Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap()),
            Backend::Etcd { etcd } => Arc::new(EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await.unwrap()),
        }
    }
}

impl Fixture {
    async fn sqlite() -> Self {
        Self::new(Backend::Sqlite { dir: tempfile::tempdir().unwrap() }).await
    }

    async fn etcd() -> Self {
        // Starting etcd waits for it synchronously.
        let etcd = tokio::task::spawn_blocking(tugboat_testkit::Etcd::start).await.unwrap();
        Self::new(Backend::Etcd { etcd }).await
    }

    async fn new(backend: Backend) -> Self {
        Self { store: Some(backend.open().await), backend }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().unwrap()
    }

    /// Closes the store (the case must hold no other reference) and opens it again on the same
    /// data: the same SQLite file, or a new connection to the same etcd.
    async fn reopen(&mut self) {
        let store = self.store.take().unwrap();
        assert_eq!(Arc::strong_count(&store), 1, "the case still holds the store");
        drop(store);
        self.store = Some(self.backend.open().await);
    }

    /// The revision of a store nothing was written to through the `Store` API: 1, except that
    /// connecting to a new etcd wrote `FORMAT_VERSION_KEY`.
    fn initial_revision(&self) -> Revision {
        match self.backend {
            Backend::Sqlite { .. } => 1,
            Backend::Etcd { .. } => 2,
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::sqlite().await).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::etcd().await).await
                }
            )*
        }
    };
}

conformance!(
    revision_starts_fresh_and_only_grows,
    create_only_if_absent,
    update_is_conditional,
    missing_keys_are_not_found,
    delete_conditionally_and_unconditionally,
    get_at_current_and_past_revisions,
    future_revisions_are_refused,
    prefixes_are_isolated,
    pagination_at_a_fixed_revision_while_writes_continue,
    watch_replays_history_then_follows_live,
    watch_on_root_sees_everything,
    watch_from_the_current_revision_sees_only_new_changes,
    watch_replays_long_history_to_a_slow_reader,
    concurrent_creates_get_distinct_ordered_revisions,
    compaction_discards_history_but_keeps_current_data,
    restart_keeps_data_and_revisions,
    watch_ends_when_the_store_is_dropped,
    large_values_in_lists_and_watches,
);

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue { key: key.into(), value: bytes(value), create_revision, mod_revision }
}

/// The next `count` events, failing on an error item, an early end or 20 s of silence.
async fn next_events(stream: &mut WatchStream, count: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(error))) => panic!("watch failed after {} events: {error}", events.len()),
            Ok(None) => panic!("watch ended after {} of {count} events", events.len()),
            Err(_) => panic!("no event within 20 s after {} of {count} events", events.len()),
        }
    }
    events
}

/// Asserts that nothing arrives for a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

fn assert_compacted<T: std::fmt::Debug>(result: Result<T, StoreError>, requested: Revision) {
    match result {
        Err(StoreError::Compacted { requested: r, .. }) => assert_eq!(r, requested),
        other => panic!("expected Compacted for revision {requested}, got {other:?}"),
    }
}

/// A watch from a compacted revision fails, either at once or (etcd finds out from the server)
/// as its first item.
async fn assert_watch_compacted(store: &dyn Store, prefix: &str, after: Revision) {
    match store.watch(prefix, after).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(mut stream) => match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!("expected a Compacted error item, got {other:?}"),
        },
    }
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn revision_starts_fresh_and_only_grows(f: Fixture) {
    let store = f.store();
    let start = f.initial_revision();
    assert_eq!(store.current_revision().await.unwrap(), start);
    assert_eq!(store.create("/r/a", bytes("1")).await.unwrap(), start + 1);
    assert_eq!(store.current_revision().await.unwrap(), start + 1);
    // Refused writes cost no revision.
    assert!(store.create("/r/a", bytes("2")).await.is_err());
    assert!(store.update("/r/a", bytes("2"), start).await.is_err());
    assert!(store.delete("/r/missing", None).await.is_err());
    assert_eq!(store.current_revision().await.unwrap(), start + 1);
    assert_eq!(store.update("/r/a", bytes("2"), start + 1).await.unwrap(), start + 2);
    assert_eq!(store.create("/r/b", bytes("1")).await.unwrap(), start + 3);
    assert_eq!(store.delete("/r/a", None).await.unwrap().mod_revision, start + 4);
    assert_eq!(store.current_revision().await.unwrap(), start + 4);
    assert_eq!(store.list("/", ListOptions::default()).await.unwrap().revision, start + 4);
}

async fn create_only_if_absent(f: Fixture) {
    let store = f.store();
    let revision = store.create("/c/x", bytes("one")).await.unwrap();
    match store.create("/c/x", bytes("two")).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/c/x"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get("/c/x", None).await.unwrap(), Some(kv("/c/x", "one", revision, revision)));
}

async fn update_is_conditional(f: Fixture) {
    let store = f.store();
    let created = store.create("/u/x", bytes("v1")).await.unwrap();
    let updated = store.update("/u/x", bytes("v2"), created).await.unwrap();
    assert!(updated > created);
    assert_eq!(store.get("/u/x", None).await.unwrap(), Some(kv("/u/x", "v2", created, updated)));
    // The stale revision loses, and the conflict says what the value is now.
    match store.update("/u/x", bytes("v3"), created).await {
        Err(StoreError::Conflict { key, current }) => {
            assert_eq!(key, "/u/x");
            assert_eq!(current.as_deref(), Some(&kv("/u/x", "v2", created, updated)));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get("/u/x", None).await.unwrap().unwrap().value, bytes("v2"));
}

async fn missing_keys_are_not_found(f: Fixture) {
    let store = f.store();
    assert!(matches!(store.update("/m/x", bytes("v"), 1).await, Err(StoreError::NotFound { key }) if key == "/m/x"));
    assert!(matches!(store.delete("/m/x", None).await, Err(StoreError::NotFound { key }) if key == "/m/x"));
    assert!(matches!(store.delete("/m/x", Some(1)).await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.get("/m/x", None).await.unwrap(), None);
    // A deleted key is missing too.
    let revision = store.create("/m/y", bytes("v")).await.unwrap();
    store.delete("/m/y", Some(revision)).await.unwrap();
    assert!(matches!(store.update("/m/y", bytes("w"), revision).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.delete("/m/y", None).await, Err(StoreError::NotFound { .. })));
}

async fn delete_conditionally_and_unconditionally(f: Fixture) {
    let store = f.store();
    let created = store.create("/d/x", bytes("v1")).await.unwrap();
    let updated = store.update("/d/x", bytes("v2"), created).await.unwrap();
    match store.delete("/d/x", Some(created)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current.unwrap().mod_revision, updated),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let deleted = store.delete("/d/x", Some(updated)).await.unwrap();
    assert_eq!(deleted.key, "/d/x");
    assert_eq!(deleted.value, bytes("v2"), "the last value");
    assert_eq!(deleted.create_revision, created);
    assert!(deleted.mod_revision > updated, "the revision of the deletion");
    assert_eq!(store.current_revision().await.unwrap(), deleted.mod_revision);
    assert_eq!(store.get("/d/x", None).await.unwrap(), None);

    let recreated = store.create("/d/x", bytes("v3")).await.unwrap();
    assert_eq!(store.get("/d/x", None).await.unwrap(), Some(kv("/d/x", "v3", recreated, recreated)));
    let deleted = store.delete("/d/x", None).await.unwrap();
    assert_eq!((deleted.value, deleted.create_revision), (bytes("v3"), recreated));
    assert_eq!(store.get("/d/x", None).await.unwrap(), None);
}

async fn get_at_current_and_past_revisions(f: Fixture) {
    let store = f.store();
    let before = store.current_revision().await.unwrap();
    let r1 = store.create("/g/x", bytes("v1")).await.unwrap();
    let r2 = store.update("/g/x", bytes("v2"), r1).await.unwrap();
    let r3 = store.delete("/g/x", None).await.unwrap().mod_revision;
    let r4 = store.create("/g/x", bytes("v3")).await.unwrap();
    let other = store.create("/g/y", bytes("y")).await.unwrap();

    assert_eq!(store.get("/g/x", Some(before)).await.unwrap(), None);
    assert_eq!(store.get("/g/x", Some(r1)).await.unwrap(), Some(kv("/g/x", "v1", r1, r1)));
    assert_eq!(store.get("/g/x", Some(r2)).await.unwrap(), Some(kv("/g/x", "v2", r1, r2)));
    assert_eq!(store.get("/g/x", Some(r3)).await.unwrap(), None);
    assert_eq!(store.get("/g/x", Some(r4)).await.unwrap(), Some(kv("/g/x", "v3", r4, r4)));
    assert_eq!(store.get("/g/x", None).await.unwrap(), Some(kv("/g/x", "v3", r4, r4)));

    let at = |revision| ListOptions { revision: Some(revision), ..Default::default() };
    let list = store.list("/g/", at(r2)).await.unwrap();
    assert_eq!((list.items, list.revision, list.more), (vec![kv("/g/x", "v2", r1, r2)], r2, false));
    assert!(store.list("/g/", at(r3)).await.unwrap().items.is_empty());
    let list = store.list("/g/", ListOptions::default()).await.unwrap();
    assert_eq!(list.items, vec![kv("/g/x", "v3", r4, r4), kv("/g/y", "y", other, other)]);
    assert_eq!(list.revision, other);
}

async fn future_revisions_are_refused(f: Fixture) {
    let store = f.store();
    let current = store.create("/f/x", bytes("v")).await.unwrap();
    let future = current + 10;
    let expect_future = |result: Result<(), StoreError>| match result {
        Err(StoreError::FutureRevision { requested, current: reported }) => assert_eq!((requested, reported), (future, current)),
        other => panic!("expected FutureRevision, got {other:?}"),
    };
    expect_future(store.get("/f/x", Some(future)).await.map(drop));
    expect_future(store.list("/f/", ListOptions { revision: Some(future), ..Default::default() }).await.map(drop));
    expect_future(store.compact(future).await);
    // The current revision itself is fine.
    assert!(store.get("/f/x", Some(current)).await.unwrap().is_some());
}

async fn prefixes_are_isolated(f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.unwrap();
    for key in ["/a/b", "/a/b/1", "/a/b/2", "/a/bc", "/a/bc/1", "/a/c/1", "/a/b0"] {
        store.create(key, bytes(key)).await.unwrap();
    }
    let list = store.list("/a/b/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&list.items), ["/a/b/1", "/a/b/2"]);
    assert!(!list.more);
    let list = store.list("/a/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&list.items), ["/a/b", "/a/b/1", "/a/b/2", "/a/b0", "/a/bc", "/a/bc/1", "/a/c/1"]);
    // Paging cannot step outside the prefix either.
    let options = ListOptions { start_after: Some("/a/b/1".into()), limit: Some(5), ..Default::default() };
    let list = store.list("/a/b/", options).await.unwrap();
    assert_eq!((keys(&list.items), list.more), (vec!["/a/b/2"], false));
    let options = ListOptions { start_after: Some("/".into()), ..Default::default() };
    assert_eq!(keys(&store.list("/a/b/", options).await.unwrap().items), ["/a/b/1", "/a/b/2"]);

    let mut watch = store.watch("/a/b/", start).await.unwrap();
    let events = next_events(&mut watch, 2).await;
    assert_eq!(events.iter().map(|e| e.kv.key.as_str()).collect::<Vec<_>>(), ["/a/b/1", "/a/b/2"]);
    store.create("/a/bcd", bytes("no")).await.unwrap();
    store.create("/a/b/3", bytes("yes")).await.unwrap();
    assert_eq!(next_events(&mut watch, 1).await[0].kv.key, "/a/b/3");
    assert_quiet(&mut watch).await;
}

async fn pagination_at_a_fixed_revision_while_writes_continue(f: Fixture) {
    let store = f.store();
    for i in 0..23 {
        store.create(&format!("/p/{i:02}"), bytes(&format!("v{i}"))).await.unwrap();
    }
    store.create("/p0", bytes("outside")).await.unwrap();
    store.create("/o/x", bytes("outside")).await.unwrap();

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut options = ListOptions { limit: Some(5), ..Default::default() };
    loop {
        let page = store.list("/p/", options.clone()).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 5);
        seen.extend(page.items.iter().cloned());
        // Changes between pages must not show in the listing at the first page's revision.
        store.create(&format!("/p/{pages:02}-new"), bytes("new")).await.unwrap();
        let first = &page.items[0];
        store.update(&first.key, bytes("changed"), first.mod_revision).await.unwrap();
        store.delete(&page.items[page.items.len() - 1].key, None).await.unwrap();
        if !page.more {
            break;
        }
        options = ListOptions {
            revision: Some(page.revision),
            start_after: Some(page.items.last().unwrap().key.clone()),
            limit: Some(5),
        };
    }
    assert_eq!(pages, 5);
    let expected: Vec<String> = (0..23).map(|i| format!("/p/{i:02}")).collect();
    assert_eq!(keys(&seen), expected);
    for (i, item) in seen.iter().enumerate() {
        assert_eq!(item.value, bytes(&format!("v{i}")));
    }
    // A page that ends exactly at the last key says there is no more.
    let page = store.list("/o/", ListOptions { limit: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!((keys(&page.items), page.more), (vec!["/o/x"], false));
}

async fn watch_replays_history_then_follows_live(f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.unwrap();
    let r1 = store.create("/w/x", bytes("v1")).await.unwrap();
    store.create("/other/x", bytes("not watched")).await.unwrap();
    let r2 = store.update("/w/x", bytes("v2"), r1).await.unwrap();
    let r3 = store.create("/w/y", bytes("y")).await.unwrap();
    let r4 = store.delete("/w/x", Some(r2)).await.unwrap().mod_revision;

    let mut watch = store.watch("/w/", start).await.unwrap();
    let events = next_events(&mut watch, 4).await;
    let expected = vec![
        Event { kind: EventKind::Put, kv: kv("/w/x", "v1", r1, r1), prev: None },
        Event { kind: EventKind::Put, kv: kv("/w/x", "v2", r1, r2), prev: Some(kv("/w/x", "v1", r1, r1)) },
        Event { kind: EventKind::Put, kv: kv("/w/y", "y", r3, r3), prev: None },
        Event { kind: EventKind::Delete, kv: kv("/w/x", "v2", r1, r4), prev: Some(kv("/w/x", "v2", r1, r2)) },
    ];
    assert_eq!(events, expected);

    // Live changes, the same shapes.
    let r5 = store.update("/w/y", bytes("y2"), r3).await.unwrap();
    let r6 = store.delete("/w/y", None).await.unwrap().mod_revision;
    let r7 = store.create("/w/x", bytes("again")).await.unwrap();
    let events = next_events(&mut watch, 3).await;
    let expected = vec![
        Event { kind: EventKind::Put, kv: kv("/w/y", "y2", r3, r5), prev: Some(kv("/w/y", "y", r3, r3)) },
        Event { kind: EventKind::Delete, kv: kv("/w/y", "y2", r3, r6), prev: Some(kv("/w/y", "y2", r3, r5)) },
        Event { kind: EventKind::Put, kv: kv("/w/x", "again", r7, r7), prev: None },
    ];
    assert_eq!(events, expected);
    assert_quiet(&mut watch).await;

    // A watch from the middle of history starts right after that revision.
    let mut watch = store.watch("/w/", r3).await.unwrap();
    let revisions: Vec<Revision> = next_events(&mut watch, 4).await.iter().map(Event::revision).collect();
    assert_eq!(revisions, [r4, r5, r6, r7]);
}

async fn watch_on_root_sees_everything(f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/", start).await.unwrap();
    let mut everything = store.watch("", start).await.unwrap();
    let mut written = Vec::new();
    for key in ["/registry/pods/a", "/x", "/registry/services/b", "/zz/1"] {
        written.push((key.to_owned(), store.create(key, bytes(key)).await.unwrap()));
    }
    written.push(("/x".into(), store.delete("/x", None).await.unwrap().mod_revision));
    for stream in [&mut watch, &mut everything] {
        let events = next_events(stream, written.len()).await;
        let seen: Vec<(String, Revision)> = events.iter().map(|e| (e.kv.key.clone(), e.revision())).collect();
        assert_eq!(seen, written);
        assert_eq!(events[4].kind, EventKind::Delete);
        assert_quiet(stream).await;
    }
    // The empty prefix lists every key too (etcd also holds its FORMAT_VERSION_KEY).
    let all = store.list("", ListOptions::default()).await.unwrap().items;
    assert!(["/registry/pods/a", "/registry/services/b", "/zz/1"].iter().all(|key| all.iter().any(|kv| kv.key == *key)));
}

async fn watch_from_the_current_revision_sees_only_new_changes(f: Fixture) {
    let store = f.store();
    store.create("/n/old", bytes("old")).await.unwrap();
    let now = store.current_revision().await.unwrap();
    let mut watch = store.watch("/n/", now).await.unwrap();
    assert_quiet(&mut watch).await;
    let revision = store.create("/n/new", bytes("new")).await.unwrap();
    let events = next_events(&mut watch, 1).await;
    assert_eq!(events[0].kv, kv("/n/new", "new", revision, revision));
}

/// More history than one page of replay, and a reader that does not read while it is written.
async fn watch_replays_long_history_to_a_slow_reader(f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.unwrap();
    let mut slow = store.watch("/h/", start).await.unwrap();
    // Few writers, so many small commits: more than a live feed would buffer.
    let (writers, total) = (4, 1200);
    let writers: Vec<_> = (0..writers)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..total / writers {
                    store.create(&format!("/h/{task}/{i}"), bytes("v")).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut replay = store.watch("/h/", start).await.unwrap();
    for stream in [&mut slow, &mut replay] {
        let events = next_events(stream, total).await;
        let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
        assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "in revision order without duplicates");
        let keys: BTreeSet<&str> = events.iter().map(|e| e.kv.key.as_str()).collect();
        assert_eq!(keys.len(), total);
        assert_quiet(stream).await;
    }
}

async fn concurrent_creates_get_distinct_ordered_revisions(f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/cc/", start).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..50 {
                    revisions.push(store.create(&format!("/cc/{task}/{i:02}"), bytes("v")).await.unwrap());
                }
                revisions
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "one caller's writes are ordered");
        all.extend(revisions);
    }
    assert_eq!(all.len(), 400, "every create got its own revision");
    assert_eq!(*all.last().unwrap(), store.current_revision().await.unwrap());

    let events = next_events(&mut watch, 400).await;
    let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
    assert_eq!(revisions, all.iter().copied().collect::<Vec<_>>(), "each exactly once, in order");
    assert_quiet(&mut watch).await;
    assert_eq!(store.list("/cc/", ListOptions::default()).await.unwrap().items.len(), 400);
}

async fn compaction_discards_history_but_keeps_current_data(f: Fixture) {
    let store = f.store();
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    let start = store.current_revision().await.unwrap();
    let kept = store.create("/k/kept", bytes("kept")).await.unwrap();
    let mut revision = store.create("/k/changed", bytes("0")).await.unwrap();
    for i in 1..5 {
        revision = store.update("/k/changed", bytes(&i.to_string()), revision).await.unwrap();
    }
    store.create("/k/deleted", bytes("gone")).await.unwrap();
    let deleted = store.delete("/k/deleted", None).await.unwrap().mod_revision;
    let target = store.create("/k/last", bytes("last")).await.unwrap();
    // A watcher that keeps up is not affected by compaction.
    let mut live = store.watch("/k/", target).await.unwrap();

    store.compact(target).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), target);
    // Compacting again, or to an older revision, changes nothing.
    store.compact(target).await.unwrap();
    store.compact(start).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), target);

    for old in [start, kept, deleted, target - 1] {
        assert_compacted(store.get("/k/kept", Some(old)).await, old);
        assert_compacted(store.list("/k/", ListOptions { revision: Some(old), ..Default::default() }).await, old);
    }
    assert_watch_compacted(&*store, "/k/", start).await;
    assert_watch_compacted(&*store, "/", target - 2).await;

    // Current data, also read at the compacted revision itself.
    let expected = vec![kv("/k/changed", "4", revision - 4, revision), kv("/k/kept", "kept", kept, kept), kv("/k/last", "last", target, target)];
    assert_eq!(store.list("/k/", ListOptions::default()).await.unwrap().items, expected);
    assert_eq!(store.list("/k/", ListOptions { revision: Some(target), ..Default::default() }).await.unwrap().items, expected);
    assert_eq!(store.get("/k/deleted", None).await.unwrap(), None);
    assert_eq!(store.get("/k/changed", Some(target)).await.unwrap().unwrap().value, bytes("4"));

    // Writes go on with growing revisions, and watching from the compacted revision works,
    // including the previous value of a version written before the compaction.
    let next = store.update("/k/changed", bytes("5"), revision).await.unwrap();
    assert_eq!(next, target + 1);
    let deletion = store.delete("/k/kept", None).await.unwrap().mod_revision;
    let mut watch = store.watch("/k/", target).await.unwrap();
    for stream in [&mut watch, &mut live] {
        let events = next_events(stream, 2).await;
        assert_eq!(events[0].kv, kv("/k/changed", "5", revision - 4, next));
        assert_eq!(events[0].prev, Some(kv("/k/changed", "4", revision - 4, revision)));
        assert_eq!(events[1].kind, EventKind::Delete);
        assert_eq!(events[1].kv, kv("/k/kept", "kept", kept, deletion));
        assert_eq!(events[1].prev, Some(kv("/k/kept", "kept", kept, kept)));
    }

    // A deleted key can be created again after its tombstone was compacted away.
    let recreated = store.create("/k/deleted", bytes("back")).await.unwrap();
    assert_eq!(store.get("/k/deleted", None).await.unwrap(), Some(kv("/k/deleted", "back", recreated, recreated)));
    assert!(store.current_revision().await.unwrap() > target);
}

async fn restart_keeps_data_and_revisions(mut f: Fixture) {
    let store = f.store();
    let created = store.create("/s/a", bytes("a")).await.unwrap();
    let updated = store.update("/s/a", bytes("a2"), created).await.unwrap();
    store.create("/s/b", bytes("b")).await.unwrap();
    let compacted = store.delete("/s/b", None).await.unwrap().mod_revision;
    store.compact(compacted).await.unwrap();
    let current = store.create("/s/c", bytes("c")).await.unwrap();
    drop(store);

    f.reopen().await;
    let store = f.store();
    assert_eq!(store.current_revision().await.unwrap(), current);
    assert_eq!(store.compacted_revision().await.unwrap(), compacted);
    assert_eq!(store.get("/s/a", None).await.unwrap(), Some(kv("/s/a", "a2", created, updated)));
    assert_eq!(store.get("/s/b", None).await.unwrap(), None);
    assert_compacted(store.get("/s/a", Some(created)).await, created);
    let mut watch = store.watch("/s/", compacted).await.unwrap();
    assert_eq!(next_events(&mut watch, 1).await[0].kv, kv("/s/c", "c", current, current));
    assert_eq!(store.create("/s/d", bytes("d")).await.unwrap(), current + 1);

    // Reopening again: also when the newest writes were compacted tombstones, revisions never
    // go back.
    let deleted = store.delete("/s/d", None).await.unwrap().mod_revision;
    store.compact(deleted).await.unwrap();
    drop(watch);
    drop(store);
    f.reopen().await;
    let store = f.store();
    assert_eq!(store.current_revision().await.unwrap(), deleted);
    assert_eq!(store.create("/s/e", bytes("e")).await.unwrap(), deleted + 1);
}

async fn watch_ends_when_the_store_is_dropped(mut f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.unwrap();
    store.create("/e/x", bytes("x")).await.unwrap();
    let mut watch = store.watch("/e/", start).await.unwrap();
    next_events(&mut watch, 1).await;
    drop(store);
    f.store.take();
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(None) | Ok(Some(Err(StoreError::Closed))) => {}
        other => panic!("expected the watch to end, got {other:?}"),
    }
}

/// Objects of up to about 1 MiB (etcd's request limit is 1.5 MiB), and lists and watch replays
/// that together carry several times more than a gRPC message is allowed by default (4 MiB).
async fn large_values_in_lists_and_watches(f: Fixture) {
    let store = f.store();
    let start = store.current_revision().await.unwrap();
    let big = |i: u8| Bytes::from(vec![b'a' + i; 1024 * 1024]);
    let count = 12;
    for i in 0..count {
        store.create(&format!("/big/{i:02}"), big(i)).await.unwrap();
    }
    let list = store.list("/big/", ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), usize::from(count));
    assert!(list.items.iter().enumerate().all(|(i, kv)| kv.value == big(i as u8)));
    let mut watch = store.watch("/big/", start).await.unwrap();
    let events = next_events(&mut watch, usize::from(count)).await;
    assert!(events.iter().enumerate().all(|(i, event)| event.kv.value == big(i as u8)));
}
