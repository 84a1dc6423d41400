//! Defaults Kubernetes fills in on create and update, per kind.

use serde_json::Value;

pub fn namespace(_object: &mut Value) {}
pub fn pod(_object: &mut Value) {}
pub fn service(_object: &mut Value) {}
pub fn secret(_object: &mut Value) {}
pub fn replication_controller(_object: &mut Value) {}
pub fn deployment(_object: &mut Value) {}
pub fn replica_set(_object: &mut Value) {}
pub fn stateful_set(_object: &mut Value) {}
pub fn daemon_set(_object: &mut Value) {}
pub fn job(_object: &mut Value) {}
pub fn cron_job(_object: &mut Value) {}
