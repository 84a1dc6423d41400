//! Addresses allocated on create: cluster IPs and node ports for Services, pod networks
//! (spec.podCIDR) for Nodes.
//!
//! Invariant: allocation and the create that stores it run under one lock, and the lock is held
//! until the watch cache has seen the new object, so two objects never get the same address.

use tugboat_api::meta::Pointer;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tugboat_api::{meta, validation::FieldError, ResourceType};
use tugboat_store::Revision;

use crate::cache::Cache;
use crate::error::{ApiError, ApiResult, Target};
use crate::keys;

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// An IPv4 network, e.g. the service network 10.43.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (ip, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR like 10.43.0.0/16"))?;
        let base: Ipv4Addr = ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p)).ok_or_else(|| format!("prefix /{prefix} must be between /8 and /30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Self { base: Ipv4Addr::from(u32::from(base) & mask), prefix })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & (u32::MAX << (32 - self.prefix)) == u32::from(self.base)
    }

    /// The address of the `kubernetes` Service: the first usable one.
    pub fn api_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }
}

/// Kubernetes' default `--node-cidr-mask-size`: a /24 (254 pod addresses) per Node.
pub const DEFAULT_NODE_CIDR_PREFIX: u8 = 24;

pub struct Allocator {
    service_cidr: Ipv4Cidr,
    cluster_cidr: Ipv4Cidr,
    node_cidr_prefix: u8,
    lock: Arc<Mutex<()>>,
    /// Each Node's pod network (as a block number of the cluster network) as of a revision:
    /// registering node N+1 must not decode N Nodes.
    known_pod_cidrs: std::sync::Mutex<HashMap<String, (Revision, Option<u32>)>>,
}

/// Held from allocation until the created Service is visible in the cache.
pub struct Allocation(#[allow(dead_code)] OwnedMutexGuard<()>);

impl Allocation {
    pub async fn hold_until_cached(self, cache: &Cache, revision: Revision) {
        // On timeout the cache is badly behind; later allocations then see the store's state
        // late, which the uniqueness check on create would still catch as a duplicate.
        let _ = cache.wait_for(revision, Duration::from_secs(5)).await;
    }
}

/// The cluster network cut into blocks of `prefix` bits, one per Node.
#[derive(Clone, Copy)]
struct NodeBlocks {
    base: u32,
    prefix: u8,
    count: u32,
}

impl NodeBlocks {
    fn new(cluster: Ipv4Cidr, prefix: u8) -> Self {
        let prefix = prefix.max(cluster.prefix);
        Self { base: u32::from(cluster.base), prefix, count: 1u32 << (prefix - cluster.prefix) }
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The block number of a podCIDR, if it is one of these blocks.
    fn number(&self, cidr: &str) -> Option<u32> {
        let cidr = Ipv4Cidr::parse(cidr).ok()?;
        let offset = u32::from(cidr.base).checked_sub(self.base)?;
        (cidr.prefix == self.prefix && offset.is_multiple_of(self.size()) && offset / self.size() < self.count).then_some(offset / self.size())
    }

    fn cidr(&self, number: u32) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base + number * self.size()), self.prefix)
    }

    /// The first block not in `used`.
    fn first_free(&self, used: &HashSet<u32>) -> Option<String> {
        (0..self.count).find(|n| !used.contains(n)).map(|n| self.cidr(n))
    }
}

impl Allocator {
    pub fn new(service_cidr: Ipv4Cidr, cluster_cidr: Ipv4Cidr, node_cidr_prefix: u8) -> Self {
        Self { service_cidr, cluster_cidr, node_cidr_prefix: node_cidr_prefix.min(30), lock: Arc::new(Mutex::new(())), known_pod_cidrs: Default::default() }
    }

