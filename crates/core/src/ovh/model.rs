//! The `dedicatedCloud` objects of API v6 that vscope-etl reads (`reference/api.md` §3.3), as
//! serde types shared by the client and the simulator.
//!
//! Every field the schema marks nullable is an `Option`, and so are a few it does not, because
//! the API has changed these models over the years (fields added, e.g. `guestOsFamily`, or
//! removed): a missing field becomes a null column, never a failed inventory. Unknown fields are
//! ignored for the same reason. Field docs give the API's units.

use serde::{Deserialize, Serialize};

/// A `{unit, value}` pair (`complexType.UnitAndValue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitAndValue<T> {
    /// Unit, e.g. `GB`, `MHz`.
    pub unit: String,
    /// Value in `unit`.
    pub value: T,
}

/// `dedicatedCloud.Datacenter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Datacenter {
    /// API id.
    pub datacenter_id: i64,
    /// vSphere datacenter name, e.g. `pcc-37-187-228-180_datacenter869`: the `datacenter`
    /// metric label (`reference/api.md` §3.4).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Commercial name (enum).
    #[serde(default)]
    pub commercial_name: Option<String>,
    /// Commercial range.
    #[serde(default)]
    pub commercial_range_name: Option<String>,
    /// vSphere version.
    #[serde(default)]
    pub version: Option<String>,
}

/// `dedicatedCloud.Host`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// API id.
    pub host_id: i64,
    /// Name of the host, its IP address: the `host` metric label.
    pub name: String,
    /// Host profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Profile code.
    #[serde(default)]
    pub profile_code: Option<String>,
    /// Rack.
    #[serde(default)]
    pub rack: Option<String>,
    /// adding, delivered, error, removing, unknown.
    #[serde(default)]
    pub state: Option<String>,
    /// freeSpare, hourly, monthly, undefined.
    #[serde(default)]
    pub billing_type: Option<String>,
    /// Total CPU frequency.
    #[serde(default)]
    pub cpu: Option<UnitAndValue<f64>>,
    /// Memory.
    #[serde(default)]
    pub ram: Option<UnitAndValue<i64>>,
    /// vSphere cluster.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// connected, disconnected, notResponding.
    #[serde(default)]
    pub connection_state: Option<String>,
    /// MHz.
    #[serde(default)]
    pub cpu_max: Option<i64>,
    /// MHz per core.
    #[serde(default)]
    pub cpu_max_core: Option<i64>,
    /// Physical cores.
    #[serde(default)]
    pub cpu_num: Option<i64>,
    /// MHz.
    #[serde(default)]
    pub cpu_used: Option<i64>,
    /// In maintenance mode.
    #[serde(default)]
    pub in_maintenance: Option<bool>,
    /// MB.
    #[serde(default)]
    pub memory_used: Option<f64>,
    /// Host this one replaces (spares).
    #[serde(default)]
    pub parent_host_id: Option<i64>,
    /// Resource name.
    #[serde(default)]
    pub resource_name: Option<String>,
    /// Seconds.
    #[serde(default)]
    pub uptime: Option<i64>,
    /// VMs on the host.
    #[serde(default)]
    pub vm_total: Option<i64>,
    /// vCPUs of the VMs on the host.
    #[serde(default)]
    pub vm_vcpu_total: Option<i64>,
}

/// One datastore of a VM (`dedicatedCloud.vmFiler`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmFiler {
    /// Datastore name: the `datastore` metric label.
    #[serde(default)]
    pub name: Option<String>,
    /// Space committed on it, GB.
    #[serde(default)]
    pub committed: Option<f64>,
}

/// `dedicatedCloud.Vm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vm {
    /// API id.
    pub vm_id: i64,
    /// vSphere managed-object reference, e.g. `vm-01254`: the `vm` metric label.
    pub mo_ref: String,
    /// deleted, poweredOff, poweredOn, suspended.
    #[serde(default)]
    pub power_state: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Name of its host (the host IP): the `host` metric label.
    #[serde(default)]
    pub host_name: Option<String>,
    /// vSphere cluster.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// vSphere folder.
    #[serde(default)]
    pub folder_name: Option<String>,
    /// Guest OS family.
    #[serde(default)]
    pub guest_os_family: Option<String>,
    /// SPLA licence (enum).
    #[serde(default)]
    pub license: Option<String>,
    /// vCPUs.
    #[serde(default)]
    pub cpu_num: Option<i64>,
    /// MHz.
    #[serde(default)]
    pub cpu_max: Option<f64>,
    /// MHz.
    #[serde(default)]
    pub cpu_used: Option<i64>,
    /// ms.
    #[serde(default)]
    pub cpu_ready: Option<f64>,
    /// Percent.
    #[serde(default)]
    pub cpu_ready_percent: Option<f64>,
    /// MB.
    #[serde(default)]
    pub memory_max: Option<i64>,
    /// MB.
    #[serde(default)]
    pub memory_used: Option<i64>,
    /// Shared pages (text).
    #[serde(default)]
    pub memory_tps: Option<String>,
    /// KB/s.
    #[serde(default)]
    pub net_rx: Option<f64>,
    /// KB/s.
    #[serde(default)]
    pub net_tx: Option<f64>,
    /// Packets per second.
    #[serde(default)]
    pub net_packet_rx: Option<f64>,
    /// Packets per second.
    #[serde(default)]
    pub net_packet_tx: Option<f64>,
    /// ms.
    #[serde(default)]
    pub read_latency: Option<f64>,
    /// ms.
    #[serde(default)]
    pub write_latency: Option<f64>,
    /// IO per second.
    #[serde(default)]
    pub read_per_second: Option<f64>,
    /// IO per second.
    #[serde(default)]
    pub write_per_second: Option<f64>,
    /// KB/s.
    #[serde(default)]
    pub read_rate: Option<f64>,
    /// KB/s.
    #[serde(default)]
    pub write_rate: Option<f64>,
    /// Snapshots.
    #[serde(default)]
    pub snapshot_num: Option<i64>,
    /// VMware Tools state.
    #[serde(default)]
    pub vmware_tools: Option<String>,
    /// VMware Tools version.
    #[serde(default)]
    pub vmware_tools_version: Option<String>,
    /// Fault tolerance role.
    #[serde(default)]
    pub role_ft: Option<String>,
    /// Fault tolerance state (enum).
    #[serde(default)]
    pub state_ft: Option<String>,
    /// Datastores holding its disks.
    #[serde(default)]
    pub filers: Option<Vec<VmFiler>>,
}

