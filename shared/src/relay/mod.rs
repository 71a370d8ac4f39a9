//! The workers that carry messages between the platforms.

pub(crate) mod claim;
pub(crate) mod echo;
pub mod inbound;
pub mod outbound;
pub mod render;