    /// Fills in what a new object needs allocated: a Service's cluster IP and node ports
    /// (checking requested ones are free), a Node's pod network.
    pub async fn assign(&self, resource: &'static ResourceType, object: &mut Value, cache: &Cache, dry_run: bool) -> ApiResult<Option<Allocation>> {
        if !resource.group.is_empty() {
            return Ok(None);
        }
        let allocated = match resource.kind {
            "Service" => {
                let guard = self.lock.clone().lock_owned().await;
                self.assign_service(resource, object, cache)?;
                guard
            }
            "Node" if meta::str_at(object, "/spec/podCIDR").is_empty() => {
                let guard = self.lock.clone().lock_owned().await;
                self.assign_pod_cidr(resource, object, cache)?;
                guard
            }
            _ => return Ok(None),
        };
        Ok(if dry_run { None } else { Some(Allocation(allocated)) })
    }

    /// The first node-sized block of the cluster network that no other Node holds.
    fn assign_pod_cidr(&self, resource: &'static ResourceType, node: &mut Value, cache: &Cache) -> ApiResult<()> {
        let snapshot = cache.resource(resource).snapshot(&keys::resource_prefix(resource), cache.applied());
        let blocks = NodeBlocks::new(self.cluster_cidr, self.node_cidr_prefix);
        let mut known = self.known_pod_cidrs.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = HashMap::with_capacity(snapshot.objects.len());
        for other in &snapshot.objects {
            let number = match known.remove(other.name()) {
                Some((revision, number)) if revision == other.revision => number,
                _ => blocks.number(meta::str_at(&other.value(), "/spec/podCIDR")),
            };
            current.insert(other.name().to_owned(), (other.revision, number));
        }
        *known = current;
        let used: HashSet<u32> = known.values().filter_map(|(_, number)| *number).collect();
        drop(known);
        let Some(cidr) = blocks.first_free(&used) else {
            let name = meta::name(node).to_owned();
            let message = format!("no free pod network left in the cluster network {}/{}; start the server with a larger --cluster-cidr (or a larger --node-cidr-mask-size)", self.cluster_cidr.base, self.cluster_cidr.prefix);
            return Err(ApiError::invalid(&Target { resource, name: &name }, &[FieldError { reason: "FieldValueInvalid", field: "spec.podCIDR".into(), message }]));
        };
        let spec = meta::object_field_mut(node, "spec");
        spec.insert("podCIDR".into(), cidr.clone().into());
        spec.insert("podCIDRs".into(), serde_json::json!([cidr]));
        Ok(())
    }

