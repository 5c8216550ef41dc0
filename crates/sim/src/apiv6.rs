//! The OVHcloud API v6 subset vscope-etl uses, served under `/1.0` by the simulator
//! (`reference/api.md` §3), from the same synthetic PCC as the metrics ([`PccObjects`]), so the
//! labels of the series are the names of the objects.
//!
//! # Routes
//! `GET /auth/time` (unauthenticated, a bare integer); `GET /dedicatedCloud`,
//! `/dedicatedCloud/{sn}`, `/datacenter`, `/datacenter/{id}`, `/datacenter/{id}/{host|vm|filer}`
//! and each object; `GET /user` (optional `?name=`), `/user/{id}`; `POST
//! /user/{id}/metricsToken`.
//!
//! # Authentication, checked in this order
//! 1. `X-Ovh-Application` missing or unknown: `403 INVALID_KEY`.
//! 2. `X-Ovh-Consumer` missing: `401 NOT_CREDENTIAL`; unknown: `403 INVALID_CREDENTIAL`.
//! 3. `X-Ovh-Timestamp` missing, not a number, or more than [`MAX_SKEW_SECS`] from the server's
//!    clock: `400 "Query out of time"` (the real message for a stale timestamp is not
//!    documented; this is the simulator's).
//! 4. `X-Ovh-Signature` not the `$1$` SHA-1 of secret, consumer key, method, the full URL as
//!    sent (`http://` + `Host` + path and query) and body: `400 INVALID_SIGNATURE "Invalid
//!    signature"`, as the real API answers (public client bug reports show a 400, not a 403).
//! 5. No access rule of the consumer key covers the call: `403 NOT_GRANTED_CALL`.
//!
//! Error bodies carry both shapes seen from the real API, `class`/`message` and
//! `errorCode`/`httpCode`, and every answer has an `X-Ovh-QueryID` header.
//!
//! # Values
//! Identities (ids, names, moRefs, hosts, datastores, sizes) are fixed by the config. Live
//! fields (CPU and memory used, network, latencies, a filer's used space) are the latest points
//! of the object's series at request time, so the inventory agrees with the metrics. The
//! `metricsToken` answer's `opentsdbEndpoint` is this server; its `warpEndpoint` only fills the
//! field (`/warp10` here, not served).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::SimConfig;
use super::model::{DcObjects, Pcc, PccObjects, VmObject};
use vscope_core::ovh::model::{Datacenter, Filer, Host, UnitAndValue, User, Vm, VmFiler};
use vscope_core::ovh::sign::{signature, signatures_equal};

/// Largest distance, in seconds, between a request's timestamp and the server's clock.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// The PCC users: `(userId, name)`. `admin` is the one pcc-manager asks a token for.
const USERS: [(i64, &str); 2] = [(1, "admin"), (2, "vscope-reader")];

/// Hosts boot at this instant (2026-01-01T00:00:00Z) for their `uptime`.
const BOOT_SECS: i64 = 1_767_225_600;

/// API v6 state of one simulator: credentials, objects, and the series index of each object's
/// live fields. No `Debug`: it holds the secrets.
pub(crate) struct Api {
    service_name: String,
    application_key: String,
    application_secret: String,
    consumer_key: String,
    rules: Vec<(String, String)>,
    token: String,
    objects: PccObjects,
    /// `(metric, object label value)` → series index (host NIC series left out).
    series: HashMap<(String, String), usize>,
    query_ids: AtomicU64,
}

impl Api {
    /// Builds the API side of the simulator `config` describes over `pcc`.
    pub(crate) fn new(config: &SimConfig, pcc: &Pcc) -> Api {
        let mut series = HashMap::new();
        for (i, s) in pcc.series().iter().enumerate() {
            if s.tags.contains_key("nicname") {
                continue;
            }
            for label in ["vm", "host", "datastore"] {
                if let Some(v) = s.tags.get(label) {
                    series.insert((s.metric.clone(), v.clone()), i);
                }
            }
        }
        Api {
            service_name: config.service_name.clone(),
            application_key: config.ovh_application_key.clone(),
            application_secret: config.ovh_application_secret.clone(),
            consumer_key: config.ovh_consumer_key.clone(),
            rules: config.ovh_access_rules.clone(),
            token: config
                .token
                .clone()
                .unwrap_or_else(|| config.issued_token()),
            objects: PccObjects::new(config),
            series,
            query_ids: AtomicU64::new(0),
        }
    }
}

