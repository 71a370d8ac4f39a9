//! The deployed shape, emulated: template.yaml deployed on moto ([`stack`]), each function's
//! real binary under a Lambda Runtime API emulator ([`runtime`]), the HTTP API front built
//! from the template's routes ([`http_api`]), and the SQS event-source mappings
//! ([`event_source`]). The system tests (`tests/`) assemble them.

pub mod event_source;
pub mod http_api;
pub mod runtime;
pub mod stack;
pub mod template;
