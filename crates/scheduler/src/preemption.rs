//! Preemption, as kube-scheduler's DefaultPreemption does it: when a pod fits nowhere, find a node
//! where removing some pods of lower priority makes it fit every filter, removing as few and as
//! unimportant pods as possible.

use crate::cache::{self, Cache, NodeInfo, PodInfo};
use crate::plugins::{filter, PodRequest};
use crate::topology::PodTopology;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A node and the pods to delete from it so the preemptor fits.
#[derive(Debug)]
pub struct Preemption {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Kubernetes' PodEligibleToPreemptOthers: not with `preemptionPolicy: Never`, and not while
/// victims of an earlier preemption are still terminating on the pod's nominated node (it waits
/// for them rather than preempting more).
pub fn eligible(uid: &str, pod: &Pod, cache: &Cache) -> bool {
    if pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return false;
    }
    let priority = cache::priority(pod);
    let nominated = nominated_node(uid, pod, cache).and_then(|n| cache.nodes.get(n));
    !nominated.is_some_and(|node| node.pods.values().any(|p| p.terminating && p.priority < priority))
}

/// The node an earlier preemption nominated for the pod, if any.
pub fn nominated_node<'a>(uid: &str, pod: &'a Pod, cache: &'a Cache) -> Option<&'a str> {
    cache.nominated_node(uid).or_else(|| pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty()))
}

/// The best preemption among `candidates` (nodes whose failures removing pods could cure), if any.
/// Like Kubernetes, it stops after finding 10% of the nodes (at least 100) as candidates.
pub fn find(cache: &Cache, request: &PodRequest, topology: Option<&PodTopology>, candidates: &[&str]) -> Option<Preemption> {
    let enough = (cache.nodes.len() / 10).max(100);
    let empty = BTreeMap::new();
    let incoming_labels = request.pod.metadata.labels.as_ref().unwrap_or(&empty);
    let mut found = Vec::new();
    for name in candidates {
        if found.len() >= enough {
            break;
        }
        let Some(node) = cache.nodes.get(name) else { continue };
        if let Some(victims) = victims_on(request, topology, node, incoming_labels) {
            found.push(Preemption { node: node.name.clone(), victims });
        }
    }
    // Kubernetes' order: the lowest highest-priority victim, then the lowest sum of
    // priorities, then the fewest victims.
    found.into_iter().min_by_key(|p| {
        let highest = p.victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = p.victims.iter().map(|v| i64::from(v.priority) - i64::from(i32::MIN)).sum();
        (highest, sum, p.victims.len())
    })
}

/// The fewest lower-priority pods whose removal lets the pod fit `node`: remove them all, check
/// that the pod fits, then give back as many as still leave room, the most important first.
fn victims_on(request: &PodRequest, topology: Option<&PodTopology>, node: &NodeInfo, incoming_labels: &BTreeMap<String, String>) -> Option<Vec<Arc<PodInfo>>> {
    let mut potential: Vec<Arc<PodInfo>> = node.pods.values().filter(|p| p.priority < request.priority && !p.terminating).cloned().collect();
    if potential.is_empty() {
        return None;
    }
    let mut simulated = node.clone();
    let mut topology = topology.cloned();
    let adjust = |simulated: &mut NodeInfo, topology: &mut Option<PodTopology>, pod: &Arc<PodInfo>, delta: i64| {
        if delta > 0 { simulated.add_pod(pod) } else { simulated.remove_pod(pod) }
        if let Some(topology) = topology.as_mut() {
            topology.adjust(pod, node, incoming_labels, delta);
        }
    };
    for victim in &potential {
        adjust(&mut simulated, &mut topology, victim, -1);
    }
    filter(request, topology.as_ref(), &simulated).ok()?;
    potential.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
    let mut victims = Vec::new();
    for pod in potential {
        adjust(&mut simulated, &mut topology, &pod, 1);
        if filter(request, topology.as_ref(), &simulated).is_err() {
            adjust(&mut simulated, &mut topology, &pod, -1);
            victims.push(pod);
        }
    }
    Some(victims)
}

#[cfg(test)]
mod tests {
    use crate::cache::Cache;
    use crate::schedule::{decide, Decision};
    use crate::test_support::{cache, place, pod};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{json, Value};