/// An API v6 error answer.
struct V6Error {
    status: StatusCode,
    class: &'static str,
    code: Option<&'static str>,
    message: String,
}

impl V6Error {
    fn new(status: StatusCode, class: &'static str, message: impl Into<String>) -> V6Error {
        V6Error {
            status,
            class,
            code: None,
            message: message.into(),
        }
    }

    fn code(mut self, code: &'static str) -> V6Error {
        self.code = Some(code);
        self
    }

    fn not_found(message: impl Into<String>) -> V6Error {
        V6Error::new(StatusCode::NOT_FOUND, "Client::NotFound", message)
    }

    fn body(&self) -> String {
        let mut v = serde_json::json!({"class": self.class, "message": self.message});
        if let Some(c) = self.code {
            v["errorCode"] = c.into();
            v["httpCode"] = format!(
                "{} {}",
                self.status.as_u16(),
                self.status.canonical_reason().unwrap_or("")
            )
            .into();
        }
        v.to_string()
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn answer(api: &Api, status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let id = api.query_ids.fetch_add(1, Ordering::Relaxed);
    if let Ok(v) = HeaderValue::from_str(&format!("EU.ext-sim.{id:08x}")) {
        h.insert("X-Ovh-QueryID", v);
    }
    resp
}

/// Answers one API v6 request: the server time, or an authenticated (signed) call routed to
/// the PCC's objects.
pub(crate) fn handle(
    api: &Api,
    pcc: &Pcc,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Response {
    let path = uri.path().strip_prefix("/1.0").unwrap_or(uri.path());
    if path == "/auth/time" && *method == Method::GET {
        return answer(api, StatusCode::OK, now_secs().to_string());
    }
    let result = authenticate(api, method, headers, uri, body, path)
        .and_then(|()| route(api, pcc, method, headers, path, uri.query()));
    match result {
        Ok(json) => answer(api, StatusCode::OK, json),
        Err(e) => answer(api, e.status, e.body()),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The checks of the module docs, in order.
fn authenticate(
    api: &Api,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    path: &str,
) -> Result<(), V6Error> {
    let forbidden = |code: &'static str, message: &str| {
        V6Error::new(StatusCode::FORBIDDEN, "Client::Forbidden", message).code(code)
    };
    if header_str(headers, "X-Ovh-Application") != Some(api.application_key.as_str()) {
        return Err(forbidden("INVALID_KEY", "This application key is invalid"));
    }
    let Some(ck) = header_str(headers, "X-Ovh-Consumer") else {
        return Err(V6Error::new(
            StatusCode::UNAUTHORIZED,
            "Client::Unauthorized",
            "You must login first",
        )
        .code("NOT_CREDENTIAL"));
    };
    if !signatures_equal(ck, &api.consumer_key) {
        return Err(forbidden(
            "INVALID_CREDENTIAL",
            "This credential does not exist",
        ));
    }
    let ts = header_str(headers, "X-Ovh-Timestamp").and_then(|t| t.trim().parse::<i64>().ok());
    let Some(ts) = ts.filter(|t| (t - now_secs()).abs() <= MAX_SKEW_SECS) else {
        return Err(V6Error::new(
            StatusCode::BAD_REQUEST,
            "Client::BadRequest",
            "Query out of time",
        ));
    };
    let host = header_str(headers, "Host").unwrap_or("");
    let full_url = format!(
        "http://{host}{}",
        uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
    );
    let expected = signature(
        &api.application_secret,
        &api.consumer_key,
        method.as_str(),
        &full_url,
        body,
        ts,
    );
    let sent = header_str(headers, "X-Ovh-Signature").unwrap_or("");
    if !signatures_equal(sent, &expected) {
        return Err(V6Error::new(
            StatusCode::BAD_REQUEST,
            "Client::BadRequest",
            "Invalid signature",
        )
        .code("INVALID_SIGNATURE"));
    }
    let granted = api.rules.iter().any(|(m, p)| {
        (m == "*" || m.eq_ignore_ascii_case(method.as_str()))
            && vscope_core::catalogue::glob_match(p, path)
    });
    if !granted {
        return Err(forbidden(
            "NOT_GRANTED_CALL",
            "This call has not been granted",
        ));
    }
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, V6Error> {
    serde_json::to_string(value).map_err(|e| {
        V6Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server::InternalServerError",
            e.to_string(),
        )
    })
}

fn parse_id(seg: &str, what: &str) -> Result<i64, V6Error> {
    seg.parse::<i64>().map_err(|_| {
        V6Error::new(
            StatusCode::BAD_REQUEST,
            "Client::BadRequest",
            format!("[{what}] Given data ({seg}) is not valid for type long"),
        )
    })
}

/// Dispatches an authenticated call.
fn route(
    api: &Api,
    pcc: &Pcc,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Result<String, V6Error> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let invalid_url = || V6Error::not_found("Got an invalid (or empty) URL");
    let get = *method == Method::GET;
    let at_ms = now_secs() * 1000;
    match segs.as_slice() {
        ["dedicatedCloud"] if get => return json(&[&api.service_name]),
        ["dedicatedCloud", sn, ..] if *sn != api.service_name => {
            return Err(V6Error::not_found(format!(
                "The requested object (serviceName = {sn}) does not exist"
            )));
        }
        _ => {}
    }
    let dc = |seg: &str| -> Result<&DcObjects, V6Error> {
        let id = parse_id(seg, "datacenterId")?;
        api.objects
            .datacenters
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| {
                V6Error::not_found(format!(
                    "The requested object (datacenterId = {id}) does not exist"
                ))
            })
    };
    let missing = |what: &str, id: i64| {
        V6Error::not_found(format!(
            "The requested object ({what} = {id}) does not exist"
        ))
    };
    match (get, segs.as_slice()) {
        (true, ["dedicatedCloud", _]) => json(&serde_json::json!({
            "serviceName": api.service_name,
            "description": "vscope-etl simulator",
            "location": "sim1",
            "commercialRange": "2018v",
            "state": "delivered",
            "generation": "2.0",
            "billingType": "monthly",
            "managementInterface": "vmware",
            "version": {"major": "7.0", "minor": "3", "build": "0"},
        })),
        (true, ["dedicatedCloud", _, "datacenter"]) => json(
            &api.objects
                .datacenters
                .iter()
                .map(|d| d.id)
                .collect::<Vec<_>>(),
        ),
        (true, ["dedicatedCloud", _, "datacenter", id]) => {
            let d = dc(id)?;
            json(&Datacenter {
                datacenter_id: d.id,
                name: d.name.clone(),
                description: Some(format!("datacenter {}", d.id)),
                commercial_name: Some("SDDC".into()),
                commercial_range_name: Some("2018v".into()),
                version: Some("7.0".into()),
            })
        }
        (true, ["dedicatedCloud", _, "datacenter", id, kind]) => {
            let d = dc(id)?;
            let ids: Vec<i64> = match *kind {
                "host" => d.hosts.iter().map(|h| h.id).collect(),
                "vm" => d.vms.iter().map(|v| v.id).collect(),
                "filer" => d.filers.iter().map(|f| f.id).collect(),
                _ => return Err(invalid_url()),
            };
            json(&ids)
        }
        (true, ["dedicatedCloud", _, "datacenter", id, kind, oid]) => {
            let d = dc(id)?;
            match *kind {
                "host" => {
                    let hid = parse_id(oid, "hostId")?;
                    let i = d.hosts.iter().position(|h| h.id == hid);
                    let i = i.ok_or_else(|| missing("hostId", hid))?;
                    json(&host(api, pcc, d, i, at_ms))
                }
                "vm" => {
                    let vid = parse_id(oid, "vmId")?;
                    let v = d.vms.iter().find(|v| v.id == vid);
                    json(&vm(api, pcc, v.ok_or_else(|| missing("vmId", vid))?, at_ms))
                }
                "filer" => {
                    let fid = parse_id(oid, "filerId")?;
                    let i = d.filers.iter().position(|f| f.id == fid);
                    let i = i.ok_or_else(|| missing("filerId", fid))?;
                    json(&filer(api, pcc, d, i, at_ms))
                }
                _ => Err(invalid_url()),
            }
        }
        (true, ["dedicatedCloud", _, "user"]) => {
            let name = query.and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.into_owned())
            });
            let ids: Vec<i64> = USERS
                .iter()
                .filter(|(_, n)| name.as_deref().is_none_or(|want| want == *n))
                .map(|(id, _)| *id)
                .collect();
            json(&ids)
        }
        (true, ["dedicatedCloud", _, "user", uid]) => {
            let id = parse_id(uid, "userId")?;
            let (_, name) = USERS
                .iter()
                .find(|(u, _)| *u == id)
                .ok_or_else(|| missing("userId", id))?;
            json(&User {
                user_id: id,
                name: (*name).to_string(),
                login: Some(format!("{name}@{}", api.service_name)),
                state: Some("delivered".into()),
            })
        }
        (false, ["dedicatedCloud", _, "user", uid, "metricsToken"]) if *method == Method::POST => {
            let id = parse_id(uid, "userId")?;
            if !USERS.iter().any(|(u, _)| *u == id) {
                return Err(missing("userId", id));
            }
            let host = header_str(headers, "Host").unwrap_or("127.0.0.1");
            // Built by hand: `MetricsToken` has no Serialize, on purpose.
            Ok(serde_json::json!({
                "token": api.token,
                "opentsdbEndpoint": format!("http://{host}"),
                "warpEndpoint": format!("http://{host}/warp10"),
            })
            .to_string())
        }
        _ => Err(invalid_url()),
    }
}

