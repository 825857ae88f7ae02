//! The local L7 load balancer: one HTTP/1.1 listener per service on 127.0.0.1, forward
//! weights across target groups with smooth weighted round-robin (exact proportions,
//! no randomness), round-robin across a group's healthy targets, active health checks
//! with thresholds, draining on deregistration, and per-group request/error/latency
//! counters. A target group without a healthy target gets no traffic; its share goes
//! to the others. Weights answered by [`Balancers::weights`] are the ones the proxy
//! uses for the next request. A share of requests can be [mirrored](super::mirror) to
//! a target group outside the weights.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_clock::{Clock, SystemClock};
use skiff_pluginapi::{
    HealthState, LATENCY_BUCKETS_MS, LoadBalancerInfo, LoadBalancerSpec, Mirror, MirrorReport, Target, TargetGroupSpec,
    TargetHealth, TrafficStats, Weight,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::mirror::{self, MirrorState};

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;
/// The client the proxy forwards with.
pub(crate) type Upstream = Client<HttpConnector, Body>;

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

struct TargetState {
    target: Target,
    /// The target's address, parsed once when it is registered.
    addr: Option<SocketAddr>,
    health: HealthState,
    ok: u32,
    bad: u32,
    reason: Option<String>,
    draining_until_ms: Option<u64>,
}

struct Tg {
    spec: TargetGroupSpec,
    targets: BTreeMap<String, TargetState>,
    stats: Arc<Counters>,
    next: usize,
    checker: Option<JoinHandle<()>>,
    /// Every target ever registered: a drained one is not attached again.
    seen: std::collections::BTreeSet<String>,
}

struct Lb {
    spec: LoadBalancerSpec,
    weights: Vec<Weight>,
    current: BTreeMap<String, i64>,
    listener: Option<JoinHandle<()>>,
    mirror: Option<MirrorState>,
}

/// Where one request goes.
struct Picked {
    target_group: String,
    addr: SocketAddr,
    counters: Arc<Counters>,
    /// The service mirrors a share of its requests (checked per request only then).
    mirrored: bool,
}

#[derive(Default)]
struct Inner {
    lbs: BTreeMap<String, Lb>,
    tgs: BTreeMap<String, Tg>,
}

/// Every load balancer and target group of the supervisor.
#[derive(Clone, Default)]
pub(crate) struct Balancers(Arc<Mutex<Inner>>);

fn now() -> u64 {
    SystemClock.now_ms()
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

impl Balancers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates the service's listener (rebinding if the port changed). Port 0 asks for
    /// any free port: a load balancer that has one keeps it.
    pub(crate) async fn ensure_load_balancer(&self, mut spec: LoadBalancerSpec) -> std::io::Result<LoadBalancerInfo> {
        let same = self.lock().lbs.get(&spec.service).is_some_and(|lb| {
            (spec.listener_port == 0 || lb.spec.listener_port == spec.listener_port) && lb.listener.is_some()
        });
        if !same {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", spec.listener_port)).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on 127.0.0.1:{}: {e}", spec.listener_port))
            })?;
            spec.listener_port = listener.local_addr()?.port();
            let task = tokio::spawn(accept(self.clone(), spec.service.clone(), listener));
            let mut inner = self.lock();
            let lb = inner.lbs.entry(spec.service.clone()).or_insert_with(|| Lb {
                spec: spec.clone(),
                weights: Vec::new(),
                current: BTreeMap::new(),
                listener: None,
                mirror: None,
            });
            if let Some(old) = lb.listener.replace(task) {
                old.abort();
            }
            lb.spec = spec.clone();
        }
        Ok(self.lb_info(&spec.service).expect("just created"))
    }

    pub(crate) fn lb_info(&self, service: &str) -> Option<LoadBalancerInfo> {
        self.lock().lbs.get(service).map(|lb| LoadBalancerInfo {
            service: service.to_owned(),
            address: format!("127.0.0.1:{}", lb.spec.listener_port),
            weights: lb.weights.clone(),
            provider_id: format!("local-lb:{service}:{}", lb.spec.listener_port),
        })
    }

    pub(crate) fn all_lbs(&self) -> Vec<LoadBalancerInfo> {
        let services: Vec<String> = self.lock().lbs.keys().cloned().collect();
        services.iter().filter_map(|s| self.lb_info(s)).collect()
    }

    /// Replaces the weights; in effect for the next request.
    pub(crate) fn set_weights(&self, service: &str, weights: Vec<Weight>) -> bool {
        let mut inner = self.lock();
        let Some(lb) = inner.lbs.get_mut(service) else { return false };
        lb.current.retain(|tg, _| weights.iter().any(|w| &w.target_group == tg));
        lb.weights = weights;
        true
    }

    /// Starts (or stops) mirroring, with a new report; `false` without the load balancer.
    pub(crate) fn set_mirror(&self, service: &str, spec: Option<Mirror>) -> bool {
        let mut inner = self.lock();
        let Some(lb) = inner.lbs.get_mut(service) else { return false };
        lb.mirror = spec.map(MirrorState::new);
        true
    }

    /// What mirroring saw since it was set (empty when it is off).
    pub(crate) fn mirror_report(&self, service: &str) -> Option<MirrorReport> {
        let inner = self.lock();
        let lb = inner.lbs.get(service)?;
        Some(lb.mirror.as_ref().map(|m| m.report.clone()).unwrap_or_default())
    }

    pub(crate) fn with_mirror(&self, service: &str, f: impl FnOnce(&mut MirrorState)) {
        if let Some(m) = self.lock().lbs.get_mut(service).and_then(|lb| lb.mirror.as_mut()) {
            f(m);
        }
    }

    /// Where a copy of this request goes, if it is one of the mirrored share.
    fn mirror_pick(&self, service: &str, bufferable: bool) -> Option<SocketAddr> {
        let mut guard = self.lock();
        let Inner { lbs, tgs } = &mut *guard;
        let m = lbs.get_mut(service)?.mirror.as_mut()?;
        if !m.due() {
            return None;
        }
        if !bufferable {
            m.skip();
            return None;
        }
        let healthy: Vec<SocketAddr> = tgs
            .get(&m.spec.target_group)
            .map(|tg| {
                tg.targets
                    .values()
                    .filter(|t| t.health == HealthState::Healthy)
                    .filter_map(|t| format!("{}:{}", t.target.address, t.target.port).parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        m.take(&healthy)
    }

    pub(crate) fn weights(&self, service: &str) -> Option<Vec<Weight>> {
        self.lock().lbs.get(service).map(|lb| lb.weights.clone())
    }

    pub(crate) fn delete_load_balancer(&self, service: &str) {
        if let Some(lb) = self.lock().lbs.remove(service)
            && let Some(t) = lb.listener
        {
            t.abort();
        }
    }

    /// Creates a target group and starts its health checks (idempotent).
    pub(crate) fn ensure_target_group(&self, spec: TargetGroupSpec) {
        let mut inner = self.lock();
        if let Some(tg) = inner.tgs.get_mut(&spec.name) {
            tg.spec = spec;
            return;
        }
        let name = spec.name.clone();
        let stats = Arc::new(Counters::default());
        inner.tgs.insert(
            name.clone(),
            Tg { spec, targets: BTreeMap::new(), stats, next: 0, checker: None, seen: Default::default() },
        );
        let checker = tokio::spawn(check_health(self.clone(), name.clone()));
        if let Some(tg) = inner.tgs.get_mut(&name) {
            tg.checker = Some(checker);
        }
    }

    /// Adds targets (new ones start `initial`, unjudged, and take no traffic).
    pub(crate) fn register(&self, tg: &str, targets: &[Target]) -> bool {
        let mut inner = self.lock();
        let Some(tg) = inner.tgs.get_mut(tg) else { return false };
        for t in targets {
            tg.seen.insert(t.id.clone());
            let addr = format!("{}:{}", t.address, t.port).parse().ok();
            let entry = tg.targets.entry(t.id.clone()).or_insert_with(|| TargetState {
                target: t.clone(),
                addr,
                health: HealthState::Initial,
                ok: 0,
                bad: 0,
                reason: None,
                draining_until_ms: None,
            });
            if entry.health == HealthState::Draining {
                entry.health = HealthState::Initial;
                entry.draining_until_ms = None;
            }
            entry.target = t.clone();
            entry.addr = addr;
        }
        true
    }

    /// Registers the `live` targets not yet known and deregisters the `gone` ones still
    /// taking traffic; targets already known keep their health. No-op without the group.
    pub(crate) fn attach(&self, tg: &str, live: &[Target], gone: &[String]) {
        let (fresh, leaving) = {
            let inner = self.lock();
            let Some(group) = inner.tgs.get(tg) else { return };
            let fresh: Vec<Target> = live.iter().filter(|t| !group.seen.contains(&t.id)).cloned().collect();
            let leaving: Vec<String> = gone
                .iter()
                .filter(|id| group.targets.get(*id).is_some_and(|t| t.health != HealthState::Draining))
                .cloned()
                .collect();
            (fresh, leaving)
        };
        if !fresh.is_empty() {
            self.register(tg, &fresh);
        }
        if !leaving.is_empty() {
            self.deregister(tg, &leaving);
        }
    }

    /// Stops new requests to targets; they leave after the deregistration delay.
    pub(crate) fn deregister(&self, tg: &str, ids: &[String]) -> bool {
        let mut inner = self.lock();
        let Some(tg) = inner.tgs.get_mut(tg) else { return false };
        let until = now() + tg.spec.deregistration_delay_ms;
        for id in ids {
            if let Some(t) = tg.targets.get_mut(id) {
                t.health = HealthState::Draining;
                t.draining_until_ms = Some(until);
            }
        }
        true
    }

    pub(crate) fn health(&self, tg: &str) -> Option<Vec<TargetHealth>> {
        self.lock().tgs.get(tg).map(|tg| {
            tg.targets
                .values()
                .map(|t| TargetHealth { id: t.target.id.clone(), state: t.health, reason: t.reason.clone() })
                .collect()
        })
    }

    pub(crate) fn stats(&self, tg: &str) -> Option<TrafficStats> {
        self.lock().tgs.get(tg).map(|tg| tg.stats.snapshot())
    }

    pub(crate) fn target_groups(&self) -> Vec<(String, String, Vec<TargetHealth>)> {
        let names: Vec<(String, String)> =
            self.lock().tgs.values().map(|t| (t.spec.name.clone(), t.spec.service.clone())).collect();
        names
            .into_iter()
            .map(|(n, s)| {
                let h = self.health(&n).unwrap_or_default();
                (n, s, h)
            })
            .collect()
    }

    pub(crate) fn delete_target_group(&self, name: &str) {
        let mut inner = self.lock();
        if let Some(tg) = inner.tgs.remove(name)
            && let Some(c) = tg.checker
        {
            c.abort();
        }
        for lb in inner.lbs.values_mut() {
            lb.weights.retain(|w| w.target_group != name);
            lb.current.remove(name);
            if lb.mirror.as_ref().is_some_and(|m| m.spec.target_group == name) {
                lb.mirror = None;
            }
        }
    }

    pub(crate) fn stop_all(&self) {
        let mut inner = self.lock();
        for lb in inner.lbs.values_mut() {
            if let Some(t) = lb.listener.take() {
                t.abort();
            }
        }
        for tg in inner.tgs.values_mut() {
            if let Some(c) = tg.checker.take() {
                c.abort();
            }
        }
    }

    pub(crate) fn persisted_lbs(&self) -> BTreeMap<String, (LoadBalancerSpec, Vec<Weight>)> {
        self.lock().lbs.iter().map(|(k, lb)| (k.clone(), (lb.spec.clone(), lb.weights.clone()))).collect()
    }

    pub(crate) fn persisted_tgs(&self) -> BTreeMap<String, (TargetGroupSpec, Vec<Target>)> {
        self.lock()
            .tgs
            .iter()
            .map(|(k, tg)| {
                let targets = tg
                    .targets
                    .values()
                    .filter(|t| t.health != HealthState::Draining)
                    .map(|t| t.target.clone())
                    .collect();
                (k.clone(), (tg.spec.clone(), targets))
            })
            .collect()
    }

    /// Chooses the target group (smooth weighted round-robin among groups with a
    /// healthy target) and the target (round-robin) for one request, under one lock and
    /// without allocating beyond the chosen group's name.
    fn pick(&self, service: &str) -> Option<Picked> {
        let mut guard = self.lock();
        let Inner { lbs, tgs } = &mut *guard;
        let lb = lbs.get_mut(service)?;
        let serving =
            |name: &str| tgs.get(name).is_some_and(|tg| tg.targets.values().any(|t| t.health == HealthState::Healthy));
        let (mut total, mut best) = (0i64, None::<(usize, i64)>);
        for (i, w) in lb.weights.iter().enumerate() {
            if w.weight == 0 || !serving(&w.target_group) {
                continue;
            }
            let weight = i64::from(w.weight);
            total += weight;
            let c = match lb.current.get_mut(w.target_group.as_str()) {
                Some(c) => c,
                None => lb.current.entry(w.target_group.clone()).or_insert(0),
            };
            *c += weight;
            if best.is_none_or(|(_, bc)| *c > bc) {
                best = Some((i, *c));
            }
        }
        let chosen = &lb.weights[best?.0].target_group;
        *lb.current.get_mut(chosen.as_str())? -= total;
        let tg = tgs.get_mut(chosen.as_str())?;
        let healthy = tg.targets.values().filter(|t| t.health == HealthState::Healthy).count();
        let t = tg.targets.values().filter(|t| t.health == HealthState::Healthy).nth(tg.next % healthy)?;
        tg.next = tg.next.wrapping_add(1);
        let addr = t.addr?;
        Some(Picked { target_group: chosen.clone(), addr, counters: tg.stats.clone(), mirrored: lb.mirror.is_some() })
    }
}

/// A target group's request counters, updated without the balancers' lock.
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    fn record(&self, elapsed: Duration, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BUCKETS_MS.len() - 1);
        self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TrafficStats {
        TrafficStats {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency_buckets: self.latency_buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
        }
    }
}

async fn accept(bal: Balancers, service: String, listener: tokio::net::TcpListener) {
    let service: Arc<str> = service.into();
    // No Nagle on either side: small proxied writes otherwise wait ~40 ms for delayed ACKs.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or a reset before accept: back off instead of spinning.
                SystemClock.sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (bal, service, client) = (bal.clone(), service.clone(), client.clone());
        tokio::spawn(async move {
            let (affine, mut drivers) = Affine::new();
            let affine = Arc::new(affine);
            let svc = hyper::service::service_fn(move |req| {
                proxy(bal.clone(), service.clone(), client.clone(), affine.clone(), req)
            });
            let serve =
                hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc);
            let _ = drivers.drive_until(serve).await;
        });
    }
}

