//! Resource usage: CPU and memory per container (from the runtime's CRI stats), per pod and for
//! the node (from /proc), sampled every 10 s; CPU rates come from two successive samples. Served
//! as kubelet's /stats/summary (the API server's metrics.k8s.io reads it) and Prometheus text.

use crate::pleg::POD_UID_LABEL;
use crate::spec::{CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL};
use crate::Context;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The kernel's clock ticks per second for /proc/stat (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

#[derive(Clone, Default, Debug)]
struct Usage {
    /// Cumulative CPU time, nanoseconds.
    cpu_total_nanos: u64,
    /// CPU rate over the last interval, nanocores.
    nano_cores: u64,
    memory_working_set: u64,
    timestamp_nanos: i64,
}

#[derive(Clone, Debug)]
struct ContainerUsage {
    namespace: String,
    pod: String,
    pod_uid: String,
    container: String,
    usage: Usage,
}

#[derive(Default)]
struct Sample {
    node: Usage,
    containers: HashMap<String, ContainerUsage>,
}

#[derive(Default)]
pub struct StatsCache {
    latest: Mutex<Sample>,
}

fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// Nanocores between two cumulative CPU readings.
fn rate(previous: Option<&Usage>, cpu_total_nanos: u64, timestamp_nanos: i64) -> u64 {
    match previous {
        Some(previous) if timestamp_nanos > previous.timestamp_nanos && cpu_total_nanos >= previous.cpu_total_nanos => {
            let elapsed = (timestamp_nanos - previous.timestamp_nanos) as u128;
            ((cpu_total_nanos - previous.cpu_total_nanos) as u128 * 1_000_000_000 / elapsed) as u64
        }
        _ => 0,
    }
}

fn node_cpu_nanos() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    // user nice system idle iowait irq softirq steal: busy time excludes idle and iowait.
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let busy: u64 = fields.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).take(8).map(|(_, v)| v).sum();
    busy * (1_000_000_000 / USER_HZ)
}

