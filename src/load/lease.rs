//! The run lease: at most one run of a pipeline writes to a sink at a time (a CronJob can fire
//! twice). The lease is an object `_state/<pipeline>.lease` created with a conditional put
//! (`PutMode::Create`), so exactly one of several racing runs wins. It carries an expiry
//! (`sink.lease_ttl`, 2 minutes by default), renewed by a heartbeat ([`LeaseKeeper`]) every third
//! of it, so a run that crashed blocks the next one at most that long, whatever host the next
//! one runs on (in a CronJob every pod is a new host); a lease whose holder was on this host and
//! is no longer alive is taken over at once. A takeover replaces
//! the stale lease with a conditional update on S3 (`PutMode::Update` with its e-tag); local
//! disk has none, so there takeovers and renewals run under a `flock` of `_state`.

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
    /// The holder's boot (Linux `/proc/sys/kernel/random/boot_id`): after a reboot the same
    /// host name and pid are another process. Absent in leases of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's start time (clock ticks since boot, `/proc/<pid>/stat` field 22): a pid
    /// reused by a later process has another. Absent in leases of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
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
        holder: Box<LeaseRecord>,
    },
    /// The lease expired and another run took it over while this one was still running.
    #[error(
        "this run's lease {path} was taken over (now held by {}): it was not renewed within \
         sink.lease_ttl (the process stalled, or the sink refused the renewals); this run \
         stops without committing more, the next one resumes from the ledger",
        .holder.as_deref().unwrap_or("nobody")
    )]
    Lost {
        /// The lease key.
        path: String,
        /// The run holding it now, if any.
        holder: Option<String>,
    },
    /// The heartbeat could not renew the lease for longer than its time-to-live: another run
    /// may hold it now, so this one must not commit anything more.
    #[error(
        "this run could not renew its lease {path} for {millis} ms, longer than sink.lease_ttl \
         (last error: {last}); another run may have taken it over, so this run stops without \
         committing more; check the sink's availability, the next run resumes from the ledger"
    )]
    Expired {
        /// The lease key.
        path: String,
        /// Milliseconds since the last renewal.
        millis: i64,
        /// Why the renewals failed.
        last: String,
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

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// A process as `/proc/<pid>/stat` shows it: its state letter and start time (ticks since
/// boot), or `None` when there is no such process. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn process_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; field 22, the start time, is 19 further.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some((state, start_ticks))
}

