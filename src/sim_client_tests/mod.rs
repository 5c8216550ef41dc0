//! Tests of the simulator (`vscope-sim`) through this crate's clients: the API v6 client
//! ([`crate::ovh`]), the metrics client and its body decoder ([`crate::extract`]). They live
//! here because the simulator must not depend on the crate whose clients it serves; the
//! simulator's own tests (over plain HTTP) stay in its crate.

mod apiv6;
mod faults;
mod gzip;
mod replay;
mod warp10;