type Driver = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The upstream HTTP/1.1 connections of one downstream connection, driven by the
/// downstream connection's own task ([`Drivers::drive_until`]): a proxied request
/// and its answer never cross to another task or take a shared pool's lock.
struct Affine {
    idle: Mutex<Vec<(SocketAddr, hyper::client::conn::http1::SendRequest<Body>)>>,
    drive: tokio::sync::mpsc::UnboundedSender<Driver>,
}

/// The connection futures [`Affine`] opened, polled beside the downstream connection.
struct Drivers {
    new: tokio::sync::mpsc::UnboundedReceiver<Driver>,
    running: futures::stream::FuturesUnordered<Driver>,
}

impl Drivers {
    /// Polls `serve` and every upstream connection until `serve` ends (which drops,
    /// and so closes, the upstream connections).
    async fn drive_until<F: std::future::Future>(&mut self, serve: F) -> F::Output {
        use futures::StreamExt as _;
        use std::task::Poll;
        let mut serve = std::pin::pin!(serve);
        std::future::poll_fn(|cx| {
            while let Poll::Ready(Some(d)) = self.new.poll_recv(cx) {
                self.running.push(d);
            }
            while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
            serve.as_mut().poll(cx)
        })
        .await
    }
}

impl Affine {
    fn new() -> (Affine, Drivers) {
        let (drive, new) = tokio::sync::mpsc::unbounded_channel();
        let drivers = Drivers { new, running: futures::stream::FuturesUnordered::new() };
        (Affine { idle: Mutex::new(Vec::new()), drive }, drivers)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(SocketAddr, hyper::client::conn::http1::SendRequest<Body>)>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An open connection to `addr`: an idle one (`true`), or a new one.
    async fn connection(
        &self,
        addr: SocketAddr,
    ) -> Result<(hyper::client::conn::http1::SendRequest<Body>, bool), String> {
        let reused = {
            let mut idle = self.idle();
            idle.retain(|(_, s)| !s.is_closed());
            idle.iter().position(|(a, _)| *a == addr).map(|i| idle.swap_remove(i).1)
        };
        if let Some(s) = reused {
            return Ok((s, true));
        }
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        self.drive.send(Box::pin(async move { drop(conn.await) })).map_err(|_| "connection closing".to_owned())?;
        Ok((sender, false))
    }

    /// Sends `req` to `addr` on this connection's own upstream connection. A request the
    /// connection refused before writing it goes once more on a new one; so does a
    /// request `replay` can make again (a GET or HEAD without a body) when a reused
    /// connection failed under it — it was closed by the target while idle, as nginx
    /// retries an idempotent request on a kept-alive upstream.
    async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Body>,
        replay: Option<&(dyn Fn() -> Request<Body> + Send + Sync)>,
    ) -> Result<Response<Incoming>, String> {
        for attempt in 0..2 {
            let (mut sender, reused) = self.connection(addr).await?;
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.idle().push((addr, sender));
                    return Ok(resp);
                }
                Err(mut e) => match (e.take_message(), replay) {
                    (Some(unsent), _) if attempt == 0 => req = unsent,
                    (None, Some(make)) if attempt == 0 && reused => req = make(),
                    _ => return Err(e.into_error().to_string()),
                },
            }
        }
        Err("the upstream connection closed twice".to_owned())
    }
}

