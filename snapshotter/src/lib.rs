//! placeholder
pub mod cache;
pub mod config;
pub mod fetch;
pub mod fs;
pub mod grpc;
pub mod layer;
pub mod metrics;
pub mod mount;
pub mod remote;
pub mod service;
pub mod snapshot;
pub mod workload;
