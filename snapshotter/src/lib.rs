//! placeholder
pub mod fs;
pub mod mount;
pub mod remote;
pub mod snapshot;
pub mod grpc;
pub mod metrics;
