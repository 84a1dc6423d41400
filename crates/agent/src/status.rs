//! A pod's status from what the runtime reports: container states, phase, conditions,
//! computed as kubelet does. Pure functions, so every rule has a unit test.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tugboat_cri::api::{ContainerState, ContainerStatus};

/// What the agent knows about one container of the pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    /// The newest instance, and the one before it (for lastState).
    pub latest: Option<ContainerStatus>,
    pub previous: Option<ContainerStatus>,
    /// Why no instance runs, when the agent knows (image pull failure, back-off, config error).
    pub waiting: Option<(String, String)>,
    pub ready: bool,
    pub started: bool,
    /// The termination message read from the container's termination-log file.
    pub termination_message: Option<String>,
}

pub fn timestamp(nanos: i64) -> Value {
    if nanos <= 0 {
        return Value::Null;
    }
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map(|t| Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())).unwrap_or(Value::Null)
}

fn is_running(status: &ContainerStatus) -> bool {
    status.state == ContainerState::ContainerRunning as i32
}

fn is_exited(status: &ContainerStatus) -> bool {
    status.state == ContainerState::ContainerExited as i32
}

fn terminated(status: &ContainerStatus, message: Option<&str>) -> Value {
    let reason = if !status.reason.is_empty() {
        status.reason.clone()
    } else if status.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut state = json!({
        "exitCode": status.exit_code, "reason": reason,
        "startedAt": timestamp(status.started_at), "finishedAt": timestamp(status.finished_at),
        "containerID": format!("containerd://{}", status.id),
    });
    let message = message.filter(|m| !m.is_empty()).map(str::to_owned).or_else(|| Some(status.message.clone()).filter(|m| !m.is_empty()));
    if let Some(message) = message {
        state["message"] = message.into();
    }
    json!({"terminated": state})
}

/// The `containerStatuses` entry of one container.
pub fn container_status(view: &ContainerView, initializing: bool) -> Value {
    let state = match (&view.latest, &view.waiting) {
        (Some(latest), _) if is_running(latest) => json!({"running": {"startedAt": timestamp(latest.started_at)}}),
        (_, Some((reason, message))) => json!({"waiting": {"reason": reason, "message": message}}),
        (Some(latest), None) if is_exited(latest) => terminated(latest, view.termination_message.as_deref()),
        _ => json!({"waiting": {"reason": if initializing { "PodInitializing" } else { "ContainerCreating" }}}),
    };
    // A container waiting to restart shows its last run as lastState; a running one, its previous run.
    let last = match (&view.latest, &view.waiting) {
        (Some(latest), Some(_)) if is_exited(latest) => Some(latest),
        (Some(latest), _) if is_running(latest) => view.previous.as_ref().filter(|p| is_exited(p)),
        _ => None,
    };
    let mut status = json!({
        "name": view.name,
        "state": state,
        "lastState": last.map(|l| terminated(l, None)).unwrap_or_else(|| json!({})),
        "ready": view.ready,
        "restartCount": view.latest.as_ref().and_then(|l| l.metadata.as_ref()).map(|m| m.attempt).unwrap_or(0),
        "image": view.image,
        "imageID": view.latest.as_ref().map(|l| l.image_ref.clone()).unwrap_or_default(),
        "started": view.started,
    });
    if let Some(latest) = &view.latest {
        status["containerID"] = format!("containerd://{}", latest.id).into();
    }
    status
}

/// Whether the init container finished successfully.
pub fn init_succeeded(view: &ContainerView) -> bool {
    view.latest.as_ref().is_some_and(|l| is_exited(l) && l.exit_code == 0)
}

