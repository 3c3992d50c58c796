//! placeholder
pub mod remote;
