//! The live inventory of a PCC through API v6: every datacenter, then every filer, host and VM
//! of each (`reference/api.md` §3.3), and what it tells about the metrics.
//!
//! The objects are the dimension tables analysts join the metrics with, and their names are the
//! metric labels (§3.4): `Datacenter.name` is the `datacenter` label, `Host.name` the `host`
//! label, `Vm.moRef` the `vm` label and `Filer.name` the `datastore` label. So the inventory can
//! also say which series *should* exist ([`Inventory::objects`], used by
//! `source.discovery = "inventory"`), and a run can report the series the inventory has but the
//! metrics server does not, and the reverse ([`reconcile`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::client::{OvhClient, OvhError};
use super::model::{Datacenter, Filer, Host, Vm};
use crate::catalogue::Component;
use crate::extract::SeriesData;
use crate::load::writer::WrittenFile;
use crate::plan::MetricPlan;

/// Entries listed by name in each direction of a [`Reconciliation`]; the counts are exact.
pub const MAX_LISTED: usize = 200;

/// One datacenter and its objects, each list sorted by its label.
#[derive(Debug, Clone, PartialEq)]
pub struct DatacenterInventory {
    /// The datacenter.
    pub datacenter: Datacenter,
    /// Its hosts, by name.
    pub hosts: Vec<Host>,
    /// Its VMs, by moRef.
    pub vms: Vec<Vm>,
    /// Its datastores, by name.
    pub filers: Vec<Filer>,
}

/// A snapshot of a PCC's objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The PCC's serviceName.
    pub service_name: String,
    /// When the snapshot was taken (ms since the epoch, whole seconds).
    pub snapshot_ms: i64,
    /// Datacenters sorted by name.
    pub datacenters: Vec<DatacenterInventory>,
}

/// What to fetch for one object, and where it goes.
enum Job {
    Host(usize, i64),
    Vm(usize, i64),
    Filer(usize, i64),
}

enum Fetched {
    Host(usize, Host),
    Vm(usize, Vm),
    Filer(usize, Filer),
}

impl Inventory {
    /// Lists the datacenters of `service_name`, then every host, VM and filer of each, and
    /// fetches each object with at most `concurrency` calls in flight. An object deleted
    /// between its listing and its fetch (404) is left out; any other failure fails the whole
    /// snapshot, since a partial dimension table would silently drop rows from joins.
    pub async fn fetch(
        client: &OvhClient,
        service_name: &str,
        concurrency: usize,
        snapshot_ms: i64,
    ) -> Result<Inventory, OvhError> {
        let sn = service_name;
        let concurrency = concurrency.max(1);
        let mut ids: Vec<i64> = client
            .get(
                "/dedicatedCloud/{serviceName}/datacenter",
                &format!("/dedicatedCloud/{sn}/datacenter"),
            )
            .await?;
        ids.sort_unstable();
        let mut listings = futures::stream::iter(ids)
            .map(|id| async move {
                let base = format!("/dedicatedCloud/{sn}/datacenter/{id}");
                let dc: Datacenter = client
                    .get(
                        "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}",
                        &base,
                    )
                    .await?;
                let hosts: Vec<i64> = client
                    .get(
                        "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/host",
                        &format!("{base}/host"),
                    )
                    .await?;
                let vms: Vec<i64> = client
                    .get(
                        "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/vm",
                        &format!("{base}/vm"),
                    )
                    .await?;
                let filers: Vec<i64> = client
                    .get(
                        "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/filer",
                        &format!("{base}/filer"),
                    )
                    .await?;
                Ok::<_, OvhError>((dc, hosts, vms, filers))
            })
            .buffered(concurrency);
        let mut datacenters = Vec::new();
        let mut jobs = Vec::new();
        while let Some(listed) = listings.next().await {
            let (dc, mut hosts, mut vms, mut filers) = listed?;
            let i = datacenters.len();
            hosts.sort_unstable();
            vms.sort_unstable();
            filers.sort_unstable();
            jobs.extend(hosts.into_iter().map(|id| Job::Host(i, id)));
            jobs.extend(vms.into_iter().map(|id| Job::Vm(i, id)));
            jobs.extend(filers.into_iter().map(|id| Job::Filer(i, id)));
            datacenters.push(DatacenterInventory {
                datacenter: dc,
                hosts: Vec::new(),
                vms: Vec::new(),
                filers: Vec::new(),
            });
        }
        drop(listings);
        let dc_ids: Vec<i64> = datacenters
            .iter()
            .map(|d| d.datacenter.datacenter_id)
            .collect();
        let dc_ids = &dc_ids;
        let mut objects = futures::stream::iter(jobs)
            .map(|job| async move {
                match job {
                    Job::Host(i, id) => client
                        .get(
                            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/host/{hostId}",
                            &format!("/dedicatedCloud/{sn}/datacenter/{}/host/{id}", dc_ids[i]),
                        )
                        .await
                        .map(|h| Fetched::Host(i, h)),
                    Job::Vm(i, id) => client
                        .get(
                            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/vm/{vmId}",
                            &format!("/dedicatedCloud/{sn}/datacenter/{}/vm/{id}", dc_ids[i]),
                        )
                        .await
                        .map(|v| Fetched::Vm(i, v)),
                    Job::Filer(i, id) => client
                        .get(
                            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/filer/{filerId}",
                            &format!("/dedicatedCloud/{sn}/datacenter/{}/filer/{id}", dc_ids[i]),
                        )
                        .await
                        .map(|f| Fetched::Filer(i, f)),
                }
            })
            .buffered(concurrency);
        while let Some(r) = objects.next().await {
            match r {
                Ok(Fetched::Host(i, h)) => datacenters[i].hosts.push(h),
                Ok(Fetched::Vm(i, v)) => datacenters[i].vms.push(v),
                Ok(Fetched::Filer(i, f)) => datacenters[i].filers.push(f),
                Err(e) if e.is_not_found() => {
                    tracing::info!(error = %e, "an object disappeared between its listing and its fetch; left out");
                }
                Err(e) => return Err(e),
            }
        }
        drop(objects);
        for d in &mut datacenters {
            d.hosts.sort_by(|a, b| a.name.cmp(&b.name));
            d.vms.sort_by(|a, b| a.mo_ref.cmp(&b.mo_ref));
            d.filers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        datacenters.sort_by(|a, b| a.datacenter.name.cmp(&b.datacenter.name));
        Ok(Inventory {
            service_name: service_name.to_string(),
            snapshot_ms,
            datacenters,
        })
    }

    /// Number of (datacenters, filers, hosts, VMs).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let d = &self.datacenters;
        (
            d.len(),
            d.iter().map(|x| x.filers.len()).sum(),
            d.iter().map(|x| x.hosts.len()).sum(),
            d.iter().map(|x| x.vms.len()).sum(),
        )
    }