/// True when `record` was taken on this host by a process that no longer runs (Linux): gone,
/// a zombie (killed, not yet reaped by its parent, e.g. a container's init that never reaps),
/// or another process since (the host rebooted, or the pid was reused: another start time).
fn holder_is_dead_here(record: &LeaseRecord) -> bool {
    if record.host != host_name()
        || record.pid == std::process::id()
        || !std::path::Path::new("/proc/self").exists()
    {
        return false;
    }
    if record.boot_id.is_some() && record.boot_id != boot_id() {
        return true;
    }
    match process_stat(record.pid) {
        None => true,
        Some(('Z' | 'X', _)) => true,
        Some((_, started)) => record.start_ticks.is_some_and(|t| t != started),
    }
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
        let _local_lock = lock_local_state(sink).await?;
        let (boot, start_ticks) = (boot_id(), process_stat(std::process::id()).map(|(_, t)| t));
        let record = |now: i64| LeaseRecord {
            run_id: run_id.to_string(),
            host: host_name(),
            pid: std::process::id(),
            acquired: format_rfc3339(now),
            expires_ms: now + ttl_ms,
            expires: format_rfc3339(now + ttl_ms),
            boot_id: boot.clone(),
            start_ticks,
        };
        for _ in 0..5 {
            let now = chrono::Utc::now().timestamp_millis();
            let mine = record(now);
            let body = serde_json::to_vec_pretty(&mine).expect("lease serializes");
            if let Some(r) = sink.create(&path, body).await? {
                return Ok(Lease::held(sink, path, mine, ttl_ms, r));
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
                    holder: Box::new(holder.expect("checked above")),
                });
            }
            tracing::warn!(lease = %path, holder = ?holder, "taking over an expired or orphaned lease");
            if sink.local_root.is_some() {
                // Under the lock (see `lock_local_state`): nobody created a lease since our read.
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

    /// Takes the lease like [`Lease::acquire`], waiting up to `max_wait` while another run holds
    /// it (polled every 50-300 ms): for the short steps shards of one run take it for, one after
    /// the other. Past `max_wait`, or once `cancel` turns true (a signal: the pod has 30 s to
    /// stop), the holder is reported ([`LeaseError::Held`]).
    pub async fn acquire_waiting(
        sink: &Sink,
        pipeline: &str,
        run_id: &str,
        ttl_ms: i64,
        max_wait: std::time::Duration,
        cancel: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Lease, LeaseError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            match Lease::acquire(sink, pipeline, run_id, ttl_ms).await {
                Err(LeaseError::Held { .. })
                    if tokio::time::Instant::now() < deadline && !*cancel.borrow() =>
                {
                    let pause = std::time::Duration::from_millis(fastrand::u64(50..300));
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    /// Extends the lease by its time-to-live from now.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.record.expires_ms = now + self.ttl_ms;
        self.record.expires = format_rfc3339(self.record.expires_ms);
        let body =
            PutPayload::from(serde_json::to_vec_pretty(&self.record).expect("lease serializes"));
        let key = self.sink.key(&self.path);
        let _local_lock = lock_local_state(&self.sink).await?;
        if self.sink.local_root.is_some() {
            // No conditional update on local disk: check under the lock that it is still ours
            // (a run that outlived its lease may have been taken over).
            match read_holder(&self.sink, &self.path).await? {
                Some(h) if h.run_id == self.record.run_id => {}
                other => {
                    return Err(LeaseError::Lost {
                        path: self.path.clone(),
                        holder: other.map(|h| h.run_id),
                    });
                }
            }
        }
        let mode = match (&self.version, self.sink.local_root.is_some()) {
            (Some(v), false) => PutMode::Update(v.clone()),
            _ => PutMode::Overwrite,
        };
        let r = match self
            .sink
            .store
            .put_opts(&key, body, PutOptions::from(mode))
            .await
        {
            Ok(r) => r,
            // S3: the lease changed since this run last wrote it (its e-tag no longer
            // matches): another run took it over (found by the heartbeat test on S3).
            Err(object_store::Error::Precondition { .. }) => {
                let holder = read_holder(&self.sink, &self.path).await?;
                return Err(LeaseError::Lost {
                    path: self.path.clone(),
                    holder: holder.map(|h| h.run_id),
                });
            }
            Err(e) => return Err(store_err("renew", &self.path, e).into()),
        };
        self.version = Some(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        });
        Ok(())
    }

    /// Keeps the lease alive from now on: see [`LeaseKeeper`].
    pub fn keep(self) -> LeaseKeeper {
        LeaseKeeper::start(self)
    }

    /// Gives the lease back (deletes it if it is still ours).
    pub async fn release(self) -> Result<(), LeaseError> {
        let current = read_holder(&self.sink, &self.path).await?;
        if current.is_some_and(|c| c.run_id == self.record.run_id) {
            self.sink.delete_if_exists(&self.path).await?;
        }
        Ok(())
    }

    /// Who holds the lease of `pipeline` now, as the sink has it (`None`: nobody, or a record
    /// a crash left unreadable), for `vscope-etl status`.
    pub async fn holder(sink: &Sink, pipeline: &str) -> Result<Option<LeaseRecord>, StoreError> {
        read_holder(sink, &Lease::path(pipeline)).await
    }
}

/// The leases of `pipeline`'s shards (`_state/<pipeline>.s<I>of<N>.lease`, taken by
/// `--shard I/N` runs) as the sink holds them, by shard (`I/N`), expired ones included: for
/// `vscope-etl status`, and for an unsharded run (the shard, the lease key, its record), which must not run while shards do
/// ([`LeaseRecord::is_live`]).
pub async fn shard_holders(
    sink: &Sink,
    pipeline: &str,
) -> Result<Vec<(String, String, LeaseRecord)>, StoreError> {
    let prefix = format!("{pipeline}.s");
    let mut holders = Vec::new();
    for name in sink.list_dir("_state").await? {
        let Some(tag) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".lease"))
        else {
            continue;
        };
        let Some((i, n)) = tag.split_once("of") else {
            continue;
        };
        let (Ok(i), Ok(n)) = (i.parse::<u32>(), n.parse::<u32>()) else {
            continue;
        };
        let path = format!("_state/{name}");
        if let Some(record) = read_holder(sink, &path).await? {
            holders.push((format!("{i}/{n}"), path, record));
        }
    }
    holders.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(holders)
}

