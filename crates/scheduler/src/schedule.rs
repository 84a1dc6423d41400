//! One scheduling decision over the cache, as kube-scheduler makes it: filter nodes starting where
//! the previous pod's search stopped until enough feasible nodes are found
//! (percentageOfNodesToScore), score those, pick the best; if none fits, try preemption.
//!
//! Invariant: a node that fits costs no heap allocation in the filter; why nodes do not fit is
//! worked out (a second pass, in kube-scheduler's filter order) and rendered to text only when
//! no node fits, so the search itself may run the cheapest rejecting filter first.

use crate::cache::{Cache, NodeInfo};
use crate::plugins::{self, filter, PodRequest, Reason};
use crate::preemption::{self, Preemption};
use crate::topology::PodTopology;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

#[derive(Debug)]
pub enum Decision {
    Fits(String),
    Unschedulable { message: String, preemption: Option<Preemption> },
}

/// kube-scheduler's numFeasibleNodesToFind with the adaptive percentageOfNodesToScore:
/// 50% minus 1% per 125 nodes, at least 5%, and at least 100 nodes.
pub fn feasible_nodes_to_find(all_nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all_nodes < MIN_FEASIBLE {
        return all_nodes;
    }
    let percentage = 50usize.saturating_sub(all_nodes / 125).max(5);
    (all_nodes * percentage / 100).max(MIN_FEASIBLE)
}

/// Rescales raw scores to 0..=100 over the feasible nodes (`higher_is_better` false inverts);
/// a node without a raw score gets 0.
fn normalise(raw: &[Option<i64>], higher_is_better: bool) -> Vec<i64> {
    let known = raw.iter().flatten();
    let (Some(min), Some(max)) = (known.clone().min().copied(), known.max().copied()) else { return vec![0; raw.len()] };
    raw.iter()
        .map(|score| match score {
            None => 0,
            Some(_) if max == min => 100,
            Some(s) if higher_is_better => (s - min) * 100 / (max - min),
            Some(s) => (max - s) * 100 / (max - min),
        })
        .collect()
}

