//! Inter-pod affinity and pod topology spread, as kube-scheduler's InterPodAffinity and
//! PodTopologySpread plugins judge them. The counts both need (pods matching a term, per topology
//! domain) are computed once per scheduling attempt from the cache's label index, so filtering a
//! node is a few look-ups of integer domain ids (`cache::Domains`); preemption adjusts the counts
//! as it removes victims.
//!
//! Invariant: a pod without affinity or spread terms, that no existing pod's required
//! anti-affinity could match, costs nothing here (`PodTopology::build` answers `None`).

use crate::cache::{Cache, Domains, KeyId, LabelSource, NamespaceLabels, NodeInfo, PodInfo, ValueId};
use crate::plugins::{node_affinity_matches, set_requirement_matches};
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, PodSpec, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;
// Topology counts are looked up for every node a pod is filtered against: a fast hasher.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

/// A label selector as Kubernetes evaluates it against labels (an empty selector matches all).
pub fn selector_matches(selector: &LabelSelector, labels: &impl LabelSource) -> bool {
    selector.match_labels.iter().flatten().all(|(key, value)| labels.label(key) == Some(value.as_str()))
        && selector.match_expressions.iter().flatten().all(|requirement| {
            let values = requirement.values.as_deref().unwrap_or_default();
            set_requirement_matches(&requirement.operator, values, labels.label(&requirement.key)).unwrap_or(false)
        })
}

/// Which pods a term is about: its label selector within its namespaces.
#[derive(Clone)]
struct PodMatcher<'a> {
    /// None matches no pod (Kubernetes: a nil selector selects nothing).
    selector: Option<&'a LabelSelector>,
    scope: NamespaceScope<'a>,
}

#[derive(Clone)]
enum NamespaceScope<'a> {
    All,
    /// The namespace of the pod whose term it is (a term that names none). Borrowed, like the
    /// others: a matcher is made for each existing pod's term an incoming pod meets.
    Own(&'a str),
    Listed(&'a [String]),
    /// The listed namespaces and those whose labels the selector matches.
    ListedOrSelected(&'a [String], &'a LabelSelector, &'a NamespaceLabels),
}

impl<'a> PodMatcher<'a> {
    /// Kubernetes' rule: the term's `namespaces` plus those its `namespaceSelector` selects (an
    /// empty selector selects all); with neither, the owning pod's namespace.
    fn of_term(term: &'a PodAffinityTerm, own_namespace: &'a str, namespace_labels: &'a NamespaceLabels) -> Self {
        let listed = term.namespaces.as_deref().unwrap_or_default();
        let scope = match &term.namespace_selector {
            Some(selector) if selector.match_labels.as_ref().is_none_or(|m| m.is_empty()) && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty()) => NamespaceScope::All,
            Some(selector) => NamespaceScope::ListedOrSelected(listed, selector, namespace_labels),
            None if listed.is_empty() => NamespaceScope::Own(own_namespace),
            None => NamespaceScope::Listed(listed),
        };
        PodMatcher { selector: term.label_selector.as_ref(), scope }
    }

    fn matches(&self, namespace: &str, labels: &impl LabelSource) -> bool {
        let in_scope = match &self.scope {
            NamespaceScope::All => true,
            NamespaceScope::Own(own) => *own == namespace,
            NamespaceScope::Listed(listed) => listed.iter().any(|n| n == namespace),
            NamespaceScope::ListedOrSelected(listed, selector, namespace_labels) => {
                listed.iter().any(|n| n == namespace) || namespace_labels.get(namespace).is_some_and(|l| selector_matches(selector, l))
            }
        };
        in_scope && self.selector.is_some_and(|s| selector_matches(s, labels))
    }
}

/// A topology domain: a label key and one of its values.
type Domain = (KeyId, ValueId);

/// The node's domain for a topology key (None: the node lacks the label).
fn domain(node: &NodeInfo, key: Option<KeyId>) -> Option<Domain> {
    Some((key?, node.domains.get(key)?))
}

/// Counts per topology domain.
#[derive(Clone, Default, Debug)]
struct TopologyCounts {
    counts: HashMap<Domain, i64>,
    /// The keys counted under.
    keys: Vec<KeyId>,
}

impl TopologyCounts {
    fn add(&mut self, (key, value): Domain, delta: i64) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        *self.counts.entry((key, value)).or_default() += delta;
    }

    fn get(&self, domain: Domain) -> i64 {
        self.counts.get(&domain).copied().unwrap_or(0)
    }

    fn any_positive(&self) -> bool {
        self.counts.values().any(|count| *count > 0)
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The counts of the node's domains, one per key.
    fn of_node<'s>(&'s self, node: &'s NodeInfo) -> impl Iterator<Item = i64> + 's {
        self.keys.iter().filter_map(|key| domain(node, Some(*key))).map(|domain| self.get(domain))
    }
}

#[derive(Clone)]
struct Term<'a> {
    matcher: PodMatcher<'a>,
    key: Option<KeyId>,
}