/// The latest value of `metric` for the object labelled `label`, at `at_ms`.
fn live(api: &Api, pcc: &Pcc, metric: &str, label: &str, at_ms: i64) -> Option<f64> {
    let i = *api.series.get(&(metric.to_string(), label.to_string()))?;
    pcc.latest(i, at_ms)
}

fn host(api: &Api, pcc: &Pcc, d: &DcObjects, i: usize, at_ms: i64) -> Host {
    let h = &d.hosts[i];
    let cores = 24i64;
    let mhz = 2600i64;
    let ram_gb = 384i64;
    let vms: Vec<&VmObject> = d
        .vms
        .iter()
        .filter(|v| v.host.as_deref() == Some(&h.name))
        .collect();
    let cpu_perc = live(api, pcc, "vscope.host.cpu.usage.perc", &h.name, at_ms);
    let mem_perc = live(api, pcc, "vscope.host.mem.usage.perc", &h.name, at_ms);
    Host {
        host_id: h.id,
        name: h.name.clone(),
        profile: Some("2018v-hpc-96".into()),
        profile_code: Some("hpc96".into()),
        rack: Some(format!("R{}", 1 + i / 8)),
        state: Some("delivered".into()),
        billing_type: Some("monthly".into()),
        cpu: Some(UnitAndValue {
            unit: "GHz".into(),
            value: (cores * mhz) as f64 / 1000.0,
        }),
        ram: Some(UnitAndValue {
            unit: "GB".into(),
            value: ram_gb,
        }),
        cluster_name: Some(format!("Cluster{}", d.id)),
        connection_state: Some("connected".into()),
        cpu_max: Some(cores * mhz),
        cpu_max_core: Some(mhz),
        cpu_num: Some(cores),
        cpu_used: cpu_perc.map(|p| (p / 100.0 * (cores * mhz) as f64).round() as i64),
        in_maintenance: Some(false),
        memory_used: mem_perc.map(|p| (p / 100.0 * (ram_gb * 1024) as f64).round()),
        parent_host_id: None,
        resource_name: Some(format!("{}-host-{}", api.service_name, h.id)),
        uptime: Some((at_ms / 1000 - BOOT_SECS).max(0)),
        vm_total: Some(vms.len() as i64),
        vm_vcpu_total: Some(vms.iter().map(|v| v.cpu_num).sum()),
    }
}

