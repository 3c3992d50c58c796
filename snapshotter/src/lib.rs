//! placeholder
pub mod fs;
pub mod mount;
pub mod cache;
pub mod fetch;
pub mod layer;
pub mod remote;
pub mod snapshot;
pub mod grpc;
pub mod metrics;
pub mod config;
pub mod service;