#[derive(Clone)]
struct Spread<'a> {
    key: Option<KeyId>,
    max_skew: i64,
    hard: bool,
    selector: Option<&'a LabelSelector>,
    min_domains: Option<usize>,
    /// 1 when the incoming pod matches its own selector (it will count once placed).
    self_match: i64,
    /// Matching pods per value of the key (values without any may be absent).
    counts: HashMap<ValueId, i64>,
    /// How many domains the eligible nodes form.
    domains: usize,
    /// The smallest count over the domains (0 when fewer than minDomains domains exist).
    min: i64,
}

impl Spread<'_> {
    fn refresh_min(&mut self) {
        let too_few = self.min_domains.is_some_and(|m| self.domains < m);
        let populated = self.counts.values().filter(|c| **c > 0).count();
        self.min = if too_few || populated < self.domains { 0 } else { self.counts.values().copied().min().unwrap_or(0) };
    }
}

/// Why inter-pod affinity or topology spread rejects a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyFailure {
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
    SpreadMissingLabel,
    Spread,
}

/// One scheduling attempt's view of inter-pod affinity and topology spread for the incoming pod.
#[derive(Clone)]
pub struct PodTopology<'a> {
    spec: &'a PodSpec,
    namespace: &'a str,
    namespace_labels: &'a NamespaceLabels,
    domains: &'a Domains,
    required_affinity: Vec<Term<'a>>,
    required_anti_affinity: Vec<Term<'a>>,
    /// Preferred terms with their weight (negative for anti-affinity).
    preferred: Vec<(i64, Term<'a>)>,
    spread: Vec<Spread<'a>>,
    /// Pods matching all required affinity terms, per domain of each term's key.
    affinity_counts: TopologyCounts,
    /// Pods matching a required anti-affinity term, per domain of that term's key.
    anti_affinity_counts: TopologyCounts,
    /// Existing pods whose required anti-affinity matches the incoming pod, per domain.
    existing_anti_affinity_counts: TopologyCounts,
    preferred_weights: TopologyCounts,
    /// The incoming pod matches all its own required affinity terms.
    matches_own_affinity: bool,
    /// Kubernetes' special case: the first pod of a group whose affinity selects itself may go
    /// anywhere its topology keys exist, as long as no pod matches its terms anywhere.
    may_start_group: bool,
    /// [`Self::filter`]'s verdict read off the counts as built (None once preemption adjusts
    /// them: its simulations ask `filter`).
    verdicts: Option<Verdicts>,
}

/// Whether a node passes the topology filter, by its values of the keys the pod's terms and
/// constraints name. The search for feasible nodes asks this of hundreds of nodes per pod: an
/// indexed load per key instead of a hash look-up per term.
#[derive(Clone, Debug)]
struct Verdicts {
    /// Some term or constraint needs a key no node has ever carried: no node passes.
    none_fits: bool,
    keys: Vec<KeyVerdicts>,
}

#[derive(Clone, Debug)]
struct KeyVerdicts {
    key: KeyId,
    /// By value id; values interned after the attempt began have no counts: `uncounted`.
    by_value: Vec<bool>,
    uncounted: bool,
    /// A node without the key.
    absent: bool,
}

impl Verdicts {
    fn fits(&self, node: &NodeInfo) -> bool {
        !self.none_fits
            && self.keys.iter().all(|k| match node.domains.get(Some(k.key)) {
                Some(value) => k.by_value.get(value as usize).copied().unwrap_or(k.uncounted),
                None => k.absent,
            })
    }
}

