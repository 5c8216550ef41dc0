//! The run lease: at most one run of a pipeline writes to a sink at a time (a CronJob can fire
//! twice). The lease is an object `_state/<pipeline>.lease` created with a conditional put
//! (`PutMode::Create`), so exactly one of several racing runs wins. It carries an expiry, renewed
//! after every window, so a run that crashed blocks the next one only until then; a lease whose
//! holder was on this host and is no longer alive is taken over at once.

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::store::{Sink, StoreError};
use crate::semantics::time::format_rfc3339;

/// Who holds a lease, and until when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRecord {
    /// The holding run.
    pub run_id: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When it was taken (RFC 3339).
    pub acquired: String,
    /// Expiry in ms since the epoch.
    pub expires_ms: i64,
    /// Expiry (RFC 3339), for people.
    pub expires: String,
}

/// The lease could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another run holds it.
    #[error(
        "another run of this pipeline is in progress: run {} on host {} (pid {}) holds {path} since {} \
         until {}; this run did nothing. If that run died, wait until the lease expires or delete {path}",
        .holder.run_id, .holder.host, .holder.pid, .holder.acquired, .holder.expires
    )]
    Held {
        /// The lease key.
        path: String,
        /// The current holder.
        holder: LeaseRecord,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A held lease; release it when the run ends.
#[derive(Debug)]
pub struct Lease {
    sink: Sink,
    path: String,
    record: LeaseRecord,
    ttl_ms: i64,
    version: Option<UpdateVersion>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// True when `record` was taken on this host by a process that no longer exists (Linux).
fn holder_is_dead_here(record: &LeaseRecord) -> bool {
    record.host == host_name()
        && record.pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{}", record.pid)).exists()
}

fn store_err(operation: &'static str, path: &str, source: object_store::Error) -> StoreError {
    StoreError::Object {
        operation,
        path: path.to_string(),
        source,
    }
}

impl Lease {
    fn held(
        sink: &Sink,
        path: String,
        record: LeaseRecord,
        ttl_ms: i64,
        put: object_store::PutResult,
    ) -> Lease {
        let version = Some(UpdateVersion {
            e_tag: put.e_tag,
            version: put.version,
        });
        Lease {
            sink: sink.clone(),
            path,
            record,
            ttl_ms,
            version,
        }
    }

    /// The key of a pipeline's lease.
    pub fn path(pipeline: &str) -> String {
        format!("_state/{pipeline}.lease")
    }

    /// Takes the lease of `pipeline` for `ttl_ms`, or says who holds it.
    pub async fn acquire(
        sink: &Sink,
        pipeline: &str,
        run_id: &str,
        ttl_ms: i64,
    ) -> Result<Lease, LeaseError> {
        let path = Lease::path(pipeline);
        let key = sink.key(&path);
        let record = |now: i64| LeaseRecord {
            run_id: run_id.to_string(),
            host: host_name(),
            pid: std::process::id(),
            acquired: format_rfc3339(now),
            expires_ms: now + ttl_ms,
            expires: format_rfc3339(now + ttl_ms),
        };
        for _ in 0..5 {
            let now = chrono::Utc::now().timestamp_millis();
            let mine = record(now);
            let body =
                PutPayload::from(serde_json::to_vec_pretty(&mine).expect("lease serializes"));
            match sink
                .store
                .put_opts(&key, body, PutOptions::from(PutMode::Create))
                .await
            {
                Ok(r) => return Ok(Lease::held(sink, path, mine, ttl_ms, r)),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(store_err("create", &path, e).into()),
            }
            // Someone holds it: is it still valid?
            let existing = match sink.store.get(&key).await {
                Ok(r) => {
                    let meta = r.meta.clone();
                    let bytes = r.bytes().await.map_err(|e| store_err("get", &path, e))?;
                    (serde_json::from_slice::<LeaseRecord>(&bytes).ok(), meta)
                }
                Err(object_store::Error::NotFound { .. }) => continue, // released meanwhile
                Err(e) => return Err(store_err("get", &path, e).into()),
            };
            let (holder, meta) = existing;
            let stale = match &holder {
                None => true, // unreadable: a crash while writing it
                Some(h) => h.expires_ms <= now || holder_is_dead_here(h),
            };
            if !stale {
                return Err(LeaseError::Held {
                    path,
                    holder: holder.expect("checked above"),
                });
            }
            tracing::warn!(lease = %path, holder = ?holder, "taking over an expired or orphaned lease");
            if sink.local_root.is_some() {
                // The local store has no conditional update: remove and race on Create again.
                sink.delete_if_exists(&path).await?;
                continue;
            }
            let body =
                PutPayload::from(serde_json::to_vec_pretty(&mine).expect("lease serializes"));
            let mode = PutMode::Update(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            });
            match sink
                .store
                .put_opts(&key, body, PutOptions::from(mode))
                .await
            {
                Ok(r) => return Ok(Lease::held(sink, path, mine, ttl_ms, r)),
                Err(object_store::Error::Precondition { .. })
                | Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(store_err("update", &path, e).into()),
            }
        }
        Err(LeaseError::Store(StoreError::BadUrl {
            url: sink.display.clone(),
            message: format!("could not take {path} after 5 attempts (heavy contention)"),
        }))
    }

    /// Extends the lease by its time-to-live from now.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.record.expires_ms = now + self.ttl_ms;
        self.record.expires = format_rfc3339(self.record.expires_ms);
        let body =
            PutPayload::from(serde_json::to_vec_pretty(&self.record).expect("lease serializes"));
        let key = self.sink.key(&self.path);
        let mode = match (&self.version, self.sink.local_root.is_some()) {
            (Some(v), false) => PutMode::Update(v.clone()),
            _ => PutMode::Overwrite,
        };
        let r = self
            .sink
            .store
            .put_opts(&key, body, PutOptions::from(mode))
            .await
            .map_err(|e| store_err("renew", &self.path, e))?;
        self.version = Some(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        });
        Ok(())
    }

    /// Gives the lease back (deletes it if it is still ours).
    pub async fn release(self) -> Result<(), LeaseError> {
        if let Some(bytes) = self.sink.get_opt(&self.path).await? {
            let current: Option<LeaseRecord> = serde_json::from_slice(&bytes).ok();
            if current.is_some_and(|c| c.run_id == self.record.run_id) {
                self.sink.delete_if_exists(&self.path).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_expired_leases_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let a = Lease::acquire(&sink, "p", "run-a", 60_000).await.unwrap();
        let err = Lease::acquire(&sink, "p", "run-b", 60_000)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("run-a") && msg.contains("_state/p.lease"),
            "{msg}"
        );
        a.release().await.unwrap();
        let mut b = Lease::acquire(&sink, "p", "run-b", 60_000).await.unwrap();
        b.renew().await.unwrap();
        // Expired: taken over.
        let expired = LeaseRecord {
            expires_ms: 0,
            ..b.record.clone()
        };
        sink.put(&Lease::path("p"), serde_json::to_vec(&expired).unwrap())
            .await
            .unwrap();
        let c = Lease::acquire(&sink, "p", "run-c", 60_000).await.unwrap();
        assert_eq!(c.record.run_id, "run-c");
        // A release by a run that lost the lease leaves the new holder's lease alone.
        b.release().await.unwrap();
        assert!(sink.get_opt(&Lease::path("p")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_dead_local_holder_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let dead = LeaseRecord {
            run_id: "dead".into(),
            host: host_name(),
            pid: u32::MAX - 1,
            acquired: "x".into(),
            expires_ms: i64::MAX,
            expires: "later".into(),
        };
        sink.put(&Lease::path("p"), serde_json::to_vec(&dead).unwrap())
            .await
            .unwrap();
        assert!(Lease::acquire(&sink, "p", "new", 60_000).await.is_ok());
    }
}
