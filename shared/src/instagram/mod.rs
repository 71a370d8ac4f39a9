//! Instagram messaging through Meta's Messenger API for Instagram (Page tokens on
//! graph.facebook.com): webhook verification and splitting, event classification, Graph client.

pub mod event;
pub mod graph;
pub mod send;
pub mod usage;
pub mod webhook;
