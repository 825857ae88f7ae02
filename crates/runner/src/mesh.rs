//! The instance's place in the mesh, for a service with `network.mtls` (whose
//! variables the mTLS plugin's addon put in the release): a certificate from the
//! environment's CA issued at start and renewed two thirds into its life, the mesh
//! port (mutual TLS, then on to the program), and a loopback port per upstream
//! (`SKIFF_UPSTREAM_<NAME>`), whose members it finds in the bucket. The CA and the
//! mesh's own variables never reach the program.

use std::net::SocketAddr;
use std::time::Duration;

use skiff_clock::{Clock as _, SystemClock};
use skiff_mesh::{Ca, Credentials, Identity, Issued};
use skiff_state::docs::{MemberHealth, MeshDetail, RunnerDetail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Config;
use crate::logs::Log;
use crate::member::Member;

/// The mesh's variables (all start with this) and the ones it reads.
const PREFIX: &str = "SKIFF_MESH";
const ENVIRONMENT: &str = skiff_settings::MESH.name;
const UPSTREAMS: &str = skiff_settings::MESH_UPSTREAMS.name;
const TTL: &str = skiff_settings::MESH_TTL_SECS.name;
const CA_CERT: &str = skiff_settings::MESH_CA_CERT.name;
const CA_KEY: &str = skiff_settings::MESH_CA_KEY.name;
/// How often the members of an upstream are looked up.
const DISCOVERY: Duration = Duration::from_secs(1);

/// What the release asks of the mesh.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    identity: Identity,
    upstreams: Vec<String>,
    ttl_ms: u64,
    ca: Ca,
}

/// Takes the mesh's variables out of `env`; the settings when the service is in a mesh.
pub(crate) fn take(service: &str, env: &mut Vec<(String, String)>) -> Result<Option<Settings>, String> {
    let (mesh, rest): (Vec<_>, Vec<_>) = std::mem::take(env).into_iter().partition(|(k, _)| k.starts_with(PREFIX));
    *env = rest;
    let get = |name: &str| mesh.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some(environment) = get(ENVIRONMENT) else { return Ok(None) };
    let need = |name: &str| get(name).ok_or_else(|| format!("{name} is not set: the mTLS plugin's addon sets it"));
    let ca = Ca::from_pem(&need(CA_CERT)?, &need(CA_KEY)?).map_err(|e| e.to_string())?;
    let ttl_secs = match get(TTL) {
        Some(v) => v.trim().parse::<u64>().map_err(|_| format!("{TTL} `{v}` is not a number of seconds"))?,
        None => skiff_mesh::DEFAULT_TTL_SECS,
    };
    let upstreams = get(UPSTREAMS)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Some(Settings { identity: Identity::new(environment, service), upstreams, ttl_ms: ttl_secs.max(1) * 1000, ca }))
}

/// The mesh's tasks; dropping it stops them.
pub(crate) struct Running(Vec<JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn detail(address: &str, identity: &Identity, issued: &Issued, count: u32) -> MeshDetail {
    MeshDetail {
        address: address.to_owned(),
        identity: identity.uri(),
        serial: issued.serial.clone(),
        issued_at_ms: issued.issued_at_ms,
        not_after_ms: issued.not_after_ms,
        issued: count,
    }
}

/// Issues the instance's certificate, opens its mesh port and its upstreams' ports
/// (adding their variables to `env`), and starts renewing and discovering.
pub(crate) async fn start(
    config: &Config,
    s: Settings,
    env: &mut Vec<(String, String)>,
    member: &Member,
    log: &Log,
) -> Result<Running, String> {
    let clock = SystemClock;
    let issued = s.ca.issue(&s.identity, clock.now_ms(), s.ttl_ms).map_err(|e| e.to_string())?;
    let creds = Credentials::new(&issued).map_err(|e| e.to_string())?;
    let server = skiff_mesh::server_config(&s.ca, &creds).map_err(|e| e.to_string())?;
    let client = skiff_mesh::client_config(&s.ca, &creds).map_err(|e| e.to_string())?;
    let inbound = TcpListener::bind((config.host.as_str(), 0)).await.map_err(|e| format!("the mesh port: {e}"))?;
    let port = inbound.local_addr().map_err(|e| e.to_string())?.port();
    let address = format!("{}:{port}", config.host);
    let program = SocketAddr::from(([127, 0, 0, 1], config.port));
    let mut tasks = vec![tokio::spawn(skiff_mesh::proxy::inbound(inbound, program, server))];
    for upstream in &s.upstreams {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("the port for {upstream}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        env.push((skiff_mesh::upstream_var(upstream), format!("http://{local}")));
        let (tx, rx) = watch::channel(Vec::new());
        let who = Identity::new(s.identity.environment.clone(), upstream.clone());
        tasks.push(tokio::spawn(skiff_mesh::proxy::outbound(listener, who, rx, client.clone())));
        tasks.push(tokio::spawn(discover(member.ledger().clone(), upstream.clone(), tx)));
    }
    log.runner(&format!(
        "mesh: {} on {address} (mutual TLS), certificate {} valid until {} ms; upstreams: {}",
        s.identity,
        issued.serial,
        issued.not_after_ms,
        if s.upstreams.is_empty() { "none".to_owned() } else { s.upstreams.join(", ") }
    ));
    let first = detail(&address, &s.identity, &issued, 1);
    member.note(|d| d.mesh = Some(first)).await;
    let renewing = renew(s, creds, issued, address, member.clone(), log.clone());
    tasks.push(tokio::spawn(renewing));
    Ok(Running(tasks))
}

/// Renews the certificate two thirds into each one's life, for as long as it runs. A
/// renewal that fails is tried again every few seconds while the old one is good.
async fn renew(s: Settings, creds: Credentials, mut issued: Issued, address: String, member: Member, log: Log) {
    let clock = SystemClock;
    let mut count = 1;
    loop {
        let wait = issued.renew_at_ms().saturating_sub(clock.now_ms());
        clock.sleep(Duration::from_millis(wait)).await;
        let next = s.ca.issue(&s.identity, clock.now_ms(), s.ttl_ms).map_err(|e| e.to_string());
        match next.and_then(|n| creds.renew(&n).map(|()| n).map_err(|e| e.to_string())) {
            Ok(n) => {
                count += 1;
                log.runner(&format!("mesh: renewed the certificate: {} valid until {} ms", n.serial, n.not_after_ms));
                let d = detail(&address, &s.identity, &n, count);
                member.note(|m| m.mesh = Some(d)).await;
                issued = n;
            }
            Err(e) => {
                log.runner(&format!("mesh: cannot renew the certificate ({e}); trying again in 5s"));
                clock.sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Keeps `tx` at the mesh addresses of `service`'s healthy members.
async fn discover(ledger: skiff_state::Ledger, service: String, tx: watch::Sender<Vec<SocketAddr>>) {
    let clock = SystemClock;
    loop {
        if let Ok(members) = ledger.members::<RunnerDetail>(&service).await {
            let mut found: Vec<SocketAddr> = members
                .iter()
                .filter(|m| m.health == MemberHealth::Healthy)
                .filter_map(|m| m.detail.mesh.as_ref()?.address.parse().ok())
                .collect();
            found.sort();
            tx.send_if_modified(|now| {
                let changed = *now != found;
                if changed {
                    *now = found;
                }
                changed
            });
        }
        clock.sleep(DISCOVERY).await;
    }
}
