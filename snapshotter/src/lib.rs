//! placeholder
pub mod fs;
pub mod remote;
