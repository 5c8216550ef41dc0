//! What every handler reads: the simulated PCC, its name tables, the API v6 side, the fault
//! plan, the answering style of the dialect and the request counters. Built once per server
//! and shared read-only (the counters and the fault plan's own counters are atomics).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::SimConfig;
use super::apiv6::Api;
use super::faults::Faults;
use super::index::Index;
use super::model::Pcc;
use super::warp::{ErrorMode, FetchStart};
use vscope_core::dialect::Dialect;

/// Request counters, shared between the server and its [`SimHandle`](super::SimHandle).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) queries: AtomicU64,
    pub(crate) series: AtomicU64,
    pub(crate) points: AtomicU64,
    pub(crate) faults: AtomicU64,
}

/// Everything a handler needs; built once per server and shared read-only. No `Debug`: it
/// holds the token.
pub(crate) struct Shared {
    pub(crate) dialect: Dialect,
    pub(crate) token: Option<String>,
    pub(crate) pcc: Pcc,
    pub(crate) index: Index,
    pub(crate) counters: Arc<Counters>,
    /// The OVHcloud API v6 side (`/1.0`), over the same PCC.
    pub(crate) api: Api,
    /// Injected failures on `/api/query`, if any were asked for.
    pub(crate) faults: Option<Faults>,
    /// How Erlenmeyer relays Warp 10's execution errors (`ovh`).
    pub(crate) errors: ErrorMode,
    /// Datapoints one sub-query may fetch before the server refuses it.
    pub(crate) max_fetch_points: u64,
    /// Whether Warp 10's FETCH keeps a point stamped exactly on the start (`ovh`).
    pub(crate) fetch_start: FetchStart,
    /// gzip answers to requests that accept them ([`SimConfig::gzip`]).
    pub(crate) gzip: bool,
}

impl Shared {
    /// Builds the model and its name tables from `config`.
    pub(crate) fn new(config: &SimConfig) -> Shared {
        let pcc = Pcc::new(config);
        let index = Index::new(&pcc);
        let api = Api::new(config, &pcc);
        Shared {
            dialect: config.dialect,
            token: config.token.clone(),
            pcc,
            index,
            counters: Arc::default(),
            api,
            faults: Faults::new(&config.faults, config.fault_seed),
            errors: config.errors,
            max_fetch_points: config.max_fetch_points,
            fetch_start: config.fetch_start,
            gzip: config.gzip,
        }
    }
}