fn vm(api: &Api, pcc: &Pcc, v: &VmObject, at_ms: i64) -> Vm {
    let m = |metric: &str| {
        if v.has_series {
            live(api, pcc, metric, &v.mo_ref, at_ms)
        } else {
            None
        }
    };
    let cpu_max = (v.cpu_num * 2600) as f64;
    Vm {
        vm_id: v.id,
        mo_ref: v.mo_ref.clone(),
        power_state: Some(
            if v.has_series {
                "poweredOn"
            } else {
                "poweredOff"
            }
            .into(),
        ),
        name: Some(v.name.clone()),
        host_name: v.host.clone(),
        cluster_name: Some("Cluster".into()),
        folder_name: Some("vm".into()),
        guest_os_family: Some("linuxGuest".into()),
        license: None,
        cpu_num: Some(v.cpu_num),
        cpu_max: Some(cpu_max),
        cpu_used: m("vscope.vm.cpu.usage.perc").map(|p| (p / 100.0 * cpu_max).round() as i64),
        cpu_ready: m("vscope.vm.cpu.ready"),
        cpu_ready_percent: m("vscope.vm.cpu.ready")
            .map(|r| (r / 20_000.0 * 100.0 * 100.0).round() / 100.0),
        memory_max: Some(v.memory_mb),
        memory_used: m("vscope.vm.mem.usage.perc")
            .map(|p| (p / 100.0 * v.memory_mb as f64).round() as i64),
        memory_tps: m("vscope.vm.mem.tps").map(|x| format!("{}", x.round())),
        net_rx: m("vscope.vm.net.rx"),
        net_tx: m("vscope.vm.net.tx"),
        net_packet_rx: m("vscope.vm.net.packetsrx"),
        net_packet_tx: m("vscope.vm.net.packetstx"),
        read_latency: m("vscope.vm.disk.latency.read"),
        write_latency: m("vscope.vm.disk.latency.write"),
        read_per_second: m("vscope.vm.disk.io.read"),
        write_per_second: m("vscope.vm.disk.io.write"),
        read_rate: m("vscope.vm.disk.bandwidth.read"),
        write_rate: m("vscope.vm.disk.bandwidth.write"),
        snapshot_num: Some(0),
        vmware_tools: Some(
            if v.has_series {
                "toolsOk"
            } else {
                "toolsNotRunning"
            }
            .into(),
        ),
        vmware_tools_version: Some("12352".into()),
        role_ft: None,
        state_ft: Some("notConfigured".into()),
        filers: v.filer.as_ref().map(|f| {
            vec![VmFiler {
                name: Some(f.clone()),
                committed: Some((v.memory_mb / 1024 * 20) as f64),
            }]
        }),
    }
}