    /// The `(datacenter label, object label)` pairs of a component's objects, sorted: the label
    /// combinations its metrics should have (`nicname` aside: the API does not list NICs).
    pub fn objects(&self, component: Component) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for d in &self.datacenters {
            let dc = &d.datacenter.name;
            match component {
                Component::Filer => {
                    out.extend(d.filers.iter().map(|f| (dc.clone(), f.name.clone())))
                }
                Component::Host => out.extend(d.hosts.iter().map(|h| (dc.clone(), h.name.clone()))),
                Component::Vm => out.extend(d.vms.iter().map(|v| (dc.clone(), v.mo_ref.clone()))),
            }
        }
        out.sort();
        out
    }

    /// The datacenters holding at least one object of `component`, sorted: the units a metric
    /// of that component needs under `source.discovery = "inventory"`.
    pub fn datacenters_with(&self, component: Component) -> Vec<String> {
        let mut dcs: Vec<String> = self
            .objects(component)
            .into_iter()
            .map(|(dc, _)| dc)
            .collect();
        dcs.dedup();
        dcs
    }
}

/// The label that names a component's object in its metrics.
pub fn object_label(component: Component) -> &'static str {
    match component {
        Component::Filer => "datastore",
        Component::Host => "host",
        Component::Vm => "vm",
    }
}

/// A series as the inventory can know it: metric, datacenter and object (no `nicname`).
pub type SeriesKey = (String, String, String);

/// The series a run received from the metrics server, and the (metric, datacenter) units it
/// fetched successfully, for [`reconcile`].
#[derive(Debug, Clone, Default)]
pub struct SeenSeries {
    series: BTreeSet<SeriesKey>,
    fetched: BTreeSet<(String, Option<String>)>,
}

impl SeenSeries {
    /// Records one successful unit: `metric` fetched for `datacenter` (`None`: all), and the
    /// series it answered. A series lacking a label is recorded with an empty value, so it shows
    /// up as unknown to the inventory.
    pub fn record(
        &mut self,
        metric: &str,
        component: Component,
        datacenter: Option<&str>,
        series: &[SeriesData],
    ) {
        self.fetched
            .insert((metric.to_string(), datacenter.map(str::to_string)));
        let label = object_label(component);
        for s in series {
            let get = |k: &str| s.tags.get(k).cloned().unwrap_or_default();
            self.series
                .insert((s.metric.clone(), get("datacenter"), get(label)));
        }
    }