async fn proxy(
    bal: Balancers,
    service: Arc<str>,
    client: Upstream,
    affine: Arc<Affine>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let Some(Picked { target_group: tg, addr, counters, mirrored }) = bal.pick(&service) else {
        return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "no healthy targets"));
    };
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    // A mirrored request is buffered (its body goes out twice) and copied once the
    // primary's request is on its way.
    let mut compare = None;
    // Only requests safe to repeat are copied: a copied write would happen twice.
    let safe = parts.method == hyper::Method::GET || parts.method == hyper::Method::HEAD;
    let pick = if safe && mirrored { bal.mirror_pick(&service, mirror::bufferable(&parts)) } else { None };
    let bodyless = hyper::body::Body::is_end_stream(&body);
    let body = match pick {
        Some(to) => {
            let Ok(bytes) = http_body_util::Limited::new(body, mirror::MAX_BODY as usize).collect().await else {
                bal.with_mirror(&service, |m| m.skip());
                return Ok(text(StatusCode::BAD_REQUEST, "request body could not be read"));
            };
            let bytes = bytes.to_bytes();
            if let Some(copy) = mirror::copy(&parts, to, bytes.clone()) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let what = format!("{} {path}", parts.method);
                mirror::send(bal.clone(), service.to_string(), client.clone(), what, copy, rx);
                compare = Some(tx);
            }
            full(bytes)
        }
        None => body.boxed(),
    };
    // An HTTP/1.1 connection of our own: the request line carries the path only.
    let Ok(uri) = path.parse() else {
        return Ok(text(StatusCode::BAD_REQUEST, "bad request path"));
    };
    parts.uri = uri;
    parts.headers.remove(hyper::header::CONNECTION);
    if !parts.headers.contains_key(hyper::header::HOST)
        && let Ok(host) = hyper::header::HeaderValue::from_str(&addr.to_string())
    {
        parts.headers.insert(hyper::header::HOST, host);
    }
    let replay = (safe && bodyless).then(|| {
        let (method, uri, version, headers) =
            (parts.method.clone(), parts.uri.clone(), parts.version, parts.headers.clone());
        move || {
            let mut again = Request::new(full(Bytes::new()));
            *again.method_mut() = method.clone();
            *again.uri_mut() = uri.clone();
            *again.version_mut() = version;
            *again.headers_mut() = headers.clone();
            again
        }
    });
    let replay = replay.as_ref().map(|r| r as &(dyn Fn() -> Request<Body> + Send + Sync));
    match affine.send(addr, Request::from_parts(parts, body), replay).await {
        Ok(resp) => {
            counters.record(start.elapsed(), resp.status().is_server_error());
            if let Some(tx) = compare {
                let _ = tx.send((resp.status().as_u16(), start.elapsed()));
            }
            let (mut parts, body) = resp.into_parts();
            if let Ok(v) = hyper::header::HeaderValue::from_str(&tg) {
                parts.headers.insert("x-skiff-target-group", v);
            }
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(e) => {
            counters.record(start.elapsed(), true);
            if let Some(tx) = compare {
                let _ = tx.send((502, start.elapsed()));
            }
            Ok(text(StatusCode::BAD_GATEWAY, &format!("target {addr} failed: {e}")))
        }
    }
}

