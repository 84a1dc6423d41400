//! `tugboat-bench`: create/get/list/watch throughput and latency through the real API server on
//! each store, the server's memory per stored object, and raw etcd put throughput measured in the
//! same run for comparison. Prints figures; asserts nothing.

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tugboat_bench::rss_kib;
use tugboat_client::Client;
use tugboat_testkit::{Etcd, Server};

#[derive(Parser)]
struct Args {
    /// Objects to create per backend.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Bytes of data in each object.
    #[arg(long, default_value_t = 1024)]
    object_bytes: usize,
    /// Rate of the paced single-writer latency run, writes per second.
    #[arg(long, default_value_t = 500)]
    paced_rate: u64,
    /// The tugboat binary to measure.
    #[arg(long, default_value = "target/release/tugboat")]
    tugboat: PathBuf,
}

/// Latencies of one operation kind, and the wall time they took together.
struct Sample {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn line(&mut self, what: &str) -> String {
        self.latencies.sort();
        let pick = |q: f64| tugboat_bench::quantile(&self.latencies, q);
        format!(
            "{what:<34} {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   (n={})",
            self.latencies.len() as f64 / self.wall.as_secs_f64(),
            pick(0.50).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            self.latencies.len()
        )
    }
}

/// Runs `total` operations over `clients` concurrent tasks; `op(i)` performs operation i.
async fn concurrently<F, Fut>(total: usize, clients: usize, op: F) -> anyhow::Result<Sample>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t = Instant::now();
                op(i).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Sample { latencies, wall: started.elapsed() })
}

async fn raw_etcd(endpoint: &str, args: &Args) -> anyhow::Result<()> {
    let value = vec![b'x'; args.object_bytes];
    for clients in [1, args.clients] {
        let total = if clients == 1 { args.objects.min(2_000) } else { args.objects };
        // One connection per client, as for the API server below.
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients {
            connections.push(etcd_client::Client::connect([endpoint], None).await?);
        }
        let value = value.clone();
        let mut sample = concurrently(total, clients, move |i| {
            let mut kv = connections[i % clients].kv_client();
            let value = value.clone();
            async move {
                kv.put(format!("/raw/{clients}/{i}"), value, None).await?;
                Ok(())
            }
        })
        .await?;
        println!("{}", sample.line(&format!("raw etcd put, {clients} client(s)")));
    }
    Ok(())
}