impl LeaseRecord {
    /// True when the lease still binds at `now_ms`: not expired, and not left by a process of
    /// this host that is gone.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms && !holder_is_dead_here(self)
    }
}

/// The record at `path` (`None`: no object, or one that does not parse, as a crash while
/// writing it leaves).
async fn read_holder(sink: &Sink, path: &str) -> Result<Option<LeaseRecord>, StoreError> {
    let bytes = sink.get_opt(path).await?;
    Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// A held lease renewed by a background task every third of its time-to-live, so that a run of
/// any length keeps it while a dead one loses it within the time-to-live. The run asks
/// [`LeaseKeeper::check`] before each commit: once the lease was taken over, or could not be
/// renewed for longer than its time-to-live (a sink that refuses the renewals, a stalled
/// process), nothing more is committed. Failed renewals are retried at the next beat.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: std::sync::Arc<tokio::sync::Mutex<Lease>>,
    beat: std::sync::Arc<std::sync::Mutex<Beat>>,
    path: String,
    ttl_ms: i64,
    task: tokio::task::JoinHandle<()>,
}

/// What the heartbeat knows.
#[derive(Debug)]
struct Beat {
    /// When the lease was last renewed (or taken), ms since the epoch.
    renewed_ms: i64,
    /// The last renewal's error, if it failed.
    last_error: Option<String>,
    /// Taken over by this run (its id), if another run holds it now.
    lost_to: Option<Option<String>>,
}

impl LeaseKeeper {
    fn start(lease: Lease) -> LeaseKeeper {
        let ttl_ms = lease.ttl_ms.max(3);
        let path = lease.path.clone();
        let beat = std::sync::Arc::new(std::sync::Mutex::new(Beat {
            renewed_ms: chrono::Utc::now().timestamp_millis(),
            last_error: None,
            lost_to: None,
        }));
        let lease = std::sync::Arc::new(tokio::sync::Mutex::new(lease));
        let (held, state) = (lease.clone(), beat.clone());
        let period = std::time::Duration::from_millis((ttl_ms / 3) as u64);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let renewed = held.lock().await.renew().await;
                let mut b = state.lock().expect("beat lock");
                match renewed {
                    Ok(()) => {
                        b.renewed_ms = chrono::Utc::now().timestamp_millis();
                        b.last_error = None;
                    }
                    Err(LeaseError::Lost { holder, .. }) => {
                        b.lost_to = Some(holder);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the run lease; trying again at the next beat");
                        b.last_error = Some(e.to_string());
                    }
                }
            }
        });
        LeaseKeeper {
            lease,
            beat,
            path,
            ttl_ms,
            task,
        }
    }

    /// `Ok` while the lease is this run's: not taken over, and renewed within its
    /// time-to-live.
    pub fn check(&self) -> Result<(), LeaseError> {
        let b = self.beat.lock().expect("beat lock");
        if let Some(holder) = &b.lost_to {
            return Err(LeaseError::Lost {
                path: self.path.clone(),
                holder: holder.clone(),
            });
        }
        let since = chrono::Utc::now().timestamp_millis() - b.renewed_ms;
        if since > self.ttl_ms {
            return Err(LeaseError::Expired {
                path: self.path.clone(),
                millis: since,
                last: b
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no renewal ran (the process stalled)".into()),
            });
        }
        Ok(())
    }

    /// [`LeaseKeeper::release`] at the end of a run or a step, where a failure only delays the
    /// next holder until the lease expires: logged, not returned.
    pub async fn release_or_warn(self) {
        let path = self.path.clone();
        if let Err(e) = self.release().await {
            tracing::warn!(lease = %path, error = %e, "could not release the lease; it expires by itself");
        }
    }

    /// Stops the heartbeat and gives the lease back (deletes it if it is still ours).
    pub async fn release(self) -> Result<(), LeaseError> {
        self.task.abort();
        let _ = self.task.await;
        match std::sync::Arc::try_unwrap(self.lease) {
            Ok(lease) => lease.into_inner().release().await,
            Err(_) => unreachable!("the heartbeat task held the only other reference"),
        }
    }
}