    /// Adds what another window saw.
    pub fn merge(&mut self, other: SeenSeries) {
        self.series.extend(other.series);
        self.fetched.extend(other.fetched);
    }

    /// True when no unit was recorded.
    pub fn is_empty(&self) -> bool {
        self.fetched.is_empty()
    }
}

/// One series in a [`Reconciliation`] list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesRef {
    /// Metric.
    pub metric: String,
    /// `datacenter` label.
    pub datacenter: String,
    /// The object label's name: `vm`, `host` or `datastore`.
    pub label: String,
    /// Its value: the VM moRef, host IP or datastore name.
    pub value: String,
}

/// The series the inventory has and the metrics server does not, and the reverse, over the
/// metrics and datacenters a run fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Series the inventory implies (one per metric and object; NICs are not known to it).
    pub inventory_series: usize,
    /// Distinct series received from the metrics server (NICs of a host counted once).
    pub server_series: usize,
    /// Series in both.
    pub matched: usize,
    /// How many inventory series the server had no point of in the run's range (an object
    /// created recently, powered off for the whole range, or not monitored).
    pub missing_on_server_count: usize,
    /// The first [`MAX_LISTED`] of them.
    pub missing_on_server: Vec<SeriesRef>,
    /// How many server series name an object the inventory does not have (deleted since, or a
    /// label that does not match the API's names).
    pub not_in_inventory_count: usize,
    /// The first [`MAX_LISTED`] of them.
    pub not_in_inventory: Vec<SeriesRef>,
}

/// Compares the inventory with what a run saw. Expected series are the inventory's objects
/// for every planned metric, except (metric, datacenter) units whose every attempt failed in
/// this run (their absence says nothing about the server). `None` when nothing was fetched.
pub fn reconcile(
    inventory: &Inventory,
    metrics: &[MetricPlan],
    seen: &SeenSeries,
    failed: &[(String, Option<String>)],
) -> Option<Reconciliation> {
    if seen.is_empty() {
        return None;
    }
    let fetched = |m: &str, dc: &str| {
        seen.fetched.contains(&(m.to_string(), None))
            || seen
                .fetched
                .contains(&(m.to_string(), Some(dc.to_string())))
    };
    let failed_unit = |m: &str, dc: &str| {
        failed
            .iter()
            .any(|(fm, fdc)| fm == m && fdc.as_deref().is_none_or(|d| d == dc))
    };
    let mut expected: BTreeMap<SeriesKey, Component> = BTreeMap::new();
    let mut components = BTreeMap::new();
    for m in metrics {
        components.insert(m.metric.clone(), m.component);
        for (dc, obj) in inventory.objects(m.component) {
            if failed_unit(&m.metric, &dc) && !fetched(&m.metric, &dc) {
                continue;
            }
            expected.insert((m.metric.clone(), dc, obj), m.component);
        }
    }
    let to_ref = |(metric, dc, obj): &SeriesKey, c: Component| SeriesRef {
        metric: metric.clone(),
        datacenter: dc.clone(),
        label: object_label(c).to_string(),
        value: obj.clone(),
    };
    let missing: Vec<SeriesRef> = expected
        .iter()
        .filter(|(k, _)| !seen.series.contains(*k))
        .map(|(k, c)| to_ref(k, *c))
        .collect();
    let unknown: Vec<SeriesRef> = seen
        .series
        .iter()
        .filter(|k| !expected.contains_key(*k))
        .map(|k| {
            let c = components.get(&k.0).copied().unwrap_or(Component::Vm);
            to_ref(k, c)
        })
        .collect();
    let matched = expected.len() - missing.len();
    Some(Reconciliation {
        inventory_series: expected.len(),
        server_series: seen.series.len(),
        matched,
        missing_on_server_count: missing.len(),
        missing_on_server: missing.into_iter().take(MAX_LISTED).collect(),
        not_in_inventory_count: unknown.len(),
        not_in_inventory: unknown.into_iter().take(MAX_LISTED).collect(),
    })
}

/// What a run or the `inventory` command did with the inventory (part of the run manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InventoryReport {
    /// The PCC.
    pub service_name: String,
    /// Snapshot time (RFC 3339).
    pub snapshot: String,
    /// Datacenters.
    pub datacenters: usize,
    /// Datastores.
    pub filers: usize,
    /// Hosts.
    pub hosts: usize,
    /// VMs.
    pub vms: usize,
    /// API v6 requests (retries and `/auth/time` included).
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// Bytes of the API v6 answers read whole (2xx), decoded.
    #[serde(default)]
    pub bytes_received: u64,
    /// API v6 body bytes received from the network (compressed when gzip).
    #[serde(default)]
    pub bytes_on_wire: u64,
    /// Snapshot files written (`filers`, `hosts`, `vms`).
    pub files: Vec<WrittenFile>,
    /// Why the inventory could not be refreshed, when the run went on without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Inventory versus metrics server, when the run fetched metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
}