impl<'a> PodTopology<'a> {
    /// The attempt's counts, or None when nothing here can affect the pod.
    pub fn build(cache: &'a Cache, pod: &'a Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.as_ref();
        let affinity = spec.affinity.as_ref();
        let namespace_labels = &cache.namespaces;
        let domains = &cache.domains;
        let term = |t: &'a PodAffinityTerm| Term { matcher: PodMatcher::of_term(t, namespace, namespace_labels), key: domains.key(&t.topology_key) };
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_affinity: Vec<Term> = pod_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()).into_iter().flatten().map(term).collect();
        let required_anti_affinity: Vec<Term> = pod_anti_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()).into_iter().flatten().map(term).collect();
        let preferred_affinity = pod_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()).into_iter().flatten().map(|w| (i64::from(w.weight), term(&w.pod_affinity_term)));
        let preferred_anti = pod_anti_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()).into_iter().flatten().map(|w| (-i64::from(w.weight), term(&w.pod_affinity_term)));
        let preferred: Vec<(i64, Term)> = preferred_affinity.chain(preferred_anti).collect();
        let empty = BTreeMap::new();
        let own_labels = labels.unwrap_or(&empty);
        let spread: Vec<Spread> = spec.topology_spread_constraints.iter().flatten().map(|c| spread_of(c, own_labels, domains)).collect();
        let repelling = cache.anti_affinity.could_match(own_labels);
        let attracting = cache.scoring_terms.could_match(own_labels);
        if required_affinity.is_empty() && required_anti_affinity.is_empty() && preferred.is_empty() && spread.is_empty() && repelling.is_empty() && attracting.is_empty() {
            return None;
        }
        let matches_own_affinity = required_affinity.iter().all(|t| t.matcher.matches(namespace, own_labels));
        let mut topology = PodTopology {
            spec,
            namespace,
            namespace_labels,
            domains,
            required_affinity,
            required_anti_affinity,
            preferred,
            spread,
            affinity_counts: TopologyCounts::default(),
            anti_affinity_counts: TopologyCounts::default(),
            existing_anti_affinity_counts: TopologyCounts::default(),
            preferred_weights: TopologyCounts::default(),
            matches_own_affinity,
            may_start_group: false,
            verdicts: None,
        };
        topology.add_spread_domains(cache);
        for pod in topology.candidates(cache) {
            if let Some(node) = cache.nodes.get(&pod.node) {
                topology.count_pod(pod, node, 1);
            }
        }
        for uid in repelling {
            if let Some(pod) = cache.pods.get(uid) {
                if let Some(node) = cache.nodes.get(&pod.node) {
                    topology.count_existing_anti_affinity(pod, node, pod.namespace.as_str(), own_labels, 1);
                }
            }
        }
        // Symmetry in scoring: existing pods' terms that match the incoming pod weigh too.
        for uid in attracting {
            let Some(pod) = cache.pods.get(uid) else { continue };
            let Some(node) = cache.nodes.get(&pod.node) else { continue };
            for (weight, term) in &pod.scoring_terms {
                let matcher = PodMatcher::of_term(term, &pod.namespace, namespace_labels);
                if let Some(domain) = domain(node, domains.key(&term.topology_key)).filter(|_| matcher.matches(namespace, own_labels)) {
                    topology.preferred_weights.add(domain, *weight);
                }
            }
        }
        topology.refresh_derived();
        topology.verdicts = Some(topology.tabulate());
        Some(topology)
    }

    /// The domains each constraint ranges over: the values of its key on eligible nodes, which
    /// pass the pod's node selector and required node affinity (nodeAffinityPolicy Honor) and
    /// carry every constraint's topology key. Without node affinity and with one key, that is
    /// every value of the key (the cache knows them); otherwise the nodes are scanned.
    fn add_spread_domains(&mut self, cache: &Cache) {
        let Some(first) = self.spread.first().map(|c| c.key) else { return };
        let one_key = self.spread.iter().all(|c| c.key == first);
        let spec = self.spec;
        let node_affinity = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
            || spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).is_some_and(|a| a.required_during_scheduling_ignored_during_execution.is_some());
        if one_key && !node_affinity {
            let domains = first.map_or(0, |key| cache.domains.of_key(key));
            self.spread.iter_mut().for_each(|c| c.domains = domains);
            return;
        }
        for node in cache.nodes.iter() {
            if self.spread_eligible(node) {
                for constraint in &mut self.spread {
                    if let Some(value) = node.domains.get(constraint.key) {
                        constraint.counts.entry(value).or_default();
                    }
                }
            }
        }
        self.spread.iter_mut().for_each(|c| c.domains = c.counts.len());
    }

    fn spread_eligible(&self, node: &NodeInfo) -> bool {
        self.spread.iter().all(|c| node.domains.get(c.key).is_some()) && node_affinity_matches(self.spec, node)
    }

    /// The pods any of the pod's selectors can match: through the label index when every
    /// selector names a label (`matchLabels`, or an `In` expression), else all pods.
    fn candidates<'c>(&self, cache: &'c Cache) -> Vec<&'c Arc<PodInfo>> {
        let selectors = self
            .required_affinity
            .iter()
            .chain(&self.required_anti_affinity)
            .chain(self.preferred.iter().map(|(_, t)| t))
            .map(|t| t.matcher.selector)
            .chain(self.spread.iter().map(|s| s.selector));
        let mut sources: Vec<&'c HashSet<Arc<str>>> = Vec::new();
        for selector in selectors.flatten() {
            let narrowest = selector.match_labels.iter().flatten().map(|(key, value)| cache.labels.with_label(key, value)).min_by_key(|uids| uids.map_or(0, HashSet::len));
            let with_value_in = || {
                let requirement = selector.match_expressions.iter().flatten().find(|r| r.operator == "In")?;
                Some(requirement.values.iter().flatten().filter_map(|value| cache.labels.with_label(&requirement.key, value)).collect::<Vec<_>>())
            };
            let matching: Vec<&HashSet<Arc<str>>> = match (narrowest, with_value_in()) {
                (Some(uids), _) => uids.into_iter().collect(),
                (None, Some(uids)) => uids,
                // No label to look up (only other expressions, or an empty selector): every pod.
                (None, None) => return cache.pods.values().collect(),
            };
            for uids in matching {
                if !sources.iter().any(|known| std::ptr::eq(*known, uids)) {
                    sources.push(uids);
                }
            }
        }
        let lookup = |uid: &Arc<str>| cache.pods.get(uid);
        match sources.as_slice() {
            [single] => single.iter().filter_map(lookup).collect(),
            _ => {
                let mut seen = HashSet::new();
                sources.iter().flat_map(|uids| uids.iter()).filter(|uid| seen.insert(&***uid)).filter_map(lookup).collect()
            }
        }
    }

    /// Adds (`delta` 1) or removes (-1) an existing pod's weight in the incoming pod's terms.
    fn count_pod(&mut self, pod: &PodInfo, node: &NodeInfo, delta: i64) {
        let namespace = pod.namespace.as_str();
        if !self.required_affinity.is_empty() && self.required_affinity.iter().all(|t| t.matcher.matches(namespace, &pod.labels)) {
            for term in &self.required_affinity {
                if let Some(domain) = domain(node, term.key) {
                    self.affinity_counts.add(domain, delta);
                }
            }
        }
        for term in &self.required_anti_affinity {
            if let Some(domain) = domain(node, term.key).filter(|_| term.matcher.matches(namespace, &pod.labels)) {
                self.anti_affinity_counts.add(domain, delta);
            }
        }
        for (weight, term) in &self.preferred {
            if let Some(domain) = domain(node, term.key).filter(|_| term.matcher.matches(namespace, &pod.labels)) {
                self.preferred_weights.add(domain, weight * delta);
            }
        }
        // Terminating pods do not count for spreading (as in Kubernetes).
        if !self.spread.is_empty() && !pod.terminating && namespace == self.namespace && self.spread_eligible(node) {
            for constraint in &mut self.spread {
                if constraint.selector.is_some_and(|s| selector_matches(s, &pod.labels)) {
                    if let Some(value) = node.domains.get(constraint.key) {
                        *constraint.counts.entry(value).or_default() += delta;
                    }
                }
            }
        }
    }

    /// Counts an existing pod's required anti-affinity terms that match the incoming pod.
    fn count_existing_anti_affinity(&mut self, pod: &PodInfo, node: &NodeInfo, pod_namespace: &str, incoming_labels: &BTreeMap<String, String>, delta: i64) {
        for term in &pod.required_anti_affinity {
            let matcher = PodMatcher::of_term(term, pod_namespace, self.namespace_labels);
            if let Some(domain) = domain(node, self.domains.key(&term.topology_key)).filter(|_| matcher.matches(self.namespace, incoming_labels)) {
                self.existing_anti_affinity_counts.add(domain, delta);
            }
        }
    }

    /// Takes a pod away from (`delta` -1) or gives it back to (1) the counts, as preemption
    /// simulates removing victims from `node`.
    pub fn adjust(&mut self, pod: &PodInfo, node: &NodeInfo, incoming_labels: &BTreeMap<String, String>, delta: i64) {
        self.count_pod(pod, node, delta);
        self.count_existing_anti_affinity(pod, node, pod.namespace.as_str(), incoming_labels, delta);
        self.refresh_derived();
        self.verdicts = None;
    }

    /// [`Self::filter`]'s verdicts by key and value. Each key's rules (the terms and hard
    /// constraints naming it) are judged once for a value with no counts, which is most values,
    /// and once for each value that has some.
    fn tabulate(&self) -> Verdicts {
        let affinity_keys = || self.required_affinity.iter().map(|t| t.key);
        let hard_spread = || self.spread.iter().filter(|c| c.hard);
        let none_fits = affinity_keys().any(|k| k.is_none()) || hard_spread().any(|c| c.key.is_none());
        let mut keys: Vec<KeyId> = affinity_keys().chain(self.required_anti_affinity.iter().map(|t| t.key)).chain(hard_spread().map(|c| c.key)).flatten().collect();
        keys.extend(&self.existing_anti_affinity_counts.keys);
        keys.sort_unstable();
        keys.dedup();
        let keys = keys
            .into_iter()
            .map(|key| {
                let uncounted = self.value_fits(key, None);
                let mut by_value = vec![uncounted; self.domains.values_of_key(key)];
                let counts = [&self.affinity_counts, &self.anti_affinity_counts, &self.existing_anti_affinity_counts];
                let counted = counts.iter().flat_map(|c| c.counts.keys()).filter(|(k, _)| *k == key).map(|(_, value)| *value);
                let spread_counted = hard_spread().filter(|c| c.key == Some(key)).flat_map(|c| c.counts.keys().copied());
                for value in counted.chain(spread_counted) {
                    if let Some(verdict) = by_value.get_mut(value as usize) {
                        *verdict = self.value_fits(key, Some(value));
                    }
                }
                let absent = !affinity_keys().any(|k| k == Some(key)) && !hard_spread().any(|c| c.key == Some(key));
                KeyVerdicts { key, by_value, uncounted, absent }
            })
            .collect();
        Verdicts { none_fits, keys }
    }

    /// [`Self::filter`]'s rules naming `key`, for a node whose value of it is `value` (None: a
    /// value without counts).
    fn value_fits(&self, key: KeyId, value: Option<ValueId>) -> bool {
        let count = |counts: &TopologyCounts| value.map_or(0, |value| counts.get((key, value)));
        let affinity_holds = self.may_start_group || count(&self.affinity_counts) > 0;
        let names_key = |term: &Term| term.key == Some(key);
        (affinity_holds || !self.required_affinity.iter().any(names_key))
            && !(self.required_anti_affinity.iter().any(names_key) && count(&self.anti_affinity_counts) > 0)
            && count(&self.existing_anti_affinity_counts) <= 0
            && self.spread.iter().filter(|c| c.hard && c.key == Some(key)).all(|c| {
                let matching = value.and_then(|value| c.counts.get(&value)).copied().unwrap_or(0);
                matching + c.self_match - c.min <= c.max_skew
            })
    }

    /// Whether [`Self::filter`] passes the node, without saying why not.
    pub fn fits(&self, node: &NodeInfo) -> bool {
        match &self.verdicts {
            Some(verdicts) => verdicts.fits(node),
            None => self.filter(node).is_ok(),
        }
    }

    /// Recomputes what the filter reads off the counts as a whole.
    fn refresh_derived(&mut self) {
        self.spread.iter_mut().for_each(Spread::refresh_min);
        self.may_start_group = self.matches_own_affinity && !self.affinity_counts.any_positive();
    }

    /// Kubernetes' InterPodAffinity filter then PodTopologySpread filter, for one node.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), TopologyFailure> {
        if !self.required_affinity.is_empty() {
            let mut pods_exist = true;
            for term in &self.required_affinity {
                match domain(node, term.key) {
                    Some(domain) => pods_exist &= self.affinity_counts.get(domain) > 0,
                    None => return Err(TopologyFailure::PodAffinity),
                }
            }
            if !pods_exist && !self.may_start_group {
                return Err(TopologyFailure::PodAffinity);
            }
        }
        let anti_affinity_hit = self.required_anti_affinity.iter().any(|t| domain(node, t.key).is_some_and(|d| self.anti_affinity_counts.get(d) > 0));
        if anti_affinity_hit {
            return Err(TopologyFailure::PodAntiAffinity);
        }
        if self.existing_anti_affinity_counts.of_node(node).any(|count| count > 0) {
            return Err(TopologyFailure::ExistingAntiAffinity);
        }
        for constraint in self.spread.iter().filter(|c| c.hard) {
            let Some(value) = node.domains.get(constraint.key) else { return Err(TopologyFailure::SpreadMissingLabel) };
            let matching = constraint.counts.get(&value).copied().unwrap_or(0);
            if matching + constraint.self_match - constraint.min > constraint.max_skew {
                return Err(TopologyFailure::Spread);
            }
        }
        Ok(())
    }

    /// Raw preferred inter-pod affinity score (the sum of matching terms' weights in the node's
    /// domains); normalised over the feasible nodes by the caller.
    pub fn affinity_score(&self, node: &NodeInfo) -> i64 {
        self.preferred_weights.of_node(node).sum()
    }

    /// Raw ScheduleAnyway spread score: matching pods in the node's domains (fewer is better);
    /// None when the node lacks a soft constraint's key (it ranks last).
    pub fn spread_score(&self, node: &NodeInfo) -> Option<i64> {
        let mut total = 0;
        for constraint in self.spread.iter().filter(|c| !c.hard) {
            total += constraint.counts.get(&node.domains.get(constraint.key)?).copied().unwrap_or(0);
        }
        Some(total)
    }

    pub fn has_soft_spread(&self) -> bool {
        self.spread.iter().any(|c| !c.hard)
    }

    pub fn has_preferred(&self) -> bool {
        !self.preferred_weights.is_empty()
    }
}

