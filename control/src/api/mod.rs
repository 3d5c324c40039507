//! The JSON control socket's protocol: newline-delimited JSON requests and
//! replies with stable error codes (issue 5 builds the socket on it).

pub mod protocol;
pub mod server;