/// Decides where `pod` goes. The caller places the pod in the cache when it fits.
pub fn decide(cache: &mut Cache, uid: &str, pod: &Pod) -> Decision {
    let request = PodRequest::new(uid, pod);
    let topology = PodTopology::build(cache, pod);
    // A pod nominated by an earlier preemption tries its nominated node first.
    if let Some(node) = preemption::nominated_node(uid, pod, cache).and_then(|n| cache.nodes.get(n)) {
        if filter(&request, topology.as_ref(), node).is_ok() {
            return Decision::Fits(node.name.clone());
        }
    }
    let total = cache.nodes.len();
    let wanted = feasible_nodes_to_find(total);
    let preempting = preemption::eligible(uid, pod, cache);
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted.min(total));
    let mut last_processed: Option<&str> = None;
    // From where the previous search stopped, round to it.
    let in_search_order = cache.nodes.round_from(&cache.next_start);
    for node in in_search_order.clone() {
        last_processed = Some(node.name.as_str());
        // Whether it fits is the same in any order of the filters: the topology filter (a few
        // look-ups, and what rejects most nodes for a spread or anti-affine pod) goes first.
        // Why a node does not fit matters only when none does (below).
        if topology.as_ref().is_none_or(|t| t.fits(node)) && filter(&request, None, node).is_ok() {
            feasible.push(node);
            if feasible.len() >= wanted {
                break;
            }
        }
    }
    let next_start = last_processed.and_then(|last| cache.nodes.name_after(last)).unwrap_or_default().to_owned();
    if feasible.is_empty() {
        // Every node was looked at and none fits: again, for the reasons, in kube-scheduler's
        // filter order (each node is reported under the first filter that rejects it).
        let mut reasons: Vec<(Reason, usize)> = Vec::new();
        let mut resolvable: Vec<&str> = Vec::new();
        for node in in_search_order {
            if let Err(unfit) = filter(&request, topology.as_ref(), node) {
                for reason in unfit.reasons() {
                    match reasons.iter_mut().find(|(r, _)| r == reason) {
                        Some((_, count)) => *count += 1,
                        None => reasons.push((*reason, 1)),
                    }
                }
                if preempting && unfit.resolvable_by_preemption() {
                    resolvable.push(&node.name);
                }
            }
        }
        let rendered: BTreeMap<String, usize> = reasons.iter().map(|(reason, count)| (reason.to_string(), *count)).collect();
        let message = plugins::unschedulable_message(total, &rendered);
        let preemption = if preempting { preemption::find(cache, &request, topology.as_ref(), &resolvable) } else { None };
        cache.next_start = next_start;
        return Decision::Unschedulable { message, preemption };
    }
    let mut scores: Vec<i64> = feasible.iter().map(|node| plugins::score(&request, node)).collect();
    if let Some(topology) = topology.as_ref() {
        // kube-scheduler weighs InterPodAffinity and PodTopologySpread twice.
        if topology.has_preferred() {
            let raw: Vec<Option<i64>> = feasible.iter().map(|node| Some(topology.affinity_score(node))).collect();
            scores.iter_mut().zip(normalise(&raw, true)).for_each(|(score, extra)| *score += 2 * extra);
        }
        if topology.has_soft_spread() {
            let raw: Vec<Option<i64>> = feasible.iter().map(|node| topology.spread_score(node)).collect();
            scores.iter_mut().zip(normalise(&raw, false)).for_each(|(score, extra)| *score += 2 * extra);
        }
    }
    let top = scores.iter().copied().max().unwrap_or(0);
    let ties = scores.iter().filter(|s| **s == top).count();
    let rotation = cache.rotation.wrapping_add(1);
    let pick = rotation % ties;
    let chosen = feasible.iter().zip(&scores).filter(|(_, s)| **s == top).nth(pick).map(|(node, _)| node.name.clone()).unwrap_or_default();
    cache.rotation = rotation;
    cache.next_start = next_start;
    Decision::Fits(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod};
    use serde_json::json;
    use std::time::Instant;

    #[test]
    fn adaptive_percentage_of_nodes_to_score() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(150), 100, "never fewer than 100");
        assert_eq!(feasible_nodes_to_find(1000), 420, "50% - 1000/125 = 42%");
        assert_eq!(feasible_nodes_to_find(5000), 500, "50% - 40 = 10%");
        assert_eq!(feasible_nodes_to_find(10000), 500, "the floor is 5%");
    }

    fn nodes(count: usize, cpu_millis: i64) -> Cache {
        let mut cache = Cache::default();
        for i in 0..count {
            let name = format!("n{i:05}");
            cache.set_node(&node(&name, json!({"kubernetes.io/hostname": name, "zone": format!("z{}", i % 10)}), cpu_millis));
        }
        cache
    }

    #[test]
    fn each_search_starts_where_the_previous_one_stopped() {
        // 300 nodes: 144 (48%) feasible nodes suffice, so the first pod looks at n00000..n00143.
        let mut cache = nodes(300, 4000);
        let incoming = pod("p", json!({}), "100m", json!({}));
        let Decision::Fits(first) = decide(&mut cache, "p1", &incoming) else { panic!("fits") };
        assert!(first.as_str() < "n00144", "{first}");
        assert_eq!(cache.next_start, "n00144");
        let Decision::Fits(second) = decide(&mut cache, "p2", &incoming) else { panic!("fits") };
        assert!(second.as_str() >= "n00144" && second.as_str() < "n00288", "{second}");
        assert_eq!(cache.next_start, "n00288");
        decide(&mut cache, "p3", &incoming);
        assert_eq!(cache.next_start, "n00132", "wrapped around: 12 nodes at the end, 132 from the start");
    }

    #[test]
    fn an_unschedulable_pod_hears_about_every_node() {
        let mut cache = nodes(300, 1000);
        let big = pod("big", json!({}), "2", json!({}));
        let Decision::Unschedulable { message, preemption } = decide(&mut cache, "big", &big) else { panic!("cannot fit") };
        assert_eq!(message, "0/300 nodes are available: 300 Insufficient cpu.");
        assert!(preemption.is_none());
    }

    /// Measures decisions per second with 5,000 nodes and 150,000 pods (no assertion on time):
    /// `cargo test -p tugboat-scheduler --release --lib -- --ignored --nocapture throughput`.
    #[test]
    #[ignore]
    fn throughput_with_5000_nodes_and_150000_pods() {
        let resident_kib = || std::fs::read_to_string("/proc/self/status").ok().and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()));
        let before = resident_kib();
        let mut cache = nodes(5000, 64_000);
        let started = Instant::now();
        for i in 0..150_000usize {
            let existing = pod(&format!("existing-{i}"), json!({"app": format!("app-{}", i % 1000), "tier": "backend"}), "100m", json!({}));
            cache.place(&format!("existing-{i}"), &existing, &format!("n{:05}", i % 5000));
        }
        eprintln!("filled the cache in {:?}; resident memory grew by {:?} MiB", started.elapsed(), resident_kib().zip(before).map(|(after, before)| after.saturating_sub(before) / 1024));
        let run = |cache: &mut Cache, label: &str, count: usize, make: &dyn Fn(usize) -> Pod| {
            let pods: Vec<(String, Pod)> = (0..count).map(|i| (format!("{label}-{i}"), make(i))).collect();
            let started = Instant::now();
            for (uid, incoming) in &pods {
                match decide(cache, uid, incoming) {
                    Decision::Fits(node) => cache.place(uid, incoming, &node),
                    Decision::Unschedulable { message, .. } => panic!("{message}"),
                }
            }
            let elapsed = started.elapsed();
            eprintln!("{label}: {count} decisions in {elapsed:?}: {:.0} pods/s", count as f64 / elapsed.as_secs_f64());
        };
        let same = |label: &'static str, spec: serde_json::Value| move |i: usize| pod(&format!("{label}-{i}"), json!({"app": label}), "100m", spec.clone());
        run(&mut cache, "plain", 10_000, &same("plain", json!({})));
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]});
        run(&mut cache, "spread", 2_000, &same("spread", spread));
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "anti"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        run(&mut cache, "anti", 2_000, &same("anti", anti));
        run(&mut cache, "plain-among-anti", 10_000, &same("plain-among-anti", json!({})));
        // As the scale benchmark (and scheduler_perf) do: groups of 10 pods, anti-affine per
        // node and spread over zones.
        let grouped = |i: usize| {
            let group = format!("g{}", i / 10);
            let selector = json!({"matchLabels": {"group": group}});
            let spec = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}]});
            pod(&format!("grouped-{i}"), json!({"group": group}), "100m", spec)
        };
        run(&mut cache, "groups-of-10", 10_000, &grouped);
    }
}