/// The pod's phase, by kubelet's rules.
pub fn phase(restart_policy: &str, init: &[ContainerView], containers: &[ContainerView]) -> &'static str {
    for view in init {
        if init_succeeded(view) {
            continue;
        }
        let failed = view.latest.as_ref().is_some_and(|l| is_exited(l) && l.exit_code != 0);
        return if failed && restart_policy == "Never" { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for view in containers {
        match &view.latest {
            Some(latest) if is_running(latest) => running += 1,
            Some(latest) if is_exited(latest) => {
                stopped += 1;
                if latest.exit_code == 0 {
                    succeeded += 1;
                }
            }
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        }
    } else {
        "Pending"
    }
}

/// Conditions, keeping each one's lastTransitionTime while its status stays the same.
pub fn conditions(pod: &Pod, initialized: bool, containers_ready: bool, now: &str) -> Value {
    let previous = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let condition = |kind: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.to_owned());
        let mut value = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let (false, Some(reason)) = (ok, reason) {
            value["reason"] = reason.into();
        }
        value
    };
    json!([
        condition("PodReadyToStartContainers", true, None),
        condition("Initialized", initialized, Some("ContainersNotInitialized")),
        condition("Ready", containers_ready, Some("ContainersNotReady")),
        condition("ContainersReady", containers_ready, Some("ContainersNotReady")),
        condition("PodScheduled", true, None),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tugboat_cri::api::ContainerMetadata;

    fn instance(state: ContainerState, exit_code: i32, attempt: u32) -> ContainerStatus {
        ContainerStatus {
            id: format!("c{attempt}"),
            state: state as i32,
            exit_code,
            metadata: Some(ContainerMetadata { name: "c".into(), attempt }),
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == ContainerState::ContainerExited { 1_700_000_010_000_000_000 } else { 0 },
            ..Default::default()
        }
    }

    fn view(latest: Option<ContainerStatus>) -> ContainerView {
        ContainerView { name: "c".into(), image: "i".into(), latest, ..Default::default() }
    }

    #[test]
    fn phase_follows_kubelet_rules() {
        let running = view(Some(instance(ContainerState::ContainerRunning, 0, 0)));
        let ok = view(Some(instance(ContainerState::ContainerExited, 0, 0)));
        let failed = view(Some(instance(ContainerState::ContainerExited, 1, 0)));
        assert_eq!(phase("Always", &[], &[view(None)]), "Pending");
        assert_eq!(phase("Always", &[], std::slice::from_ref(&running)), "Running");
        assert_eq!(phase("Always", &[], std::slice::from_ref(&failed)), "Running", "a crashed container restarts");
        assert_eq!(phase("Never", &[], std::slice::from_ref(&failed)), "Failed");
        assert_eq!(phase("Never", &[], std::slice::from_ref(&ok)), "Succeeded");
        assert_eq!(phase("OnFailure", &[], &[ok.clone(), ok.clone()]), "Succeeded");
        assert_eq!(phase("OnFailure", &[], &[ok.clone(), failed.clone()]), "Running");
        assert_eq!(phase("Always", std::slice::from_ref(&running), &[view(None)]), "Pending", "init still running");
        assert_eq!(phase("Never", &[failed], &[view(None)]), "Failed", "failed init with Never");
        assert_eq!(phase("Always", &[ok], &[running]), "Running");
    }

    #[test]
    fn container_states_and_last_state() {
        let mut crashed = view(Some(instance(ContainerState::ContainerExited, 2, 3)));
        crashed.waiting = Some(("CrashLoopBackOff".into(), "back-off 20s restarting failed container".into()));
        let status = container_status(&crashed, false);
        assert_eq!(status["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(status["lastState"]["terminated"]["exitCode"], 2);
        assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(status["restartCount"], 3);

        let mut restarted = view(Some(instance(ContainerState::ContainerRunning, 0, 1)));
        restarted.previous = Some(instance(ContainerState::ContainerExited, 137, 0));
        let status = container_status(&restarted, false);
        assert!(status["state"]["running"]["startedAt"].is_string());
        assert_eq!(status["lastState"]["terminated"]["exitCode"], 137);
        assert_eq!(status["containerID"], "containerd://c1");

        let mut oom = instance(ContainerState::ContainerExited, 137, 0);
        oom.reason = "OOMKilled".into();
        assert_eq!(container_status(&view(Some(oom)), false)["state"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(container_status(&view(None), true)["state"]["waiting"]["reason"], "PodInitializing");
    }
}
