//! The errors that end a command, and the exit code each maps to (design §6).

use crate::config::ConfigError;
use crate::extract::FetchError;
use crate::load::state::LedgerError;
use crate::load::store::StoreError;
use crate::load::writer::WriteError;

/// Exit code: everything done.
pub const EXIT_OK: u8 = 0;
/// Exit code: finished, but some units failed (named in the manifest), or the run was stopped.
pub const EXIT_FAILED_UNITS: u8 = 1;
/// Exit code: bad configuration or arguments.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: the server refused our credentials.
pub const EXIT_AUTH: u8 = 3;

/// A failure that stops a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline file or arguments are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server refused the token (401/403, or OVH's bad-token 500).
    #[error(
        "the metrics server refused the read token ({0}); check source.token (a vScope read \
         token from POST /dedicatedCloud/{{serviceName}}/user/{{userId}}/metricsToken)"
    )]
    Auth(FetchError),
    /// A request needed to plan the run failed.
    #[error("cannot plan the run: {0}")]
    Fetch(FetchError),
    /// The sink cannot be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger cannot be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A Parquet file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A window's publication could not be completed (the next run completes or clears it).
    #[error(transparent)]
    Publish(#[from] crate::load::publish::PublishError),
    /// A Delta table's log cannot be read or written (maintenance commands).
    #[error(transparent)]
    Delta(#[from] crate::load::delta::DeltaError),
    /// A shard's marks of the windows it staged cannot be read.
    #[error(transparent)]
    Mark(#[from] crate::load::shards::MarkError),
    /// A table of the pipeline belongs to another pipeline in this sink.
    #[error(transparent)]
    Owner(crate::load::owner::OwnerError),
    /// Another run of the pipeline holds the lease, or the lease cannot be handled.
    #[error(transparent)]
    Lease(#[from] crate::load::lease::LeaseError),
    /// An OVHcloud API v6 call failed (inventory, metrics token). When the credentials or a
    /// right were refused, the message says which key is wrong or which right is missing, and
    /// the exit code is 3.
    #[error(transparent)]
    Ovh(crate::ovh::OvhError),
    /// Discovery found no series at all for the pipeline's metrics: the endpoint is another
    /// region's, or the token another PCC's. Nothing is committed (a run that committed these
    /// windows as empty would make the next, correct run skip them).
    #[error(
        "discovery ({discovery}) found no series for any of the {metrics} metric(s) of the scope \
         at {endpoint}; nothing was written and no window was committed. Likely causes: \
         source.url is the endpoint of another region than the PCC's (use the opentsdbEndpoint \
         of the metricsToken answer), the token belongs to another PCC, or the PCC has no \
         such metrics. Run `vscope-etl check PIPELINE` to see what the server has."
    )]
    NothingDiscovered {
        /// How series were discovered (`lookup`, `inventory`).
        discovery: &'static str,
        /// Metrics asked for.
        metrics: usize,
        /// The endpoint (no credentials).
        endpoint: String,
    },
    /// The in-process simulator could not start.
    #[error("cannot start the built-in simulator: {0}")]
    Sim(std::io::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::NothingDiscovered { .. }
            | Error::Owner(crate::load::owner::OwnerError::Taken { .. }) => EXIT_CONFIG,
            // sink.url is not a usable sink, or its bucket does not exist.
            Error::Store(e) | Error::Lease(crate::load::lease::LeaseError::Store(e))
                if e.is_config() =>
            {
                EXIT_CONFIG
            }
            Error::Auth(_) => EXIT_AUTH,
            Error::Ovh(e) if e.class() == crate::extract::retry::FailureClass::Auth => EXIT_AUTH,
            _ => EXIT_FAILED_UNITS,
        }
    }
}

/// Result alias of the library's commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;
