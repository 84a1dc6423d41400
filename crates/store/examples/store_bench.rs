//! Store-level throughput, without the API server around it:
//!
//! ```text
//! cargo run --release -p tugboat-store --example store_bench -- [--etcd http://127.0.0.1:2379] [--clients 64] [--creates 20000] [--bytes 1024]
//! ```
//!
//! Prints creates/s with that many concurrent callers, then how long listing every key takes at
//! the current revision once each key has several versions (history a compaction has not yet
//! removed), and the same after compacting. Without `--etcd` it runs on a fresh SQLite file.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tugboat_store::{EtcdStore, ListOptions, SqliteOptions, SqliteStore, Store};

struct Args {
    etcd: Option<String>,
    clients: usize,
    creates: usize,
    bytes: usize,
}

fn parse_args() -> Args {
    let mut args = Args { etcd: None, clients: 64, creates: 20_000, bytes: 1024 };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<usize>().unwrap_or_else(|_| panic!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--etcd" => args.etcd = Some(value.clone()),
            "--clients" => args.clients = number().max(1),
            "--creates" => args.creates = number(),
            "--bytes" => args.bytes = number(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match &args.etcd {
        Some(endpoint) => Arc::new(EtcdStore::connect(std::slice::from_ref(endpoint)).await.unwrap()),
        None => Arc::new(SqliteStore::open(&dir.path().join("bench.db"), SqliteOptions::default()).unwrap()),
    };
    let run = format!("/bench/{}", std::process::id());
    let value = Bytes::from(vec![b'x'; args.bytes]);

    let started = Instant::now();
    let per_client = args.creates / args.clients;
    let tasks: Vec<_> = (0..args.clients)
        .map(|client| {
            let (store, value, run) = (store.clone(), value.clone(), run.clone());
            tokio::spawn(async move {
                for i in 0..per_client {
                    store.create(&format!("{run}/{client}/{i}"), value.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = per_client * args.clients;
    let elapsed = started.elapsed();
    println!(
        "creates: {total} by {} clients in {:.2} s = {:.0}/s",
        args.clients,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    let listed = time_list(&*store, &run).await;
    // Give each key more versions, as status updates do between two compactions.
    let versions = 5;
    let items = store.list(&format!("{run}/"), ListOptions::default()).await.unwrap().items;
    let started = Instant::now();
    let tasks: Vec<_> = items
        .chunks(items.len().div_ceil(args.clients).max(1))
        .map(|chunk| {
            let (store, value, chunk) = (store.clone(), value.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for kv in chunk {
                    let mut revision = kv.mod_revision;
                    for _ in 0..versions {
                        revision = store.update(&kv.key, value.clone(), revision).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let updates = items.len() * versions;
    let elapsed = started.elapsed();
    println!("updates: {updates} in {:.2} s = {:.0}/s", elapsed.as_secs_f64(), updates as f64 / elapsed.as_secs_f64());
    let with_history = time_list(&*store, &run).await;
    let started = Instant::now();
    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    println!("compaction: {:.2} s", started.elapsed().as_secs_f64());
    let compacted = time_list(&*store, &run).await;
    println!(
        "list of {} keys: {listed:.3} s fresh, {with_history:.3} s with {versions} more versions each, {compacted:.3} s after compaction",
        items.len()
    );
}

async fn time_list(store: &dyn Store, run: &str) -> f64 {
    let started = Instant::now();
    store.list(&format!("{run}/"), ListOptions::default()).await.unwrap();
    started.elapsed().as_secs_f64()
}