fn spread_of<'a>(constraint: &'a TopologySpreadConstraint, own_labels: &BTreeMap<String, String>, domains: &Domains) -> Spread<'a> {
    let selector = constraint.label_selector.as_ref();
    let self_match = selector.is_some_and(|s| selector_matches(s, own_labels));
    Spread {
        key: domains.key(&constraint.topology_key),
        max_skew: i64::from(constraint.max_skew),
        hard: constraint.when_unsatisfiable != "ScheduleAnyway",
        selector,
        min_domains: constraint.min_domains.and_then(|m| usize::try_from(m).ok()),
        self_match: i64::from(self_match),
        counts: HashMap::new(),
        domains: 0,
        min: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{decide, Decision};
    use crate::test_support::{cache, place, pod};
    use serde_json::{json, Value};

    fn anti_affinity(app: &str, key: &str) -> Value {
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}})
    }

    fn affinity(app: &str, key: &str) -> Value {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}})
    }

    fn spread(app: &str, when: &str, extra: Value) -> Value {
        let mut constraint = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": app}}});
        constraint.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"topologySpreadConstraints": [constraint]})
    }

    /// The verdict per node, in node order.
    fn verdicts(cache: &Cache, incoming: &Pod) -> Vec<Result<(), TopologyFailure>> {
        let topology = PodTopology::build(cache, incoming).expect("the pod has terms");
        let verdicts: Vec<_> = cache.nodes.iter().map(|node| topology.filter(node)).collect();
        let fits: Vec<bool> = cache.nodes.iter().map(|node| topology.fits(node)).collect();
        assert_eq!(fits, verdicts.iter().map(Result::is_ok).collect::<Vec<_>>(), "the tabulated verdicts agree with the filter");
        verdicts
    }

    const THREE_NODES: [(&str, &str); 3] = [("n1", "a"), ("n2", "a"), ("n3", "b")];

    #[test]
    fn required_anti_affinity_keeps_matching_pods_out_of_the_domain() {
        let mut cache = cache(&THREE_NODES, 4000);
        place(&mut cache, &pod("web-1", json!({"app": "web"}), "100m", json!({})), "n1");
        let by_host = pod("web-2", json!({"app": "web"}), "100m", anti_affinity("web", "kubernetes.io/hostname"));
        assert_eq!(verdicts(&cache, &by_host), [Err(TopologyFailure::PodAntiAffinity), Ok(()), Ok(())]);
        let by_zone = pod("web-2", json!({"app": "web"}), "100m", anti_affinity("web", "zone"));
        assert_eq!(verdicts(&cache, &by_zone), [Err(TopologyFailure::PodAntiAffinity), Err(TopologyFailure::PodAntiAffinity), Ok(())]);
        // Another namespace's pods are not the term's business unless it names the namespace.
        let mut elsewhere = by_zone.clone();
        elsewhere.metadata.namespace = Some("other".into());
        assert_eq!(verdicts(&cache, &elsewhere), [Ok(()), Ok(()), Ok(())]);
    }

    #[test]
    fn terms_reach_namespaces_by_list_and_by_selector() {
        let mut cache = cache(&THREE_NODES, 4000);
        let namespace = |name: &str, labels: Value| serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        cache.set_namespace(&namespace("team-a", json!({"team": "a"})));
        cache.set_namespace(&namespace("team-b", json!({"team": "b"})));
        let mut web_of = |name: &str, ns: &str, node: &str| {
            let mut existing = pod(name, json!({"app": "web"}), "100m", json!({}));
            existing.metadata.namespace = Some(ns.into());
            place(&mut cache, &existing, node);
        };
        web_of("web-a", "team-a", "n1");
        web_of("web-b", "team-b", "n3");
        let with_scope = |scope: Value| {
            let mut term = json!({"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"});
            term.as_object_mut().unwrap().extend(scope.as_object().unwrap().clone());
            pod("incoming", json!({"app": "web"}), "100m", json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}))
        };
        let hit = Err(TopologyFailure::PodAntiAffinity);
        assert_eq!(verdicts(&cache, &with_scope(json!({}))), [Ok(()), Ok(()), Ok(())], "only its own namespace by default");
        assert_eq!(verdicts(&cache, &with_scope(json!({"namespaces": ["team-b"]}))), [Ok(()), Ok(()), hit]);
        assert_eq!(verdicts(&cache, &with_scope(json!({"namespaceSelector": {"matchLabels": {"team": "a"}}}))), [hit, Ok(()), Ok(())]);
        assert_eq!(verdicts(&cache, &with_scope(json!({"namespaceSelector": {}}))), [hit, Ok(()), hit], "an empty selector: all namespaces");
    }

    #[test]
    fn an_existing_pods_anti_affinity_repels_the_incoming_pod() {
        let mut cache = cache(&THREE_NODES, 4000);
        place(&mut cache, &pod("loner", json!({"app": "loner"}), "100m", anti_affinity("db", "zone")), "n1");
        let db = pod("db", json!({"app": "db"}), "100m", json!({}));
        let failure = Err(TopologyFailure::ExistingAntiAffinity);
        assert_eq!(verdicts(&cache, &db), [failure, failure, Ok(())]);
        let web = pod("web", json!({"app": "web"}), "100m", json!({}));
        // A pod the term cannot match skips the work entirely; so does every pod once it is gone.
        assert!(PodTopology::build(&cache, &web).is_none());
        cache.forget("loner");
        assert!(PodTopology::build(&cache, &db).is_none());
    }

    #[test]
    fn required_affinity_follows_matching_pods_and_lets_a_group_start() {
        let mut cache = cache(&THREE_NODES, 4000);
        let first_web = pod("web-1", json!({"app": "web"}), "100m", affinity("web", "zone"));
        assert_eq!(verdicts(&cache, &first_web), [Ok(()), Ok(()), Ok(())], "the first pod of a self-affine group goes anywhere");
        let api = pod("api", json!({"app": "api"}), "100m", affinity("web", "zone"));
        let failure = Err(TopologyFailure::PodAffinity);
        assert_eq!(verdicts(&cache, &api), [failure, failure, failure], "no web pod anywhere to be near");
        place(&mut cache, &first_web, "n3");
        assert_eq!(verdicts(&cache, &api), [failure, failure, Ok(())]);
        let second_web = pod("web-2", json!({"app": "web"}), "100m", affinity("web", "zone"));
        assert_eq!(verdicts(&cache, &second_web), [failure, failure, Ok(())]);
    }

    #[test]
    fn selectors_by_expression_count_the_same_pods() {
        let mut cache = cache(&THREE_NODES, 4000);
        place(&mut cache, &pod("web-1", json!({"app": "web"}), "100m", json!({})), "n1");
        place(&mut cache, &pod("api-1", json!({"app": "api"}), "100m", json!({})), "n3");
        let with_selector = |selector: Value| {
            let term = json!({"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"});
            pod("incoming", json!({}), "100m", json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}))
        };
        let hit = Err(TopologyFailure::PodAntiAffinity);
        let by_in = with_selector(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}));
        assert_eq!(verdicts(&cache, &by_in), [hit, Ok(()), hit]);
        let by_not_in = with_selector(json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}));
        assert_eq!(verdicts(&cache, &by_not_in), [Ok(()), Ok(()), hit]);
    }

    #[test]
    fn spread_do_not_schedule_bounds_the_skew() {
        let mut cache = cache(&[("n1", "a"), ("n2", "b"), ("n3", "c")], 4000);
        place(&mut cache, &pod("web-1", json!({"app": "web"}), "100m", json!({})), "n1");
        place(&mut cache, &pod("web-2", json!({"app": "web"}), "100m", json!({})), "n2");
        let incoming = pod("web-3", json!({"app": "web"}), "100m", spread("web", "DoNotSchedule", json!({})));
        let failure = Err(TopologyFailure::Spread);
        assert_eq!(verdicts(&cache, &incoming), [failure, failure, Ok(())]);
        // A node without the topology key cannot take the pod at all.
        cache.set_node(&crate::test_support::node("bare", json!({}), 4000));
        assert_eq!(verdicts(&cache, &incoming)[0], Err(TopologyFailure::SpreadMissingLabel));
    }

    #[test]
    fn spread_counts_only_domains_the_pod_may_use_unless_min_domains_asks_for_more() {
        let mut cache = cache(&[("n1", "a"), ("n2", "b"), ("n3", "c")], 4000);
        place(&mut cache, &pod("web-1", json!({"app": "web"}), "100m", json!({})), "n1");
        place(&mut cache, &pod("web-2", json!({"app": "web"}), "100m", json!({})), "n2");
        let not_c = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["c"]}]}]}}});
        let mut spec = spread("web", "DoNotSchedule", json!({}));
        spec["affinity"] = not_c.clone();
        // Zone c (empty) is not the pod's to use, so the minimum is 1 and zones a and b are fine.
        let honoured = pod("web-3", json!({"app": "web"}), "100m", spec);
        assert_eq!(&verdicts(&cache, &honoured)[..2], [Ok(()), Ok(())]);
        let mut spec = spread("web", "DoNotSchedule", json!({"minDomains": 3}));
        spec["affinity"] = not_c;
        let wants_three = pod("web-3", json!({"app": "web"}), "100m", spec);
        assert_eq!(&verdicts(&cache, &wants_three)[..2], [Err(TopologyFailure::Spread), Err(TopologyFailure::Spread)]);
    }

    #[test]
    fn schedule_anyway_and_preferred_affinity_steer_the_choice() {
        let mut cache = cache(&[("n1", "a"), ("n2", "b")], 4000);
        for i in 0..3 {
            place(&mut cache, &pod(&format!("web-{i}"), json!({"app": "web"}), "0", json!({})), "n1");
        }
        for attempt in 0..4 {
            let soft = pod(&format!("soft-{attempt}"), json!({"app": "web"}), "0", spread("web", "ScheduleAnyway", json!({})));
            assert!(matches!(decide(&mut cache, "soft", &soft), Decision::Fits(node) if node == "n2"));
        }
        // Symmetry: an existing pod's preferred affinity draws matching pods to it too.
        let mut cache = crate::test_support::cache(&[("n1", "a"), ("n2", "b")], 4000);
        let drawing = json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "client"}}, "topologyKey": "kubernetes.io/hostname"}}]}}});
        place(&mut cache, &pod("server", json!({"app": "server"}), "0", drawing), "n1");
        for attempt in 0..4 {
            let client = pod(&format!("client-{attempt}"), json!({"app": "client"}), "0", json!({}));
            assert!(matches!(decide(&mut cache, "client", &client), Decision::Fits(node) if node == "n1"));
        }
        let mut cache = crate::test_support::cache(&[("n1", "a"), ("n2", "b")], 4000);
        place(&mut cache, &pod("cache-1", json!({"app": "cache"}), "0", json!({})), "n2");
        let near = json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}}]}}});
        for attempt in 0..4 {
            let incoming = pod(&format!("near-{attempt}"), json!({"app": "web"}), "0", near.clone());
            assert!(matches!(decide(&mut cache, "near", &incoming), Decision::Fits(node) if node == "n2"));
        }
    }
}