impl InventoryReport {
    /// The report of a snapshot (no files yet).
    pub fn of(inventory: &Inventory, client: &OvhClient) -> InventoryReport {
        let (datacenters, filers, hosts, vms) = inventory.counts();
        let stats = client.stats();
        InventoryReport {
            service_name: inventory.service_name.clone(),
            snapshot: crate::semantics::time::format_rfc3339(inventory.snapshot_ms),
            datacenters,
            filers,
            hosts,
            vms,
            requests: stats.requests.load(std::sync::atomic::Ordering::Relaxed),
            retries: stats.retries.load(std::sync::atomic::Ordering::Relaxed),
            bytes_received: stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
            bytes_on_wire: stats
                .bytes_on_wire
                .load(std::sync::atomic::Ordering::Relaxed),
            files: Vec::new(),
            error: None,
            reconciliation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dc(name: &str, vms: &[&str]) -> DatacenterInventory {
        DatacenterInventory {
            datacenter: Datacenter {
                datacenter_id: 1,
                name: name.into(),
                description: None,
                commercial_name: None,
                commercial_range_name: None,
                version: None,
            },
            hosts: Vec::new(),
            vms: vms
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    serde_json::from_value(serde_json::json!({"vmId": i, "moRef": m})).unwrap()
                })
                .collect(),
            filers: Vec::new(),
        }
    }

    fn series(metric: &str, dc: &str, vm: &str) -> SeriesData {
        SeriesData {
            metric: metric.into(),
            tags: [("datacenter", dc), ("vm", vm), ("env", "prod")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ts: vec![1],
            values: vec![1.0],
        }
    }

    fn plan(metric: &str) -> MetricPlan {
        MetricPlan {
            metric: metric.into(),
            component: Component::Vm,
            tables: vec![0],
            datacenters: None,
            series: None,
            split_values: None,
        }
    }

    #[test]
    fn objects_are_label_pairs() {
        let inv = Inventory {
            service_name: "pcc".into(),
            snapshot_ms: 0,
            datacenters: vec![dc("dc2", &["vm-2"]), dc("dc1", &["vm-3", "vm-1"])],
        };
        assert_eq!(
            inv.objects(Component::Vm),
            [
                ("dc1".to_string(), "vm-1".to_string()),
                ("dc1".into(), "vm-3".into()),
                ("dc2".into(), "vm-2".into())
            ]
        );
        assert_eq!(inv.datacenters_with(Component::Vm), ["dc1", "dc2"]);
        assert!(inv.datacenters_with(Component::Host).is_empty());
        assert_eq!(inv.counts(), (2, 0, 0, 3));
    }

    #[test]
    fn reconciliation_reports_both_directions_and_skips_failed_units() {
        let inv = Inventory {
            service_name: "pcc".into(),
            snapshot_ms: 0,
            datacenters: vec![dc("dc1", &["vm-1", "vm-new"]), dc("dc2", &["vm-9"])],
        };
        let m = "vscope.vm.cpu.usage.perc";
        let mut seen = SeenSeries::default();
        assert!(reconcile(&inv, &[plan(m)], &seen, &[]).is_none());
        seen.record(
            m,
            Component::Vm,
            Some("dc1"),
            &[series(m, "dc1", "vm-1"), series(m, "dc1", "vm-gone")],
        );
        // dc2's unit failed: its VM is not reported missing.
        let failed = vec![(m.to_string(), Some("dc2".to_string()))];
        let r = reconcile(&inv, &[plan(m)], &seen, &failed).unwrap();
        assert_eq!(r.inventory_series, 2);
        assert_eq!(r.server_series, 2);
        assert_eq!(r.matched, 1);
        assert_eq!(r.missing_on_server_count, 1);
        assert_eq!(r.missing_on_server[0].value, "vm-new");
        assert_eq!(r.missing_on_server[0].label, "vm");
        assert_eq!(r.not_in_inventory_count, 1);
        assert_eq!(r.not_in_inventory[0].value, "vm-gone");
        // Without the failure, dc2's VM is missing on the server too.
        let r = reconcile(&inv, &[plan(m)], &seen, &[]).unwrap();
        assert_eq!(r.missing_on_server_count, 2);
    }
}