/// One health probe: whether `GET path` answers 2xx in time.
async fn probe(target: &Target, path: &str, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((target.address.as_str(), target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target.address).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let line = status_line(&mut s).await?;
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{path}: no HTTP status line in the response"))?;
        if (200..300).contains(&code) { Ok(()) } else { Err(format!("{path} answered {code}")) }
    };
    skiff_clock::timeout(&SystemClock, timeout, attempt).await.unwrap_or_else(|_| Err(format!("{path} timed out")))
}

/// Reads until the end of the status line (a response may arrive in several segments).
async fn status_line(s: &mut tokio::net::TcpStream) -> Result<String, String> {
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 256 {
        let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    if head.is_empty() {
        return Err("connection closed before a response".into());
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Probes a target group's targets every interval and moves them between states.
async fn check_health(bal: Balancers, name: String) {
    loop {
        let (spec, targets) = {
            let inner = bal.lock();
            let Some(tg) = inner.tgs.get(&name) else { return };
            let targets: Vec<Target> =
                tg.targets.values().filter(|t| t.health != HealthState::Draining).map(|t| t.target.clone()).collect();
            (tg.spec.clone(), targets)
        };
        let timeout = Duration::from_millis(spec.health.timeout_ms.max(50));
        let results = futures::future::join_all(targets.iter().map(|t| probe(t, &spec.health.path, timeout))).await;
        {
            let mut inner = bal.lock();
            let Some(tg) = inner.tgs.get_mut(&name) else { return };
            for (t, result) in targets.iter().zip(results) {
                let Some(state) = tg.targets.get_mut(&t.id) else { continue };
                if state.health == HealthState::Draining {
                    continue;
                }
                match result {
                    Ok(()) => {
                        state.ok += 1;
                        state.bad = 0;
                        if state.health != HealthState::Healthy && state.ok >= spec.health.healthy_threshold {
                            state.health = HealthState::Healthy;
                            state.reason = None;
                        }
                    }
                    Err(why) => {
                        state.bad += 1;
                        state.ok = 0;
                        state.reason = Some(why);
                        if state.health != HealthState::Unhealthy && state.bad >= spec.health.unhealthy_threshold {
                            state.health = HealthState::Unhealthy;
                        }
                    }
                }
            }
            let t = now();
            tg.targets.retain(|_, s| s.draining_until_ms.is_none_or(|until| until > t));
        }
        SystemClock.sleep(Duration::from_millis(spec.health.interval_ms.max(100))).await;
    }
}
