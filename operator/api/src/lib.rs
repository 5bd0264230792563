//! The `mysimbdp.io/v1alpha1` API: the custom resources tenants and platform teams write.
//!
//! This crate is pure: types, schema rules and constants, no I/O. The same CEL rules that the
//! API server enforces from the generated CRDs can be evaluated client-side with
//! [`validate`], so a tool (or a test) rejects a bad object with the server's own message.

pub mod batch;
pub mod common;
pub mod constants;
pub mod crds;
pub mod quantity;
pub mod stream;
pub mod tenant;
pub mod validate;

pub use batch::{BatchIngestApp, BatchIngestAppSpec, BatchIngestAppStatus};
pub use stream::{StreamIngestApp, StreamIngestAppSpec, StreamIngestAppStatus};
pub use tenant::{Tenant, TenantSpec, TenantStatus};
pub use validate::{ValidationError, validate};
