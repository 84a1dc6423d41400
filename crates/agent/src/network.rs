//! The pod network of this node: a CNI bridge configuration for the node's podCIDR, which the
//! runtime (containerd's CRI plugin watches its CNI directory) uses for every sandbox.

use crate::AgentError;
use serde_json::json;
use std::path::Path;

pub const CNI_CONFIG_FILE: &str = "10-tugboat.conflist";

/// The bridge's name: one per node, so that several agents on one machine (each with its own
/// runtime) don't share a bridge. Linux limits interface names to 15 bytes.
pub fn bridge_name(node_name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(node_name.as_bytes());
    format!("tb{:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3])
}

/// Writes (atomically) the CNI configuration for `pod_cidr` if it differs from what is there.
pub fn write_cni_config(conf_dir: &Path, ipam_dir: &Path, node_name: &str, pod_cidr: &str) -> Result<(), AgentError> {
    let config = json!({
        "cniVersion": "0.4.0",
        "name": "tugboat",
        "plugins": [
            {"type": "bridge", "bridge": bridge_name(node_name), "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": ipam_dir}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"},
        ],
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| AgentError::Setup(format!("cannot encode the CNI configuration: {e}")))?;
    let path = conf_dir.join(CNI_CONFIG_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
        return Ok(());
    }
    std::fs::create_dir_all(conf_dir).map_err(|e| AgentError::io(conf_dir, e))?;
    std::fs::create_dir_all(ipam_dir).map_err(|e| AgentError::io(ipam_dir, e))?;
    let temporary = conf_dir.join(format!(".{CNI_CONFIG_FILE}.tmp"));
    std::fs::write(&temporary, text).map_err(|e| AgentError::io(&temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| AgentError::io(&path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_linux_and_differ_per_node() {
        assert!(bridge_name("a-very-long-node-name-indeed").len() <= 15);
        assert_ne!(bridge_name("node-1"), bridge_name("node-2"));
    }

    #[test]
    fn config_names_the_subnet_and_is_rewritten_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        write_cni_config(dir.path(), &dir.path().join("ipam"), "n", "10.42.3.0/24").unwrap();
        let path = dir.path().join(CNI_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("10.42.3.0/24"), "{text}");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        write_cni_config(dir.path(), &dir.path().join("ipam"), "n", "10.42.3.0/24").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
    }
}
