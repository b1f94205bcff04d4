//! The crate's one error type for start-up, serving and connecting: each
//! variant names what to fix.

use std::fmt;
use std::net::SocketAddr;

/// Start-up and serving failures; each names what to fix. `Debug` prints
/// the same text as `Display`, so `fn main() -> Result<(), Error>` reports
/// them readably.
pub enum Error {
    /// An environment variable has a value that cannot be used.
    Config {
        /// The variable, e.g. `SVC_GRPC_ADDR`.
        variable: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// A listener could not be bound.
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC transport failed.
    Transport(tonic::transport::Error),
    /// Descriptors for reflection could not be registered.
    Reflection(String),
    /// A client could not be built or could not reach its target.
    Client {
        /// The target as given.
        target: String,
        /// What is wrong, and where.
        problem: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { variable, problem } => write!(f, "{variable}: {problem}"),
            Error::Bind { what, addr, source } => write!(f, "cannot listen for {what} on {addr}: {source}"),
            Error::Transport(e) => write!(f, "gRPC transport: {e}"),
            Error::Reflection(e) => write!(f, "reflection descriptors: {e}"),
            Error::Client { target, problem } => write!(f, "client of {target}: {problem}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}