/// Local disk has no conditional update: a taker that judged a lease stale and then deleted it
/// could delete the lease another taker created in between. So on a local sink every taker
/// and every renewal runs under an exclusive `flock` of the `_state` directory (held by the
/// returned file until it is dropped), which makes read, judge, delete and create one step.
async fn lock_local_state(sink: &Sink) -> Result<Option<std::fs::File>, LeaseError> {
    Ok(sink.lock_state_dir().await?)
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

    /// A local sink whose lease `p` is held by a process of this host that no longer exists.
    async fn sink_with_dead_holder() -> (tempfile::TempDir, Sink) {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let dead = LeaseRecord {
            run_id: "dead".into(),
            host: host_name(),
            pid: u32::MAX - 1,
            acquired: "x".into(),
            expires_ms: i64::MAX,
            expires: "later".into(),
            boot_id: None,
            start_ticks: None,
        };
        sink.put(&Lease::path("p"), serde_json::to_vec(&dead).unwrap())
            .await
            .unwrap();
        (dir, sink)
    }

    /// A holder record for process `pid` of this host, as `acquire` writes it.
    fn record_of(pid: u32) -> LeaseRecord {
        LeaseRecord {
            run_id: "holder".into(),
            host: host_name(),
            pid,
            acquired: "x".into(),
            expires_ms: i64::MAX,
            expires: "later".into(),
            boot_id: boot_id(),
            start_ticks: process_stat(pid).map(|(_, t)| t),
        }
    }

    /// A live holder is alive; the same pid with another start time (a reused pid) or another
    /// boot is not; a killed holder its parent has not reaped yet (a zombie) is dead; so is a
    /// pid that no longer exists. Leases of older versions (no boot id, no start time) are
    /// judged by the pid alone.
    #[test]
    fn a_holder_is_alive_only_as_the_same_running_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = record_of(child.id());
        assert!(live.start_ticks.is_some(), "start time read from /proc");
        assert!(!holder_is_dead_here(&live), "a running holder");
        let old_format = LeaseRecord {
            boot_id: None,
            start_ticks: None,
            ..live.clone()
        };
        assert!(!holder_is_dead_here(&old_format));
        let reused = LeaseRecord {
            start_ticks: live.start_ticks.map(|t| t + 1),
            ..live.clone()
        };
        assert!(holder_is_dead_here(&reused), "a reused pid");
        let rebooted = LeaseRecord {
            boot_id: Some("another-boot".into()),
            ..live.clone()
        };
        assert!(holder_is_dead_here(&rebooted), "another boot");

        child.kill().unwrap();
        // Killed but not reaped: a zombie until `wait`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_stat(child.id()).is_some_and(|(state, _)| state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "the child never died");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(holder_is_dead_here(&live), "a zombie holder is dead");
        assert!(
            holder_is_dead_here(&old_format),
            "whatever the lease's version"
        );
        child.wait().unwrap();
        assert!(holder_is_dead_here(&live), "a reaped holder is dead");
    }

    #[test]
    fn process_stat_reads_a_command_name_with_spaces_and_parentheses() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a) b (c");
        std::fs::copy("/bin/sleep", &odd).unwrap();
        let mut child = std::process::Command::new(&odd).arg("30").spawn().unwrap();
        let (state, started) = process_stat(child.id()).expect("a running process");
        assert!(matches!(state, 'R' | 'S' | 'D'), "{state}");
        let (_, mine) = process_stat(std::process::id()).unwrap();
        assert!(started >= mine, "started after this test process");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_dead_local_holder_is_taken_over_at_once() {
        let (_dir, sink) = sink_with_dead_holder().await;
        assert!(Lease::acquire(&sink, "p", "new", 60_000).await.is_ok());
    }

    #[tokio::test]
    async fn a_local_run_that_lost_its_lease_is_told_at_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let mut slow = Lease::acquire(&sink, "p", "slow", 1).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let _new = Lease::acquire(&sink, "p", "new", 60_000).await.unwrap();
        let err = slow.renew().await.unwrap_err();
        assert!(matches!(err, LeaseError::Lost { .. }), "{err}");
        assert!(err.to_string().contains("new"), "{err}");
    }

    /// A local sink and the lease of pipeline `p` taken by run `kept` for 300 ms, kept alive.
    async fn kept_local_lease() -> (tempfile::TempDir, Sink, LeaseKeeper) {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let keeper = Lease::acquire(&sink, "p", "kept", 300)
            .await
            .unwrap()
            .keep();
        (dir, sink, keeper)
    }

    /// The heartbeat keeps a short lease alive for longer than its time-to-live, and a run
    /// that tries to take it meanwhile is refused.
    #[tokio::test]
    async fn the_heartbeat_keeps_a_short_lease() {
        let (_dir, sink, keeper) = kept_local_lease().await;
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        keeper.check().unwrap();
        let held = Lease::acquire(&sink, "p", "other", 300).await.unwrap_err();
        assert!(matches!(held, LeaseError::Held { .. }), "{held}");
        keeper.release().await.unwrap();
        assert!(sink.get_opt(&Lease::path("p")).await.unwrap().is_none());
    }

    /// A lease taken over (here: rewritten by another run, as a takeover after expiry does)
    /// is seen at the next beat, and `check` names the new holder: the run must not commit.
    #[tokio::test]
    async fn a_kept_lease_taken_over_fails_the_check() {
        let (dir, sink, keeper) = kept_local_lease().await;
        let mut other = record_of(1);
        other.run_id = "usurper".into();
        std::fs::write(
            dir.path().join(Lease::path("p")),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let err = keeper.check().unwrap_err();
        assert!(matches!(err, LeaseError::Lost { .. }), "{err}");
        assert!(err.to_string().contains("usurper"), "{err}");
        keeper.release().await.unwrap();
        // Not ours: left to its holder.
        assert!(sink.get_opt(&Lease::path("p")).await.unwrap().is_some());
    }

    /// Renewals that keep failing (here the `_state` folder became a file) make the lease
    /// expire for the run once its time-to-live has passed since the last renewal: `check`
    /// says so, with the store's error, so the run commits nothing more.
    #[tokio::test]
    async fn renewals_failing_past_the_ttl_expire_the_lease_for_the_run() {
        let (dir, _sink, keeper) = kept_local_lease().await;
        let state = dir.path().join("_state");
        std::fs::remove_dir_all(&state).unwrap();
        std::fs::write(&state, b"not a folder").unwrap();
        keeper.check().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let err = keeper.check().unwrap_err();
        assert!(matches!(err, LeaseError::Expired { .. }), "{err}");
        assert!(err.to_string().contains("last error"), "{err}");
        let _ = keeper.release().await;
    }

    /// Sixteen runs racing to take over a dead holder's lease on local disk: exactly one
    /// wins, the others are told who holds it, and nothing else is left in `_state`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_local_takeovers_have_exactly_one_winner() {
        for round in 0..5 {
            let (dir, sink) = sink_with_dead_holder().await;
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let sink = sink.clone();
                    tokio::spawn(async move {
                        Lease::acquire(&sink, "p", &format!("run-{i}"), 60_000).await
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    Ok(lease) => winners.push(lease.record.run_id.clone()),
                    Err(LeaseError::Held { holder, .. }) => assert_ne!(holder.run_id, "dead"),
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            let on_disk: LeaseRecord =
                serde_json::from_slice(&sink.get_opt(&Lease::path("p")).await.unwrap().unwrap())
                    .unwrap();
            assert_eq!(on_disk.run_id, winners[0]);
            let state: Vec<_> = std::fs::read_dir(dir.path().join("_state"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(state, vec!["p.lease".to_string()], "nothing else is left");
        }
    }
}
