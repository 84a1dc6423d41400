//! The strategic-merge-patch facts of the Kubernetes v1.32 built-in types, as data: which
//! fields carry `patchStrategy` / `patchMergeKey` struct tags.
//!
//! The entries for core/v1, apps/v1, batch/v1, autoscaling/v2 and meta/v1 were checked against
//! the struct tags in `k8s.io/api/<group>/<version>/types.go` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/types.go`; coordination.k8s.io/v1, discovery.k8s.io/v1,
//! networking.k8s.io/v1, rbac.authorization.k8s.io/v1, events.k8s.io/v1 and scheduling.k8s.io/v1
//! tag nothing in v1.32 (networking's ServiceCIDR is still v1beta1 there). The entries for the
//! other groups follow the v1.32 OpenAPI document's `x-kubernetes-patch-strategy` /
//! `x-kubernetes-patch-merge-key` extensions, which kube-openapi generates from those same tags.
//!
//! Fields absent here have no strategy: their lists are replaced whole by a patch (notably
//! `PodSpec.tolerations`, `PodSpec.readinessGates`, `NodeSpec.taints`, `Container.resizePolicy`,
//! `ResourceRequirements.claims` and the `updateStrategy` of StatefulSets and DaemonSets), even
//! where the list is a `listType=map` for server-side apply.

/// `(OpenAPI definition, field, patch strategy, merge key)`, sorted by definition then field so
/// that lookups can binary-search.
#[rustfmt::skip]
const STRATEGIES: &[(&str, &str, &str, Option<&str>)] = &[
    // admissionregistration.k8s.io
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec", "matchConditions", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "matchConditions", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec", "variables", "merge", Some("name")),
    // apps
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", None),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", Some("type")),
    // autoscaling
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "merge", Some("type")),
    // batch
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", Some("type")),
    // core (the legacy "" group)
    ("io.k8s.api.core.v1.ComponentStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", Some("name")),
    ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", Some("type")),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", Some("topologyKey")),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", Some("name")),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", Some("port")),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", Some("type")),
    // flowcontrol.apiserver.k8s.io
    ("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", "merge", Some("type")),
    // networking.k8s.io
    ("io.k8s.api.networking.v1beta1.ServiceCIDRStatus", "conditions", "merge", Some("type")),
    // policy
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", "replace", None),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", Some("type")),
    // resource.k8s.io
    ("io.k8s.api.resource.v1alpha3.ResourceClaimStatus", "reservedFor", "merge", Some("uid")),
    ("io.k8s.api.resource.v1beta1.ResourceClaimStatus", "reservedFor", "merge", Some("uid")),
    // storage.k8s.io
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", "merge", Some("name")),
    // storagemigration.k8s.io
    // Upstream really tags the list's items so (a slip it keeps for compatibility).
    ("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationList", "items", "merge", Some("type")),
    ("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationStatus", "conditions", "merge", Some("type")),
    // apiextensions.k8s.io
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", "merge", Some("rule")),
    // meta/v1 (every kind's metadata)
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", None),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", Some("uid")),
    // apiregistration.k8s.io
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", "conditions", "merge", Some("type")),
];

/// (OpenAPI definition name, field name) → (patch strategy, merge key) for every field of the built-in
/// kinds that Kubernetes tags with patchStrategy / patchMergeKey.
///
/// The strategy is the tag verbatim: `"merge"`, `"retainKeys"`, `"merge,retainKeys"` or
/// `"replace"`.
pub fn patch_strategy(
    definition: &str,
    field: &str,
) -> Option<(&'static str, Option<&'static str>)> {
    let index = STRATEGIES
        .binary_search_by(|&(d, f, _, _)| (d, f).cmp(&(definition, field)))
        .ok()?;
    STRATEGIES
        .get(index)
        .map(|&(_, _, strategy, merge_key)| (strategy, merge_key))
}

#[cfg(test)]
mod tests {
    use super::{patch_strategy, STRATEGIES};

    #[test]
    fn table_is_sorted_without_duplicates() {
        for pair in STRATEGIES.windows(2) {
            assert!(
                (pair[0].0, pair[0].1) < (pair[1].0, pair[1].1),
                "out of order: {pair:?}"
            );
        }
    }

    #[test]
    fn strategies_are_tag_values_and_keys_go_with_merge() {
        for &(definition, field, strategy, merge_key) in STRATEGIES {
            assert!(
                ["merge", "retainKeys", "merge,retainKeys", "replace"].contains(&strategy),
                "{definition}.{field}: {strategy}"
            );
            if merge_key.is_some() {
                assert!(
                    strategy.starts_with("merge"),
                    "{definition}.{field}: key without merge"
                );
            }
        }
    }

    #[test]
    fn well_known_fields() {
        let pod_spec = "io.k8s.api.core.v1.PodSpec";
        assert_eq!(
            patch_strategy(pod_spec, "containers"),
            Some(("merge", Some("name")))
        );
        assert_eq!(
            patch_strategy(pod_spec, "volumes"),
            Some(("merge,retainKeys", Some("name")))
        );
        assert_eq!(
            patch_strategy(pod_spec, "topologySpreadConstraints"),
            Some(("merge", Some("topologyKey")))
        );
        assert_eq!(patch_strategy(pod_spec, "tolerations"), None);
        assert_eq!(
            patch_strategy("io.k8s.api.core.v1.Container", "ports"),
            Some(("merge", Some("containerPort")))
        );
        assert_eq!(
            patch_strategy("io.k8s.api.core.v1.ServiceSpec", "ports"),
            Some(("merge", Some("port")))
        );
        assert_eq!(
            patch_strategy("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
            Some(("retainKeys", None))
        );
        assert_eq!(
            patch_strategy("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector"),
            Some(("replace", None))
        );

        assert_eq!(patch_strategy(pod_spec, "readinessGates"), None);
        assert_eq!(
            patch_strategy("io.k8s.api.core.v1.NodeSpec", "podCIDRs"),
            Some(("merge", None))
        );
        assert_eq!(
            patch_strategy("io.k8s.api.core.v1.NodeSpec", "taints"),
            None
        );
        assert_eq!(
            patch_strategy("io.k8s.api.core.v1.PodStatus", "podIPs"),
            Some(("merge", Some("ip")))
        );
        assert_eq!(
            patch_strategy("io.k8s.api.core.v1.ContainerStatus", "volumeMounts"),
            Some(("merge", Some("mountPath")))
        );
        assert_eq!(
            patch_strategy("io.k8s.api.batch.v1.JobStatus", "conditions"),
            Some(("merge", Some("type")))
        );
        assert_eq!(
            patch_strategy("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy"),
            None
        );
        assert_eq!(
            patch_strategy(
                "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
                "conditions"
            ),
            Some(("merge", Some("type")))
        );

        let object_meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
        assert_eq!(
            patch_strategy(object_meta, "finalizers"),
            Some(("merge", None))
        );
        assert_eq!(
            patch_strategy(object_meta, "ownerReferences"),
            Some(("merge", Some("uid")))
        );
        assert_eq!(patch_strategy(object_meta, "labels"), None);
        assert_eq!(
            patch_strategy("io.k8s.api.core.v1.Unknown", "containers"),
            None
        );
    }
}