    fn with_priority(name: &str, app: &str, cpu: &str, priority: i32, extra: Value) -> Pod {
        let mut spec = json!({"priority": priority});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        pod(name, json!({"app": app}), cpu, spec)
    }

    /// The node and victims a decision would preempt, or None.
    fn preemption(cache: &mut Cache, incoming: &Pod) -> Option<(String, Vec<String>)> {
        match decide(cache, "incoming", incoming) {
            Decision::Unschedulable { preemption, .. } => preemption.map(|p| {
                let mut victims: Vec<String> = p.victims.iter().map(|v| v.name.clone()).collect();
                victims.sort();
                (p.node, victims)
            }),
            Decision::Fits(node) => panic!("fits on {node}"),
        }
    }

    #[test]
    fn victims_are_few_and_of_the_lowest_priority() {
        let mut cache = cache(&[("n1", "a"), ("n2", "a"), ("n3", "a")], 1000);
        place(&mut cache, &with_priority("low", "x", "500m", 1, json!({})), "n1");
        place(&mut cache, &with_priority("mid", "x", "500m", 5, json!({})), "n1");
        place(&mut cache, &with_priority("other", "x", "1000m", 3, json!({})), "n2");
        place(&mut cache, &with_priority("peer", "x", "1000m", 10, json!({})), "n3");
        let incoming = with_priority("incoming", "y", "500m", 10, json!({}));
        // n1 frees enough by evicting "low" alone ("mid" is reprieved); n2's only victim has a
        // higher priority than "low"; n3's pod has the preemptor's own priority and is safe.
        assert_eq!(preemption(&mut cache, &incoming), Some(("n1".into(), vec!["low".into()])));
    }

    #[test]
    fn nobody_is_preempted_for_a_never_policy_or_by_an_equal() {
        let mut cache = cache(&[("n1", "a")], 1000);
        place(&mut cache, &with_priority("low", "x", "1000m", 1, json!({})), "n1");
        let polite = with_priority("polite", "y", "500m", 10, json!({"preemptionPolicy": "Never"}));
        assert_eq!(preemption(&mut cache, &polite), None);
        let equal = with_priority("equal", "y", "500m", 1, json!({}));
        assert_eq!(preemption(&mut cache, &equal), None);
    }

    #[test]
    fn preemption_can_cure_anti_affinity() {
        let mut cache = cache(&[("n1", "a")], 4000);
        place(&mut cache, &with_priority("old-web", "web", "100m", 0, json!({})), "n1");
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        let incoming = with_priority("new-web", "web", "100m", 100, anti);
        assert_eq!(preemption(&mut cache, &incoming), Some(("n1".into(), vec!["old-web".into()])));
    }

    #[test]
    fn a_preemptor_waits_for_its_terminating_victims_instead_of_preempting_again() {
        let mut cache = cache(&[("n1", "a"), ("n2", "a")], 1000);
        let mut victim = with_priority("victim", "x", "1000m", 1, json!({}));
        victim.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        place(&mut cache, &victim, "n1");
        place(&mut cache, &with_priority("bystander", "x", "1000m", 1, json!({})), "n2");
        let incoming = with_priority("incoming", "y", "500m", 10, json!({}));
        cache.nominate("incoming", &incoming, "n1");
        assert_eq!(preemption(&mut cache, &incoming), None, "the bystander on n2 is spared");
        cache.forget("victim");
        assert!(matches!(decide(&mut cache, "incoming", &incoming), Decision::Fits(node) if node == "n1"));
    }

    #[test]
    fn a_nominated_pod_keeps_its_room_from_lower_priorities() {
        let mut cache = cache(&[("n1", "a")], 1000);
        let preemptor = with_priority("preemptor", "y", "600m", 10, json!({}));
        cache.nominate("preemptor", &preemptor, "n1");
        let lower = with_priority("lower", "y", "600m", 5, json!({}));
        assert!(matches!(decide(&mut cache, "lower", &lower), Decision::Unschedulable { .. }));
        let higher = with_priority("higher", "y", "600m", 20, json!({}));
        assert!(matches!(decide(&mut cache, "higher", &higher), Decision::Fits(_)));
        cache.clear_nomination("preemptor");
        assert!(matches!(decide(&mut cache, "lower", &lower), Decision::Fits(_)));
    }
}