/// `dedicatedCloud.Filer` (a datastore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filer {
    /// API id.
    pub filer_id: i64,
    /// Datastore name, e.g. `pcc-000443`: the `datastore` metric label.
    pub name: String,
    /// Full profile.
    #[serde(default)]
    pub full_profile: Option<String>,
    /// Profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Master node.
    #[serde(default)]
    pub master: Option<String>,
    /// Slave node.
    #[serde(default)]
    pub slave: Option<String>,
    /// Managed by OVHcloud.
    #[serde(default)]
    pub is_managed_by_ovh: Option<bool>,
    /// Capacity.
    #[serde(default)]
    pub size: Option<UnitAndValue<i64>>,
    /// adding, delivered, error, removing, unknown.
    #[serde(default)]
    pub state: Option<String>,
    /// master, slave.
    #[serde(default)]
    pub active_node: Option<String>,
    /// offline, online.
    #[serde(default)]
    pub connection_state: Option<String>,
    /// Billing type.
    #[serde(default)]
    pub billing_type: Option<String>,
    /// Resource name.
    #[serde(default)]
    pub resource_name: Option<String>,
    /// GB.
    #[serde(default)]
    pub space_free: Option<f64>,
    /// GB (the API spells it `spaceProvisionned`).
    #[serde(default, rename = "spaceProvisionned")]
    pub space_provisioned: Option<f64>,
    /// GB.
    #[serde(default)]
    pub space_used: Option<f64>,
    /// VMs on the datastore.
    #[serde(default)]
    pub vm_total: Option<i64>,
}

/// `dedicatedCloud.User` (the fields vscope-etl uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// API id.
    pub user_id: i64,
    /// User name, e.g. `admin`.
    pub name: String,
    /// Login (`name@pcc-...`).
    #[serde(default)]
    pub login: Option<String>,
    /// creating, deleting, delivered, error.
    #[serde(default)]
    pub state: Option<String>,
}

/// `dedicatedCloud.metricsToken`: the vScope read token and where to use it.
///
/// Deserialize only: a token must never be written back out by accident (a manifest, a log).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsToken {
    /// The read token (sent as the HTTP Basic password to the OpenTSDB endpoint).
    pub token: crate::secret::Secret,
    /// OpenTSDB endpoint, e.g. `https://opentsdb.gra1-ovh.metrics.ovh.net`.
    pub opentsdb_endpoint: String,
    /// Warp 10 endpoint, e.g. `https://warp10.gra1-ovh.metrics.ovh.net`.
    pub warp_endpoint: String,
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsToken")
            .field("token", &self.token)
            .field("opentsdb_endpoint", &self.opentsdb_endpoint)
            .field("warp_endpoint", &self.warp_endpoint)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_api_shapes_and_tolerates_missing_and_extra_fields() {
        let vm: Vm = serde_json::from_str(
            r#"{"vmId":7,"moRef":"vm-01254","powerState":"poweredOn","name":"web",
                "filers":[{"name":"pcc-000443","committed":12.5,"disks":[{"id":1,"capacity":40}]}],
                "someFutureField":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(vm.mo_ref, "vm-01254");
        assert_eq!(vm.filers.unwrap()[0].name.as_deref(), Some("pcc-000443"));
        assert_eq!(vm.cpu_num, None);
        let f: Filer = serde_json::from_str(
            r#"{"filerId":1,"name":"pcc-000443","size":{"unit":"GB","value":3072},"spaceProvisionned":10.5}"#,
        )
        .unwrap();
        assert_eq!(f.space_provisioned, Some(10.5));
        assert_eq!(f.size.unwrap().value, 3072);
        let t: MetricsToken = serde_json::from_str(
            r#"{"token":"tok-secret","opentsdbEndpoint":"https://o","warpEndpoint":"https://w"}"#,
        )
        .unwrap();
        assert!(!format!("{t:?}").contains("tok-secret"));
        assert_eq!(t.token.expose(), "tok-secret");
    }
}
