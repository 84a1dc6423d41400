//! What only one backend can be asked: SQLite durability under kill -9, each backend's refusal of
//! another data format, and etcd compactions done by another client.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tugboat_store::{EtcdStore, ListOptions, SqliteOptions, SqliteStore, Store, StoreError, FORMAT_VERSION_KEY};

/// Set (to a database path) only in the child process of the durability test.
const BURST_DB: &str = "TUGBOAT_STORE_BURST_DB";
/// The parent kills the child once it has seen this many acknowledgements.
const KILL_AFTER: usize = 3000;

/// The child: creates keys from many tasks at once and prints each key once its create is
/// acknowledged, until killed (or, should the parent be gone, for at most a minute).
#[test]
#[ignore = "run by acknowledged_writes_survive_kill_9 in a child process"]
fn burst_child() {
    let path = std::env::var(BURST_DB).expect("only run as the child of acknowledged_writes_survive_kill_9");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(path.as_ref(), SqliteOptions::default()).unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..32)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let value = Bytes::from(vec![b'x'; 1024]);
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let key = format!("/burst/{task}/{i}");
                        store.create(&key, value.clone()).await.unwrap();
                        // One write call per line, so the parent never sees half a key.
                        std::io::stdout().lock().write_all(format!("{key}\n").as_bytes()).unwrap();
                        i += 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["burst_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(BURST_DB, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = Vec::new();
    let mut killed = false;
    let mut line = String::new();
    // After the kill, what the child printed before dying is still in the pipe: read it all.
    while stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(key) = line.strip_suffix('\n').filter(|key| key.starts_with("/burst/")) {
            acknowledged.push(key.to_owned());
        }
        line.clear();
        if !killed && acknowledged.len() >= KILL_AFTER {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped by itself ({status}) after {} acknowledged writes", acknowledged.len());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let list = store.list("/burst/", ListOptions::default()).await.unwrap();
        assert_eq!(store.current_revision().await.unwrap(), 1 + list.items.len() as i64, "one revision per create");
        list.items.into_iter().map(|kv| kv.key).collect::<std::collections::HashSet<_>>()
    });
    let lost: Vec<&String> = acknowledged.iter().filter(|key| !stored.contains(*key)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost, e.g. {:?}", lost.len(), acknowledged.len(), &lost[..lost.len().min(5)]);
}

#[tokio::test]
async fn sqlite_refuses_another_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute("UPDATE meta SET value = 99 WHERE name = 'format_version'", []).unwrap();
    drop(connection);
    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(StoreError::UnsupportedFormat { found, expected }) => assert_eq!((found.as_str(), expected), ("99", tugboat_store::FORMAT_VERSION)),
        Err(other) => panic!("expected UnsupportedFormat, got {other}"),
        Ok(_) => panic!("expected UnsupportedFormat, the store opened"),
    }
}

#[tokio::test]
async fn sqlite_refuses_a_second_store_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let first = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(StoreError::Io(error)) => assert!(error.to_string().contains("in use"), "{error}"),
        Err(other) => panic!("expected an Io error saying the file is in use, got {other}"),
        Ok(_) => panic!("a second store opened the same file"),
    }
    // Closing the first frees the file, even while its watchers are still around.
    let watch = first.watch("/", 1).await.unwrap();
    drop(first);
    SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    drop(watch);
}

/// Compaction works through a long log in slices between batches of writes: writers wait for a
/// slice at most, and readers at the current revision never see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_compaction_does_not_stall_writes_or_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap());
    // Many concurrent writers: few commits, so building a long log stays quick.
    let keys = 6000;
    let writers: Vec<_> = (0..64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (task..keys).step_by(64) {
                    let key = format!("/c/{i:05}");
                    let created = store.create(&key, Bytes::from_static(b"first")).await.unwrap();
                    store.update(&key, Bytes::from_static(b"second"), created).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let target = store.current_revision().await.unwrap();

    let compaction = tokio::spawn({
        let store = store.clone();
        async move { store.compact(target).await }
    });
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    while !compaction.is_finished() {
        let started = Instant::now();
        store.create(&format!("/during/{rounds}"), Bytes::from_static(b"x")).await.unwrap();
        slowest = slowest.max(started.elapsed());
        let list = store.list("/c/", ListOptions { limit: Some(10), ..Default::default() }).await.unwrap();
        assert_eq!(list.items.len(), 10);
        rounds += 1;
    }
    compaction.await.unwrap().unwrap();
    assert!(slowest < Duration::from_secs(2), "a write waited {slowest:?} behind the compaction");
    let list = store.list("/c/", ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), keys);
    assert!(list.items.iter().all(|kv| kv.value == Bytes::from_static(b"second")));
    assert!(matches!(store.get("/c/00000", Some(target - 1)).await, Err(StoreError::Compacted { .. })));
    assert_eq!(store.list("/during/", ListOptions::default()).await.unwrap().items.len(), rounds);
}

async fn start_etcd() -> tugboat_testkit::Etcd {
    tokio::task::spawn_blocking(tugboat_testkit::Etcd::start).await.unwrap()
}

#[tokio::test]
async fn etcd_refuses_another_format_version() {
    let etcd = start_etcd().await;
    let endpoints = [etcd.endpoint.clone()];
    let mut client = etcd_client::Client::connect(&endpoints, None).await.unwrap();
    client.put(FORMAT_VERSION_KEY, "99", None).await.unwrap();
    match EtcdStore::connect(&endpoints).await {
        Err(StoreError::UnsupportedFormat { found, .. }) => assert_eq!(found, "99"),
        Err(other) => panic!("expected UnsupportedFormat, got {other}"),
        Ok(_) => panic!("expected UnsupportedFormat, the store connected"),
    }
}

/// Several API servers may share one etcd: one learns of another's compaction from etcd.
#[tokio::test]
async fn etcd_compaction_by_another_client_is_reported_with_its_revision() {
    let etcd = start_etcd().await;
    let endpoints = [etcd.endpoint.clone()];
    let (compactor, reader) = (EtcdStore::connect(&endpoints).await.unwrap(), EtcdStore::connect(&endpoints).await.unwrap());
    let first = compactor.create("/x/a", Bytes::from_static(b"1")).await.unwrap();
    let mut revision = first;
    for value in ["2", "3", "4"] {
        revision = compactor.update("/x/a", Bytes::copy_from_slice(value.as_bytes()), revision).await.unwrap();
    }
    compactor.compact(revision).await.unwrap();
    assert_eq!(reader.compacted_revision().await.unwrap(), 0, "not known yet");

    // A watch passes the local check, and etcd ends it.
    let mut watch = reader.watch("/x/", first).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Err(StoreError::Compacted { requested, compacted }))) => assert_eq!((requested, compacted), (first, revision)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_eq!(reader.compacted_revision().await.unwrap(), revision);

    // A read, on a client that did not see the watch fail, finds the number out too.
    let late = EtcdStore::connect(&endpoints).await.unwrap();
    compactor.update("/x/a", Bytes::from_static(b"5"), revision).await.unwrap();
    compactor.compact(revision + 1).await.unwrap();
    match late.get("/x/a", Some(revision)).await {
        Err(StoreError::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (revision, revision + 1)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_eq!(late.compacted_revision().await.unwrap(), revision + 1);
    // Compacting to where another client already did is fine, and teaches how far that was.
    reader.compact(revision + 1).await.unwrap();
    assert_eq!(reader.compacted_revision().await.unwrap(), revision + 1);
}
