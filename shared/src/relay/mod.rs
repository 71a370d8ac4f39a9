//! The workers that carry messages between the platforms.

pub(crate) mod customer;
pub mod inbound;
pub mod outbound;
pub mod render;