fn timestamp(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

impl StatsCache {
    async fn sample(&self, context: &Context) {
        let stats = match context.runtime.list_container_stats().await {
            Ok(stats) => stats,
            Err(error) => {
                tracing::debug!(%error, "cannot read container stats");
                Vec::new()
            }
        };
        let now = now_nanos();
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let node_cpu = node_cpu_nanos();
        let node_memory = crate::node::meminfo_bytes("MemTotal").unwrap_or(0).saturating_sub(crate::node::meminfo_bytes("MemAvailable").unwrap_or(0));
        let node = Usage { cpu_total_nanos: node_cpu, nano_cores: rate(Some(&latest.node), node_cpu, now), memory_working_set: node_memory, timestamp_nanos: now };
        let mut containers = HashMap::new();
        for stat in stats {
            let Some(attributes) = stat.attributes else { continue };
            let labels = &attributes.labels;
            let cpu = stat.cpu.as_ref();
            let cpu_total = cpu.and_then(|c| c.usage_core_nano_seconds.as_ref()).map(|v| v.value).unwrap_or(0);
            let at = cpu.map(|c| c.timestamp).filter(|t| *t > 0).unwrap_or(now);
            let previous = latest.containers.get(&attributes.id).map(|c| &c.usage);
            let usage = Usage {
                cpu_total_nanos: cpu_total,
                nano_cores: rate(previous, cpu_total, at),
                memory_working_set: stat.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()).map(|v| v.value).unwrap_or(0),
                timestamp_nanos: at,
            };
            let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
            containers.insert(
                attributes.id.clone(),
                ContainerUsage { namespace: label(POD_NAMESPACE_LABEL), pod: label(POD_NAME_LABEL), pod_uid: label(POD_UID_LABEL), container: label(CONTAINER_NAME_LABEL), usage },
            );
        }
        *latest = Sample { node, containers };
    }

    /// Kubelet's /stats/summary, the parts metrics use.
    pub fn summary(&self, node_name: &str) -> Value {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let usage_json = |u: &Usage| {
            (
                json!({"time": timestamp(u.timestamp_nanos), "usageNanoCores": u.nano_cores, "usageCoreNanoSeconds": u.cpu_total_nanos}),
                json!({"time": timestamp(u.timestamp_nanos), "workingSetBytes": u.memory_working_set}),
            )
        };
        let mut pods: HashMap<(String, String, String), Vec<&ContainerUsage>> = HashMap::new();
        for container in latest.containers.values() {
            pods.entry((container.namespace.clone(), container.pod.clone(), container.pod_uid.clone())).or_default().push(container);
        }
        let pods: Vec<Value> = pods
            .into_iter()
            .map(|((namespace, name, uid), containers)| {
                let total = Usage {
                    cpu_total_nanos: containers.iter().map(|c| c.usage.cpu_total_nanos).sum(),
                    nano_cores: containers.iter().map(|c| c.usage.nano_cores).sum(),
                    memory_working_set: containers.iter().map(|c| c.usage.memory_working_set).sum(),
                    timestamp_nanos: containers.iter().map(|c| c.usage.timestamp_nanos).max().unwrap_or(0),
                };
                let (cpu, memory) = usage_json(&total);
                let containers: Vec<Value> = containers
                    .iter()
                    .map(|c| {
                        let (cpu, memory) = usage_json(&c.usage);
                        json!({"name": c.container, "cpu": cpu, "memory": memory})
                    })
                    .collect();
                json!({"podRef": {"name": name, "namespace": namespace, "uid": uid}, "cpu": cpu, "memory": memory, "containers": containers})
            })
            .collect();
        let (cpu, memory) = usage_json(&latest.node);
        json!({"node": {"nodeName": node_name, "cpu": cpu, "memory": memory}, "pods": pods})
    }

    /// Prometheus text exposition of the same figures.
    pub fn prometheus(&self, node_name: &str) -> String {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP node_cpu_usage_seconds_total Cumulative cpu time consumed by the node in core-seconds\n# TYPE node_cpu_usage_seconds_total counter\n");
        out.push_str(&format!("node_cpu_usage_seconds_total{{node=\"{node_name}\"}} {}\n", latest.node.cpu_total_nanos as f64 / 1e9));
        out.push_str("# HELP node_memory_working_set_bytes Current working set of the node in bytes\n# TYPE node_memory_working_set_bytes gauge\n");
        out.push_str(&format!("node_memory_working_set_bytes{{node=\"{node_name}\"}} {}\n", latest.node.memory_working_set));
        out.push_str("# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed by the container in core-seconds\n# TYPE container_cpu_usage_seconds_total counter\n");
        let mut containers: Vec<&ContainerUsage> = latest.containers.values().collect();
        containers.sort_by(|a, b| (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container)));
        for c in &containers {
            out.push_str(&format!(
                "container_cpu_usage_seconds_total{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {}\n",
                c.container, c.namespace, c.pod, c.usage.cpu_total_nanos as f64 / 1e9
            ));
        }
        out.push_str("# HELP container_memory_working_set_bytes Current working set of the container in bytes\n# TYPE container_memory_working_set_bytes gauge\n");
        for c in &containers {
            out.push_str(&format!("container_memory_working_set_bytes{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {}\n", c.container, c.namespace, c.pod, c.usage.memory_working_set));
        }
        out
    }
}

/// Samples now, again shortly after (so rates exist early), then every [`SAMPLE_EVERY`].
pub async fn collect(context: Arc<Context>) {
    context.stats.sample(&context).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    loop {
        ticker.tick().await;
        context.stats.sample(&context).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_two_samples() {
        let first = Usage { cpu_total_nanos: 1_000_000_000, timestamp_nanos: 0, ..Default::default() };
        // Half a core over two seconds.
        assert_eq!(rate(Some(&first), 2_000_000_000, 2_000_000_000), 500_000_000);
        assert_eq!(rate(None, 5, 5), 0);
        // A restarted container's counter went down: no rate rather than garbage.
        assert_eq!(rate(Some(&first), 10, 2_000_000_000), 0);
    }
}
