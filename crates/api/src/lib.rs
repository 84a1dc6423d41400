//! The Kubernetes API surface Tugboat serves, independent of HTTP and storage: the registry of
//! kinds, their schemas (and OpenAPI), defaults, validation, label and field selectors, and table
//! columns, resource quantities.
//!
//! Invariant: this crate does no I/O. The API server, the agent and the controllers all build on
//! it; it depends on none of them.

pub mod defaults;
pub mod field_tree;
pub mod json;
pub mod meta;
pub mod patch_strategies;
pub mod protobuf;
pub mod quantity;
mod protobuf_schema;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod shape;
pub mod tables;
pub mod validation;

pub use registry::{NameRule, Registry, ResourceType, Subresources};
pub use shape::Shape;