async fn api(name: &str, server: &Server, args: &Args) -> anyhow::Result<()> {
    println!("\n== API server on {name} ==");
    let client = Client::from_kubeconfig(&server.kubeconfig())?;
    client.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})).await?;
    let pid = server.pid().context("server has no pid")?;
    let data = "x".repeat(args.object_bytes);

    // One client, like-for-like with the single-client raw etcd figure.
    let c = client.clone();
    let body = Arc::new(data.clone());
    let single = args.objects.min(2_000);
    let mut create_one = concurrently(single, 1, move |i| {
        let (c, body) = (c.clone(), body.clone());
        async move {
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("one-{i}")}, "data": {"payload": *body}});
            c.create("/api/v1/namespaces/bench/configmaps", &object).await?;
            Ok(())
        }
    })
    .await?;
    println!("{}", create_one.line("create (1 client)"));

    // A watcher started before the burst: how fast do events reach it?
    let mut events = client.watch("/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion=0").await?;
    let expected = args.objects;
    let watcher = tokio::spawn(async move {
        let started = Instant::now();
        let mut seen = 0;
        while seen < expected {
            match events.next().await {
                Some(Ok(event)) if event["object"]["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("cm-")) => seen += 1,
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        (seen, started.elapsed())
    });

    // Concurrent clients are separate clients, each with its own connection, as separate
    // kubelets and controllers would be; one multiplexed connection would measure the connection.
    let connections: Arc<Vec<Client>> = Arc::new(
        (0..args.clients).map(|_| Client::from_kubeconfig(&server.kubeconfig())).collect::<Result<_, _>>()?,
    );
    // Open every connection first, so their buffers are not counted as memory per object.
    for connection in connections.iter() {
        connection.get("/version").await?;
    }
    // The single-client objects above are already in this figure.
    let rss_before = rss_kib(pid);
    let c = connections.clone();
    let body = Arc::new(data.clone());
    let mut create = concurrently(args.objects, args.clients, move |i| {
        let (c, body) = (c[i % c.len()].clone(), body.clone());
        async move {
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}, "data": {"payload": *body}});
            c.create("/api/v1/namespaces/bench/configmaps", &object).await?;
            Ok(())
        }
    })
    .await?;
    println!("{}", create.line(&format!("create ({} clients)", args.clients)));
    let (seen, took) = watcher.await?;
    println!("{:<34} {:>9.0} events/s ({seen} events to one watcher during the create burst)", "watch delivery", seen as f64 / took.as_secs_f64());

    // Memory right after the burst, before later phases add transient buffers.
    let rss_after = rss_kib(pid);
    let stored = args.objects;
    let per_object = (rss_after.saturating_sub(rss_before) * 1024) as f64 / stored as f64;
    println!(
        "{:<34} {:>9.1} MiB per 10,000 objects ({:.0} bytes per {}-byte object; RSS {} -> {} MiB)",
        "server memory",
        per_object * 10_000.0 / 1_048_576.0,
        per_object,
        args.object_bytes,
        rss_before / 1024,
        rss_after / 1024
    );

    let c = client.clone();
    let mut get = concurrently(args.objects, args.clients, move |i| {
        let c = c.clone();
        async move {
            c.get(&format!("/api/v1/namespaces/bench/configmaps/cm-{i}")).await?;
            Ok(())
        }
    })
    .await?;
    println!("{}", get.line(&format!("get ({} clients)", args.clients)));

    let c = client.clone();
    let mut list = concurrently(20, 4, move |_| {
        let c = c.clone();
        async move {
            c.request(http::Method::GET, "/api/v1/namespaces/bench/configmaps", None).await?;
            Ok(())
        }
    })
    .await?;
    println!("{}   ({} objects per list)", list.line("list all (4 clients)"), args.objects);

    // Fan-out: 100 watchers, 1,000 updates.
    let watchers = 100;
    let updates = 1_000;
    let mut streams = Vec::new();
    for _ in 0..watchers {
        streams.push(client.watch("/api/v1/namespaces/bench/configmaps?watch=true&fieldSelector=metadata.name%3Dcm-0").await?);
    }
    let started = Instant::now();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut n = 0;
                // The initial ADDED, then one MODIFIED per update.
                while n < updates + 1 {
                    match tokio::time::timeout(Duration::from_secs(30), s.next()).await {
                        Ok(Some(Ok(_))) => n += 1,
                        _ => break,
                    }
                }
                n
            })
        })
        .collect();
    for i in 0..updates {
        let patch = Bytes::from(serde_json::to_vec(&json!({"data": {"n": i.to_string()}}))?);
        client.request(http::Method::PATCH, "/api/v1/namespaces/bench/configmaps/cm-0", Some(("application/merge-patch+json", patch))).await?;
    }
    let mut delivered = 0;
    for r in readers {
        delivered += r.await?;
    }
    println!("{:<34} {:>9.0} events/s ({delivered} events to {watchers} watchers of one object)", "watch fan-out", delivered as f64 / started.elapsed().as_secs_f64());

    // Paced single-object writes: latency at a fixed arrival rate.
    let interval = Duration::from_micros(1_000_000 / args.paced_rate.max(1));
    let total = (args.paced_rate * 5) as usize;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("paced-{i}")}, "data": {"k": "v"}});
            c.create("/api/v1/namespaces/bench/configmaps", &object).await.map(|_| t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.push(t.await??);
    }
    let mut paced = Sample { latencies, wall: started.elapsed() };
    println!("{}", paced.line(&format!("paced create at {}/s", args.paced_rate)));

    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.tugboat.exists(), "{} does not exist; build it with `cargo build --release`", args.tugboat.display());
    println!("objects={} clients={} object_bytes={}", args.objects, args.clients, args.object_bytes);
    let etcd = Etcd::start();
    println!("\n== raw etcd ==");
    raw_etcd(&etcd.endpoint, &args).await?;
    {
        let server = Server::start(&args.tugboat, &[]);
        api("SQLite (embedded)", &server, &args).await?;
    }
    {
        let server_etcd = Etcd::start();
        let server = Server::start(&args.tugboat, &["--datastore-endpoint", &server_etcd.endpoint]);
        api("etcd", &server, &args).await?;
    }
    Ok(())
}
