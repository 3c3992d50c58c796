//! One module per subcommand: clap arguments, their conversion into library options, and a call
//! into the library.

pub mod audit;
pub mod convert;
pub mod mount;
pub mod optimize;
pub mod serve;
pub mod status;
pub mod unmount;
