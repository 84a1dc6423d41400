//! Table output (`kubectl get`): the columns of each kind and how a row is computed.

use serde_json::Value;

/// One column of a table, as `meta.k8s.io/v1` TableColumnDefinition.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// `name` for the NAME column, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: i32,
}

/// The table of one kind.
pub struct TableSpec {
    pub columns: &'static [Column],
    /// One cell per column, in order, for `object`; `now` is the current time, for ages.
    pub row: fn(object: &Value, now: jiff::Timestamp) -> Vec<Value>,
}

const NAME: Column = Column { name: "Name", type_: "string", format: "name", description: "Name must be unique within a namespace.", priority: 0 };
const AGE: Column = Column { name: "Age", type_: "string", format: "", description: "Time since the object was created.", priority: 0 };

/// NAME and AGE: for kinds without columns of their own.
pub static DEFAULT: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static AGE_ONLY: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static NAMESPACE: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static POD: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static SERVICE: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static ENDPOINTS: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static CONFIG_MAP: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static SECRET: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static NODE: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static EVENT: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static SERVICE_ACCOUNT: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static REPLICATION_CONTROLLER: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static PERSISTENT_VOLUME: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static PERSISTENT_VOLUME_CLAIM: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static RESOURCE_QUOTA: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static DEPLOYMENT: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static REPLICA_SET: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static STATEFUL_SET: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static DAEMON_SET: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static CONTROLLER_REVISION: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static JOB: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static CRON_JOB: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static HORIZONTAL_POD_AUTOSCALER: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static LEASE: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static ENDPOINT_SLICE: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static NETWORK_POLICY: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static ROLE_BINDING: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static EVENTS_V1: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };
pub static PRIORITY_CLASS: TableSpec = TableSpec { columns: &[NAME, AGE], row: |o, now| vec![name(o), age(o, now)] };

fn name(object: &Value) -> Value {
    object.pointer("/metadata/name").cloned().unwrap_or(Value::Null)
}

fn age(object: &Value, now: jiff::Timestamp) -> Value {
    let Some(created) = object.pointer("/metadata/creationTimestamp").and_then(Value::as_str) else {
        return Value::from("<unknown>");
    };
    match created.parse::<jiff::Timestamp>() {
        Ok(t) => Value::from(format!("{}s", (now - t).get_seconds().max(0))),
        Err(_) => Value::from("<invalid>"),
    }
}
