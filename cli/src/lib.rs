//! The igbridge tool's commands, as a library so the binary (`main.rs`, which only parses the
//! command line) and the tests share one definition of each (the local development values above
//! all: [`settings::LOCAL_DEFAULTS`]).

pub mod provision;
pub mod redrive;
pub mod send;
pub mod serve;
pub mod settings;
pub mod sweep;
