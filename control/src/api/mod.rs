//! The JSON control socket: the protocol (newline-delimited JSON requests
//! and replies with stable error codes), the server, and event subscribers.

pub mod protocol;
pub mod server;
pub mod subscribe;