fn filer(api: &Api, pcc: &Pcc, d: &DcObjects, i: usize, at_ms: i64) -> Filer {
    const KB_PER_GB: f64 = 1024.0 * 1024.0;
    let f = &d.filers[i];
    let metric = "vscope.filer.datastore.diskspace.used";
    let index = api
        .series
        .get(&(metric.to_string(), f.name.clone()))
        .copied();
    let capacity_gb = index
        .and_then(|i| pcc.filer_capacity_kb(i))
        .map(|kb| (kb / KB_PER_GB).round() as i64);
    let used_gb = index
        .and_then(|i| pcc.latest(i, at_ms))
        .map(|kb| (kb / KB_PER_GB * 100.0).round() / 100.0);
    Filer {
        filer_id: f.id,
        name: f.name.clone(),
        full_profile: Some("3t-hybrid".into()),
        profile: Some("3t".into()),
        master: Some(format!("nas-{}-a", f.id)),
        slave: Some(format!("nas-{}-b", f.id)),
        is_managed_by_ovh: Some(true),
        size: capacity_gb.map(|gb| UnitAndValue {
            unit: "GB".into(),
            value: gb,
        }),
        state: Some("delivered".into()),
        active_node: Some("master".into()),
        connection_state: Some("online".into()),
        billing_type: Some("monthly".into()),
        resource_name: Some(format!("{}-filer-{}", api.service_name, f.id)),
        space_free: match (capacity_gb, used_gb) {
            (Some(c), Some(u)) => Some(((c as f64 - u) * 100.0).round() / 100.0),
            _ => None,
        },
        space_provisioned: used_gb.map(|u| (u * 1.25 * 100.0).round() / 100.0),
        space_used: used_gb,
        vm_total: Some(
            d.vms
                .iter()
                .filter(|v| v.filer.as_deref() == Some(&f.name))
                .count() as i64,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sim(config: SimConfig) -> crate::SimHandle {
        crate::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn stale_timestamps_and_missing_keys_are_refused() {
        let d = SimConfig::default();
        let s = sim(d.clone()).await;
        let http = reqwest::Client::new();
        let url = format!("{}/1.0/dedicatedCloud", s.base_url());
        let stale = now_secs() - 2 * MAX_SKEW_SECS;
        let sig = signature(
            &d.ovh_application_secret,
            &d.ovh_consumer_key,
            "GET",
            &url,
            b"",
            stale,
        );
        let send = |ts: i64, sig: String, ak: &str| {
            http.get(&url)
                .header("X-Ovh-Application", ak.to_string())
                .header("X-Ovh-Consumer", d.ovh_consumer_key.clone())
                .header("X-Ovh-Timestamp", ts.to_string())
                .header("X-Ovh-Signature", sig)
                .send()
        };
        let r = send(stale, sig, &d.ovh_application_key).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.headers().contains_key("X-Ovh-QueryID"));
        assert!(r.text().await.unwrap().contains("Query out of time"));
        let r = send(now_secs(), String::new(), "unknown-ak").await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("INVALID_KEY"));
        let r = http
            .get(&url)
            .header("X-Ovh-Application", d.ovh_application_key.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // /auth/time is public and a bare integer.
        let t: i64 = http
            .get(format!("{}/1.0/auth/time", s.base_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert!((t - now_secs()).abs() <= 2);
        s.shutdown().await;
    }
}