    fn assign_service(&self, resource: &'static ResourceType, service: &mut Value, cache: &Cache) -> ApiResult<()> {
        let snapshot = cache.resource(resource).snapshot(&keys::resource_prefix(resource), cache.applied());
        let mut used_ips = HashSet::new();
        let mut used_ports = HashSet::new();
        for other in &snapshot.objects {
            let other = other.value();
            if let Ok(ip) = meta::str_at(&other, "/spec/clusterIP").parse::<Ipv4Addr>() {
                used_ips.insert(ip);
            }
            for port in other.at("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
                if let Some(p) = port.get("nodePort").and_then(Value::as_u64) {
                    used_ports.insert(p);
                }
            }
        }
        let name = meta::name(service).to_owned();
        let invalid = |field: &str, message: String| {
            ApiError::invalid(&Target { resource, name: &name }, &[FieldError { reason: "FieldValueInvalid", field: field.into(), message }])
        };
        let service_type = meta::str_at(service, "/spec/type").to_owned();
        let requested = meta::str_at(service, "/spec/clusterIP").to_owned();
        if service_type != "ExternalName" && requested != "None" {
            let ip = if requested.is_empty() {
                self.free_ip(&used_ips).ok_or_else(|| invalid("spec.clusterIP", "range is full: no free cluster IP".into()))?
            } else {
                let ip: Ipv4Addr = requested.parse().map_err(|_| invalid("spec.clusterIP", format!("Invalid value: {requested:?}: must be a valid IP address")))?;
                if !self.service_cidr.contains(ip) {
                    return Err(invalid("spec.clusterIP", format!("Invalid value: {requested:?}: provided IP is not in the valid range. The range of valid IPs is {}/{}", self.service_cidr.base, self.service_cidr.prefix)));
                }
                if used_ips.contains(&ip) {
                    return Err(invalid("spec.clusterIP", format!("Invalid value: {requested:?}: provided IP is already allocated")));
                }
                ip
            };
            let spec = meta::object_field_mut(service, "spec");
            spec.insert("clusterIP".into(), ip.to_string().into());
            spec.insert("clusterIPs".into(), serde_json::json!([ip.to_string()]));
        } else if requested == "None" {
            meta::object_field_mut(service, "spec").insert("clusterIPs".into(), serde_json::json!(["None"]));
        }
        if matches!(service_type.as_str(), "NodePort" | "LoadBalancer") {
            let mut next_port = *NODE_PORT_RANGE.start();
            if let Some(Value::Array(ports)) = service.at_mut("/spec/ports") {
                for (i, port) in ports.iter_mut().enumerate() {
                    match port.get("nodePort").and_then(Value::as_u64) {
                        Some(p) if used_ports.contains(&p) => {
                            return Err(invalid(&format!("spec.ports[{i}].nodePort"), format!("Invalid value: {p}: provided port is already allocated")));
                        }
                        Some(p) => {
                            used_ports.insert(p);
                        }
                        None => {
                            while used_ports.contains(&u64::from(next_port)) {
                                next_port = next_port.checked_add(1).filter(|p| NODE_PORT_RANGE.contains(p)).ok_or_else(|| invalid(&format!("spec.ports[{i}].nodePort"), "range is full: no free node port".into()))?;
                            }
                            used_ports.insert(u64::from(next_port));
                            port["nodePort"] = next_port.into();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn free_ip(&self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let base = u32::from(self.service_cidr.base);
        // Skip the network address and the first address (reserved for the `kubernetes` Service
        // unless asked for explicitly), and the broadcast address.
        (2..self.service_cidr.size() - 1).map(|offset| Ipv4Addr::from(base + offset)).find(|ip| !used.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_blocks_follow_the_mask_size() {
        let blocks = NodeBlocks::new(Ipv4Cidr::parse("10.0.0.0/8").unwrap(), 22);
        let used = HashSet::from([blocks.number("10.0.0.0/22").unwrap()]);
        assert_eq!(blocks.first_free(&used).as_deref(), Some("10.0.4.0/22"));
        assert_eq!(blocks.number("10.0.4.0/22"), Some(1));
        assert_eq!(blocks.number("10.0.4.0/24"), None, "another size is not one of the blocks");
        assert_eq!(blocks.number("11.0.0.0/22"), None);
        let default = NodeBlocks::new(Ipv4Cidr::parse("10.0.0.0/8").unwrap(), DEFAULT_NODE_CIDR_PREFIX);
        assert_eq!(default.first_free(&HashSet::new()).as_deref(), Some("10.0.0.0/24"));
        let small = NodeBlocks::new(Ipv4Cidr::parse("10.42.0.0/24").unwrap(), 24);
        assert_eq!(small.first_free(&HashSet::from([0])), None);
    }

    #[test]
    fn cidrs() {
        let cidr = Ipv4Cidr::parse("10.43.7.9/16").unwrap();
        assert_eq!(cidr.base, Ipv4Addr::new(10, 43, 0, 0));
        assert!(cidr.contains(Ipv4Addr::new(10, 43, 200, 1)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(cidr.api_service_ip(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(Ipv4Cidr::parse("10.43.0.0").is_err());
        let allocator = Allocator::new(cidr, Ipv4Cidr::parse("10.42.0.0/16").unwrap(), DEFAULT_NODE_CIDR_PREFIX);
        let used = HashSet::from([Ipv4Addr::new(10, 43, 0, 2)]);
        assert_eq!(allocator.free_ip(&used), Some(Ipv4Addr::new(10, 43, 0, 3)));
    }
}
