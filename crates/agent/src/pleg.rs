//! The pod lifecycle event generator: relists the runtime every `relist_interval` and wakes the
//! worker of each pod whose sandboxes or containers changed state (a crash, an exit, an OOM
//! kill), so a crashed container is restarted within about one relist.

use crate::Context;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tugboat_cri::api::{Container, PodSandbox};

pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// What the runtime holds for one pod, by pod UID.
#[derive(Default, Clone)]
pub struct RuntimePod {
    pub sandboxes: Vec<PodSandbox>,
    pub containers: Vec<Container>,
}

impl RuntimePod {
    /// A fingerprint of states: any change (new, gone, exited) changes it.
    fn fingerprint(&self) -> Vec<(String, i32)> {
        let mut states: Vec<(String, i32)> =
            self.sandboxes.iter().map(|s| (s.id.clone(), s.state)).chain(self.containers.iter().map(|c| (c.id.clone(), c.state))).collect();
        states.sort();
        states
    }
}

pub struct Pleg {
    context: Arc<Context>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    last: Mutex<HashMap<String, Vec<(String, i32)>>>,
}

/// Groups a runtime listing by pod UID.
pub fn group_by_pod(sandboxes: Vec<PodSandbox>, containers: Vec<Container>) -> HashMap<String, RuntimePod> {
    let mut pods: HashMap<String, RuntimePod> = HashMap::new();
    for sandbox in sandboxes {
        if let Some(uid) = sandbox.labels.get(POD_UID_LABEL).cloned() {
            pods.entry(uid).or_default().sandboxes.push(sandbox);
        }
    }
    for container in containers {
        if let Some(uid) = container.labels.get(POD_UID_LABEL).cloned() {
            pods.entry(uid).or_default().containers.push(container);
        }
    }
    pods
}

impl Pleg {
    pub fn new(context: Arc<Context>) -> Arc<Self> {
        Arc::new(Self { context, wakers: Mutex::default(), last: Mutex::default() })
    }

    /// Registers the worker of `uid`: it is notified when its pod changes in the runtime.
    pub fn watch(&self, uid: &str, waker: Arc<Notify>) {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_owned(), waker);
    }

    pub fn forget(&self, uid: &str) {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    /// Everything the runtime holds, by pod UID.
    pub async fn relist(&self) -> Result<HashMap<String, RuntimePod>, tugboat_cri::CriError> {
        let sandboxes = self.context.runtime.list_pod_sandboxes(None).await?;
        let containers = self.context.runtime.list_containers(None).await?;
        Ok(group_by_pod(sandboxes, containers))
    }

    pub async fn run(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.context.config.relist_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let pods = match self.relist().await {
                Ok(pods) => pods,
                Err(error) => {
                    tracing::debug!(%error, "cannot relist the runtime");
                    continue;
                }
            };
            let fingerprints: HashMap<String, Vec<(String, i32)>> = pods.iter().map(|(uid, pod)| (uid.clone(), pod.fingerprint())).collect();
            let changed: Vec<String> = {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                let changed = fingerprints
                    .iter()
                    .filter(|(uid, print)| last.get(*uid) != Some(print))
                    .map(|(uid, _)| uid.clone())
                    .chain(last.keys().filter(|uid| !fingerprints.contains_key(*uid)).cloned())
                    .collect();
                *last = fingerprints;
                changed
            };
            let wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
            for uid in changed {
                if let Some(waker) = wakers.get(&uid) {
                    waker.notify_one();
                }
            }
        }
    }
}
