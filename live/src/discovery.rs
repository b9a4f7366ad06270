//! Where a live run's endpoints come from when they change under it (`meshbench live
//! --discover`): DNS, a watched file, or an etcd key prefix.
//!
//! * `dns:[//SERVER[:PORT]/]NAME:PORT`: the A and AAAA records of `NAME` (gRPC's `dns:` target
//!   syntax), each address with `PORT`, asked again when the records' TTL runs out (the shortest
//!   TTL of the answer, at least 250 ms), as Envoy's `STRICT_DNS` clusters do. Without a server,
//!   the first `nameserver` of `/etc/resolv.conf`.
//! * `srv:[//SERVER[:PORT]/]NAME`: the SRV records of `NAME` (`_http._tcp.backend.example`):
//!   target, port, weight (the endpoint's weight) and priority (its priority level).
//! * `file:PATH`: an Envoy `ClusterLoadAssignment` in YAML or JSON, bare or inside a discovery
//!   response's `resources` (Envoy's filesystem EDS): `endpoints[].lb_endpoints[].endpoint.address
//!   .socket_address.{address, port_value}`, `load_balancing_weight`, `health_status`, and each
//!   group's `priority` and `locality.zone`. Or plain lines of `HOST:PORT [WEIGHT]`. Read again
//!   whenever it changes (checked every 100 ms); a file that does not parse keeps the last set.
//! * `etcd://HOST:PORT/PREFIX`: every key under `PREFIX` on an etcd v3 server (through its JSON
//!   gateway), each value an address `HOST:PORT` or gRPC's etcd naming record
//!   `{"Addr": "HOST:PORT", "Metadata": {"weight": W}}`; watched from the revision read, so a
//!   put or delete is seen at once.
//!
//! A source that fails (no answer, a file being rewritten) keeps the endpoints it last gave. An
//! address is one endpoint for the run: it keeps its id when it leaves and comes back, and the
//! endpoints that stay keep their state in every proxy (slow start, outlier detection, health),
//! since only the differences reach the proxies' `Cluster`s, as membership changes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mesh_core::discovery::Change;
use mesh_core::{EndpointId, EndpointMeta, Health};

/// One endpoint as a source gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its weight, when the source gives one (SRV, EDS, etcd metadata).
    pub weight: Option<u32>,
    /// Its priority level, when the source gives one (SRV, EDS).
    pub priority: Option<u32>,
    /// Its zone (EDS locality).
    pub zone: Option<String>,
    /// Its health (EDS `health_status`).
    pub health: Health,
}

impl Discovered {
    fn at(addr: SocketAddr) -> Self {
        Discovered {
            addr,
            weight: None,
            priority: None,
            zone: None,
            health: Health::Healthy,
        }
    }
}

/// A discovery source (see the module docs for the syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A and AAAA records, with one port.
    Dns {
        /// The DNS server asked.
        server: SocketAddr,
        /// The name.
        name: String,
        /// The port of every address.
        port: u16,
    },
    /// SRV records.
    Srv {
        /// The DNS server asked.
        server: SocketAddr,
        /// The name (`_service._proto.domain`).
        name: String,
    },
    /// A watched endpoints file.
    File(PathBuf),
    /// An etcd v3 key prefix.
    Etcd {
        /// The etcd client address.
        server: SocketAddr,
        /// The key prefix.
        prefix: String,
    },
}

/// The first `nameserver` of `/etc/resolv.conf`, port 53.
fn system_dns() -> Result<SocketAddr, String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("no DNS server given and /etc/resolv.conf unreadable: {e}"))?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| "no DNS server given and none in /etc/resolv.conf".to_owned())
}

/// `[//SERVER[:PORT]/]REST`: the server (default: the system's) and the rest.
fn dns_authority(spec: &str) -> Result<(SocketAddr, &str), String> {
    let Some(rest) = spec.strip_prefix("//") else {
        return Ok((system_dns()?, spec));
    };
    let (server, name) = rest
        .split_once('/')
        .ok_or("write //SERVER[:PORT]/NAME (the server, then the name)")?;
    if server.is_empty() {
        return Ok((system_dns()?, name));
    }
    let addr = server
        .parse::<SocketAddr>()
        .or_else(|_| server.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .or_else(|_| {
            server
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| {
            format!("`{server}`: the DNS server must be an IP address, with :PORT or not")
        })?;
    Ok((addr, name))
}

impl Source {
    /// Parses a `--discover` value.
    pub fn parse(spec: &str) -> Result<Source, String> {
        let err = |why: String| format!("--discover {spec}: {why}");
        if let Some(rest) = spec.strip_prefix("dns:") {
            let (server, target) = dns_authority(rest).map_err(err)?;
            let (name, port) = target
                .rsplit_once(':')
                .ok_or_else(|| err("write dns:NAME:PORT (A and AAAA records give the addresses, the port is yours)".into()))?;
            let port = port
                .parse::<u16>()
                .map_err(|_| err(format!("`{port}` is not a port")))?;
            if name.is_empty() {
                return Err(err("no name to resolve".into()));
            }
            return Ok(Source::Dns {
                server,
                name: name.to_owned(),
                port,
            });
        }
        if let Some(rest) = spec.strip_prefix("srv:") {
            let (server, name) = dns_authority(rest).map_err(err)?;
            if name.is_empty() || name.contains(':') {
                return Err(err(
                    "write srv:NAME (for example srv:_http._tcp.backend.example; SRV records give the ports)".into(),
                ));
            }
            return Ok(Source::Srv {
                server,
                name: name.to_owned(),
            });
        }
        if let Some(path) = spec.strip_prefix("file:") {
            if path.is_empty() {
                return Err(err("write file:PATH".into()));
            }
            return Ok(Source::File(PathBuf::from(path)));
        }
        if let Some(rest) = spec.strip_prefix("etcd://") {
            let (server, prefix) = rest
                .split_once('/')
                .ok_or_else(|| err("write etcd://HOST:PORT/PREFIX".into()))?;
            let server = std::net::ToSocketAddrs::to_socket_addrs(server)
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| err(format!("`{server}` is not HOST:PORT")))?;
            return Ok(Source::Etcd {
                server,
                prefix: format!("/{prefix}"),
            });
        }
        Err(err(
            "unknown source: use dns:NAME:PORT, srv:NAME, file:PATH or etcd://HOST:PORT/PREFIX"
                .into(),
        ))
    }

    /// The endpoints now, and how long they hold (DNS: the TTL; others: until the watch says).
    pub async fn resolve(&self) -> Result<(Vec<Discovered>, Duration), String> {
        match self {
            Source::Dns { server, name, port } => {
                // A name may have addresses of one family only; a server without upstreams
                // (dnsmasq) refuses the other family's question instead of answering empty.
                let a = dns_query(*server, name, hickory_proto::rr::RecordType::A).await;
                let aaaa = dns_query(*server, name, hickory_proto::rr::RecordType::AAAA).await;
                let ((a, ttl_a), (aaaa, ttl_aaaa)) = match (a, aaaa) {
                    (Err(e), Err(_)) => return Err(e),
                    (a, aaaa) => (
                        a.unwrap_or((Vec::new(), Duration::MAX)),
                        aaaa.unwrap_or((Vec::new(), Duration::MAX)),
                    ),
                };
                let mut out: Vec<Discovered> = Vec::new();
                for r in a.iter().chain(&aaaa) {
                    if let Some(ip) = r.ip {
                        out.push(Discovered::at(SocketAddr::new(ip, *port)));
                    }
                }
                // Record order rotates between answers: ids go by address.
                out.sort_by_key(|d| d.addr);
                let ttl = ttl_a.min(ttl_aaaa);
                Ok((
                    out,
                    if ttl == Duration::MAX {
                        Duration::from_secs(30)
                    } else {
                        ttl
                    },
                ))
            }
            Source::Srv { server, name } => {
                let (records, ttl) =
                    dns_query(*server, name, hickory_proto::rr::RecordType::SRV).await?;
                let mut out = Vec::new();
                let mut ttl = ttl;
                for r in records {
                    let Some((target, port, weight, priority)) = r.srv else {
                        continue;
                    };
                    // The additional section usually carries the target's addresses.
                    let mut ips: Vec<IpAddr> = r.glue;
                    if ips.is_empty() {
                        for t in [
                            hickory_proto::rr::RecordType::A,
                            hickory_proto::rr::RecordType::AAAA,
                        ] {
                            let (rs, t_ttl) = dns_query(*server, &target, t).await?;
                            ttl = ttl.min(t_ttl);
                            ips.extend(rs.iter().filter_map(|r| r.ip));
                        }
                    }
                    for ip in ips {
                        out.push(Discovered {
                            weight: Some(u32::from(weight).max(1)),
                            priority: Some(u32::from(priority)),
                            ..Discovered::at(SocketAddr::new(ip, port))
                        });
                    }
                }
                out.sort_by_key(|d| (d.priority, d.addr));
                Ok((out, ttl))
            }
            Source::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let eps =
                    parse_endpoints_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok((eps, Duration::from_millis(100)))
            }
            Source::Etcd { server, prefix } => {
                let (eps, _) = etcd_range(*server, prefix).await?;
                Ok((eps, Duration::from_secs(1)))
            }
        }
    }

    /// Calls `on` with every new set of endpoints (and errors, which keep the last set), until
    /// the task is aborted. The first call comes once the source has been read.
    pub async fn watch(self, mut on: impl FnMut(Result<Vec<Discovered>, String>) + Send) {
        match &self {
            Source::File(path) => {
                let mut seen = None;
                loop {
                    let stamp = std::fs::metadata(path)
                        .ok()
                        .map(|m| (m.modified().ok(), m.len()));
                    if stamp != seen {
                        seen = stamp;
                        on(self.resolve().await.map(|r| r.0));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Source::Etcd { server, prefix } => loop {
                match etcd_range(*server, prefix).await {
                    Ok((eps, revision)) => {
                        on(Ok(eps));
                        // Until something under the prefix changes (or the stream breaks).
                        if let Err(e) = etcd_watch(*server, prefix, revision + 1).await {
                            on(Err(e));
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                    Err(e) => {
                        on(Err(e));
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            },
            Source::Dns { .. } | Source::Srv { .. } => loop {
                match self.resolve().await {
                    Ok((eps, ttl)) => {
                        on(Ok(eps));
                        tokio::time::sleep(ttl).await;
                    }
                    Err(e) => {
                        on(Err(e));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            },
        }
    }
}

/// One answer record: an address, or an SRV record with the addresses the additional section
/// gave for its target.
#[derive(Clone, Debug, Default)]
struct Answer {
    ip: Option<IpAddr>,
    srv: Option<(String, u16, u16, u16)>,
    glue: Vec<IpAddr>,
}

/// Asks `server` (UDP) for `name`'s records of type `kind`: the answers and the shortest TTL
/// (at least 250 ms; 30 s when there are none, as a negative answer's cache time).
async fn dns_query(
    server: SocketAddr,
    name: &str,
    kind: hickory_proto::rr::RecordType,
) -> Result<(Vec<Answer>, Duration), String> {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData};
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let qname = Name::from_ascii(&fqdn).map_err(|e| format!("`{name}`: not a DNS name: {e}"))?;
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xffff) as u16;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, kind));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    msg.edns = Some(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| format!("encoding a DNS query: {e}"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("DNS: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("DNS server {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut answer = None;
    for _ in 0..3 {
        sock.send(&bytes)
            .await
            .map_err(|e| format!("DNS server {server}: {e}"))?;
        match tokio::time::timeout(Duration::from_millis(700), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let m = Message::from_vec(&buf[..n])
                    .map_err(|e| format!("DNS server {server}: a malformed answer: {e}"))?;
                if m.metadata.id == id {
                    answer = Some(m);
                    break;
                }
            }
            Ok(Err(e)) => return Err(format!("DNS server {server}: {e}")),
            Err(_) => {}
        }
    }
    let mut m = answer.ok_or_else(|| format!("DNS server {server}: no answer for {name}"))?;
    if m.metadata.truncation {
        // Too many records for a datagram: ask again over TCP (RFC 7766).
        m = dns_over_tcp(server, &bytes, id).await?;
    }
    match m.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        c => return Err(format!("DNS server {server}: {name}: {c}")),
    }
    let mut glue: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for r in &m.additionals {
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        glue.entry(r.name.to_ascii().to_lowercase())
            .or_default()
            .push(ip);
    }
    let mut ttl = u32::MAX;
    let mut out = Vec::new();
    for r in &m.answers {
        let a = match &r.data {
            RData::A(a) if kind == hickory_proto::rr::RecordType::A => Answer {
                ip: Some(IpAddr::V4(a.0)),
                ..Answer::default()
            },
            RData::AAAA(a) if kind == hickory_proto::rr::RecordType::AAAA => Answer {
                ip: Some(IpAddr::V6(a.0)),
                ..Answer::default()
            },
            RData::SRV(s) => {
                let target = s.target.to_ascii().to_lowercase();
                Answer {
                    glue: glue.get(&target).cloned().unwrap_or_default(),
                    srv: Some((target, s.port, s.weight, s.priority)),
                    ip: None,
                }
            }
            _ => continue,
        };
        ttl = ttl.min(r.ttl);
        out.push(a);
    }
    let ttl = if ttl == u32::MAX {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(u64::from(ttl)).max(Duration::from_millis(250))
    };
    Ok((out, ttl))
}

/// One DNS exchange over TCP (the message behind its two-byte length).
async fn dns_over_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
) -> Result<hickory_proto::op::Message, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fail = |e: std::io::Error| format!("DNS server {server} (TCP): {e}");
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(server).await.map_err(fail)?;
        let len = u16::try_from(query.len()).map_err(|_| "a DNS query too long".to_owned())?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(query);
        s.write_all(&out).await.map_err(fail)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(fail)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.map_err(fail)?;
        let m = hickory_proto::op::Message::from_vec(&buf)
            .map_err(|e| format!("DNS server {server} (TCP): a malformed answer: {e}"))?;
        if m.metadata.id == id {
            Ok(m)
        } else {
            Err(format!(
                "DNS server {server} (TCP): an answer to another query"
            ))
        }
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| format!("DNS server {server} (TCP): no answer"))?
}

/// Parses an endpoints file: an Envoy `ClusterLoadAssignment` (YAML or JSON, bare or in a
/// discovery response's `resources`), or lines of `HOST:PORT [WEIGHT]` (`#` comments).
pub fn parse_endpoints_file(text: &str) -> Result<Vec<Discovered>, String> {
    // Plain lines never name `endpoints` (outside comments); an Envoy assignment always does.
    let looks_structured = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .any(|l| l.contains("endpoints") || l.trim_start().starts_with('{'));
    if !looks_structured {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let addr = parts.next().unwrap_or("");
            let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("line {}: `{addr}` is not HOST:PORT", n + 1))?;
            let weight = parts
                .next()
                .map(|w| {
                    w.parse::<u32>()
                        .map_err(|_| format!("line {}: weight `{w}` is not a whole number", n + 1))
                })
                .transpose()?;
            out.push(Discovered {
                weight,
                ..Discovered::at(addr)
            });
        }
        return Ok(out);
    }
    let doc: serde_json::Value =
        yaml_serde::from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let cla = match doc.get("resources").and_then(|r| r.as_array()) {
        Some(r) => r
            .first()
            .cloned()
            .ok_or("`resources` is empty: no ClusterLoadAssignment")?,
        None => doc,
    };
    let groups = cla
        .get("endpoints")
        .and_then(|e| e.as_array())
        .ok_or("no `endpoints` list (an Envoy ClusterLoadAssignment)")?;
    let mut out = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let priority = group
            .get("priority")
            .and_then(serde_json::Value::as_u64)
            .map(|p| p as u32);
        let zone = group
            .pointer("/locality/zone")
            .and_then(|z| z.as_str())
            .map(str::to_owned);
        let Some(lbs) = group.get("lb_endpoints").and_then(|l| l.as_array()) else {
            continue;
        };
        for (i, lb) in lbs.iter().enumerate() {
            let at = format!("endpoints[{g}].lb_endpoints[{i}]");
            let sa = lb
                .pointer("/endpoint/address/socket_address")
                .ok_or_else(|| format!("{at}: no endpoint.address.socket_address"))?;
            let host = sa
                .get("address")
                .and_then(|a| a.as_str())
                .ok_or_else(|| format!("{at}: no socket_address.address"))?;
            let port = sa
                .get("port_value")
                .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("{at}: no socket_address.port_value"))?;
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("{at}: `{host}` does not resolve"))?;
            let weight = lb
                .get("load_balancing_weight")
                .and_then(|w| w.as_u64().or_else(|| w.get("value")?.as_u64()))
                .map(|w| w as u32);
            let health = match lb.get("health_status").and_then(|h| h.as_str()) {
                None | Some("HEALTHY" | "UNKNOWN") => Health::Healthy,
                Some("DEGRADED") => Health::Degraded,
                Some("DRAINING") => Health::Draining,
                Some("UNHEALTHY" | "TIMEOUT") => Health::Unhealthy,
                Some(other) => {
                    return Err(format!(
                        "{at}.health_status: `{other}`: one of HEALTHY, UNKNOWN, DEGRADED, DRAINING, UNHEALTHY, TIMEOUT"
                    ));
                }
            };
            out.push(Discovered {
                addr,
                weight,
                priority,
                zone: zone.clone(),
                health,
            });
        }
    }
    Ok(out)
}

/// The end of the key range of `prefix` (etcd's `range_end`: the prefix with its last byte
/// incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A POST of `body` (JSON) to etcd's gateway at `path`, on a fresh HTTP/1.1 connection: the
/// response, not yet read.
async fn etcd_post(
    server: SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let stream = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| format!("etcd {server}: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("etcd {server}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, server.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| format!("etcd request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("etcd {server}{path}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("etcd {server}{path}: HTTP {}", resp.status()));
    }
    Ok(resp)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Every endpoint under `prefix`, in key order, and the store's revision.
async fn etcd_range(server: SocketAddr, prefix: &str) -> Result<(Vec<Discovered>, i64), String> {
    use http_body_util::BodyExt as _;
    let resp = etcd_post(
        server,
        "/v3/kv/range",
        serde_json::json!({
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix.as_bytes())),
        }),
    )
    .await?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("etcd {server}: {e}"))?
        .to_bytes();
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("etcd {server}: not JSON: {e}"))?;
    let revision = v
        .pointer("/header/revision")
        .and_then(|r| r.as_str().and_then(|s| s.parse().ok()).or(r.as_i64()))
        .unwrap_or(0);
    let mut out = Vec::new();
    for kv in v
        .get("kvs")
        .and_then(|k| k.as_array())
        .into_iter()
        .flatten()
    {
        let key = kv
            .get("key")
            .and_then(|k| k.as_str())
            .and_then(unb64)
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .unwrap_or_default();
        let Some(value) = kv.get("value").and_then(|k| k.as_str()).and_then(unb64) else {
            continue;
        };
        let value = String::from_utf8_lossy(&value).trim().to_owned();
        out.push(parse_etcd_value(&value).map_err(|e| format!("etcd key {key}: {e}"))?);
    }
    Ok((out, revision))
}

/// An etcd value: `HOST:PORT`, or gRPC's naming record `{"Addr": ..., "Metadata": ...}`
/// (`addr` and `weight` in lower case too).
fn parse_etcd_value(value: &str) -> Result<Discovered, String> {
    let (addr, weight) = if value.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(value).map_err(|e| format!("not JSON: {e}"))?;
        let addr = v
            .get("Addr")
            .or_else(|| v.get("addr"))
            .and_then(|a| a.as_str())
            .ok_or("no `Addr`")?
            .to_owned();
        let weight = v
            .pointer("/Metadata/weight")
            .or_else(|| v.get("weight"))
            .and_then(serde_json::Value::as_u64)
            .map(|w| w as u32);
        (addr, weight)
    } else {
        (value.to_owned(), None)
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("`{addr}` is not HOST:PORT"))?;
    Ok(Discovered {
        weight,
        ..Discovered::at(addr)
    })
}

/// Waits until something under `prefix` changes from revision `from` on (a watch stream on
/// the gateway); an error when the stream breaks.
async fn etcd_watch(server: SocketAddr, prefix: &str, from: i64) -> Result<(), String> {
    use http_body_util::BodyExt as _;
    let resp = etcd_post(
        server,
        "/v3/watch",
        serde_json::json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix.as_bytes())),
            "start_revision": from.to_string(),
        }}),
    )
    .await?;
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("etcd watch: {e}"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            if v.pointer("/result/events")
                .and_then(|e| e.as_array())
                .is_some_and(|e| !e.is_empty())
            {
                return Ok(());
            }
        }
    }
    Err("etcd watch: the stream ended".into())
}

/// The endpoints of a run under discovery: each address keeps one id for the run. Ids below the
/// scenario's instance count are the scenario's endpoints (each proxy's `Cluster` starts with
/// them); the first addresses seen take them, and those left over are removed at the start.
#[derive(Debug)]
pub struct Book {
    by_addr: BTreeMap<SocketAddr, u32>,
    /// By id: the address and what the proxies were last told (`None`: not present).
    slots: Vec<(Option<SocketAddr>, Option<Discovered>)>,
    /// The scenario's endpoints (ids the `Cluster`s start with).
    initial: u32,
    /// Metadata for endpoints the scenario does not describe (its first instance's zone).
    template: EndpointMeta,
}

/// What one new set of endpoints changes: membership changes for every proxy's `Cluster`, and
/// the endpoints that need a connection pool entry (id and address), first seen now.
#[derive(Clone, Debug, Default)]
pub struct Update {
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// New ids and their addresses.
    pub new: Vec<(u32, SocketAddr)>,
}

impl Book {
    /// A book over a scenario's `initial` endpoints; `template` is the metadata an endpoint
    /// gets where the source says nothing (weight, priority, zone).
    pub fn new(initial: u32, template: EndpointMeta) -> Self {
        Book {
            by_addr: BTreeMap::new(),
            slots: (0..initial).map(|_| (None, None)).collect(),
            initial,
            template,
        }
    }

    /// The address of id `i`, once it has one.
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        self.slots.get(i).and_then(|s| s.0)
    }

    fn meta(&self, d: &Discovered) -> EndpointMeta {
        EndpointMeta {
            weight: d.weight.unwrap_or(self.template.weight),
            priority: d.priority.unwrap_or(self.template.priority),
            zone: d.zone.clone().unwrap_or_else(|| self.template.zone.clone()),
            health: d.health,
        }
    }

    /// The changes that take every proxy from the last set to `now`. The first call also
    /// removes the scenario's endpoints that no address took.
    pub fn apply(&mut self, now: &[Discovered]) -> Update {
        let first = self.slots.iter().all(|s| s.0.is_none());
        let mut up = Update::default();
        // The same address twice: the first one counts.
        let mut seen = std::collections::BTreeSet::new();
        let now: Vec<&Discovered> = now.iter().filter(|d| seen.insert(d.addr)).collect();
        for d in &now {
            let id = match self.by_addr.get(&d.addr) {
                Some(&id) => id,
                None => {
                    let free = (0..self.initial as usize).find(|&i| self.slots[i].0.is_none());
                    let id = match free {
                        Some(i) => i as u32,
                        None => {
                            self.slots.push((None, None));
                            (self.slots.len() - 1) as u32
                        }
                    };
                    self.slots[id as usize].0 = Some(d.addr);
                    self.by_addr.insert(d.addr, id);
                    up.new.push((id, d.addr));
                    id
                }
            };
            let endpoint = EndpointId(id);
            let meta = self.meta(d);
            match &self.slots[id as usize].1 {
                None => up.changes.push(Change::Add { endpoint, meta }),
                Some(old) => {
                    let was = self.meta(old);
                    if was.weight != meta.weight {
                        up.changes.push(Change::Weight {
                            endpoint,
                            weight: meta.weight,
                        });
                    }
                    if was.priority != meta.priority {
                        up.changes.push(Change::Priority {
                            endpoint,
                            priority: meta.priority,
                        });
                    }
                    if was.zone != meta.zone {
                        up.changes.push(Change::Zone {
                            endpoint,
                            zone: meta.zone.clone(),
                        });
                    }
                    if was.health != meta.health {
                        up.changes.push(Change::Health {
                            endpoint,
                            health: meta.health,
                        });
                    }
                }
            }
            self.slots[id as usize].1 = Some((*d).clone());
        }
        let present: std::collections::BTreeSet<SocketAddr> = now.iter().map(|d| d.addr).collect();
        for (id, slot) in self.slots.iter_mut().enumerate() {
            let gone = match slot.0 {
                Some(a) => !present.contains(&a) && slot.1.is_some(),
                // A scenario endpoint no address took: out from the start.
                None => first && id < self.initial as usize,
            };
            if gone {
                slot.1 = None;
                up.changes.push(Change::Remove {
                    endpoint: EndpointId(id as u32),
                });
            }
        }
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(port: u16) -> Discovered {
        Discovered::at(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn an_address_keeps_its_id_and_only_differences_reach_the_proxies() {
        let mut book = Book::new(3, EndpointMeta::default());
        // Two addresses for three scenario endpoints: ids 0 and 1, and 2 is removed.
        let up = book.apply(&[d(1), d(2)]);
        assert_eq!(up.new, vec![(0, d(1).addr), (1, d(2).addr)]);
        assert!(up.changes.contains(&Change::Remove {
            endpoint: EndpointId(2)
        }));
        // The same set again changes nothing (state kept in the Clusters).
        assert!(book.apply(&[d(2), d(1)]).changes.is_empty());
        // A scale-out takes the free scenario slot first, then new ids.
        let up = book.apply(&[d(1), d(2), d(3), d(4)]);
        assert_eq!(up.new, vec![(2, d(3).addr), (3, d(4).addr)]);
        // One leaves and comes back: the same id, re-added.
        let up = book.apply(&[d(1), d(3), d(4)]);
        assert_eq!(
            up.changes,
            vec![Change::Remove {
                endpoint: EndpointId(1)
            }]
        );
        let up = book.apply(&[d(1), d(2), d(3), d(4)]);
        assert!(up.new.is_empty());
        assert!(matches!(
            up.changes[..],
            [Change::Add {
                endpoint: EndpointId(1),
                ..
            }]
        ));
        // A weight change is a weight change, not a re-add.
        let mut w = d(4);
        w.weight = Some(5);
        let up = book.apply(&[d(1), d(2), d(3), w]);
        assert_eq!(
            up.changes,
            vec![Change::Weight {
                endpoint: EndpointId(3),
                weight: 5
            }]
        );
    }

    #[test]
    fn endpoints_files_in_envoy_eds_and_plain_forms() {
        let eds = "
resources:
- '@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: backend
  endpoints:
  - priority: 1
    locality: { zone: b }
    lb_endpoints:
    - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8081 } } }
      load_balancing_weight: 3
    - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8082 } } }
      health_status: DRAINING
";
        let got = parse_endpoints_file(eds).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].weight, Some(3));
        assert_eq!(got[0].priority, Some(1));
        assert_eq!(got[0].zone.as_deref(), Some("b"));
        assert_eq!(got[1].health, Health::Draining);
        let json = r#"{"cluster_name":"b","endpoints":[{"lb_endpoints":[{"endpoint":{"address":{"socket_address":{"address":"::1","port_value":9}}}}]}]}"#;
        assert_eq!(
            parse_endpoints_file(json).unwrap()[0].addr,
            "[::1]:9".parse().unwrap()
        );
        let plain = "# backends\n127.0.0.1:8081 2\n127.0.0.1:8082\n";
        let got = parse_endpoints_file(plain).unwrap();
        assert_eq!(
            (got.len(), got[0].weight, got[1].weight),
            (2, Some(2), None)
        );
        let bad = parse_endpoints_file("127.0.0.1:8081 heavy").unwrap_err();
        assert!(bad.contains("line 1") && bad.contains("heavy"), "{bad}");
        let bad = parse_endpoints_file(&eds.replace("DRAINING", "SLEEPY")).unwrap_err();
        assert!(
            bad.contains("health_status") && bad.contains("SLEEPY"),
            "{bad}"
        );
    }

    #[test]
    fn sources_parse_with_errors_that_say_what_to_write() {
        assert_eq!(
            Source::parse("dns://127.0.0.1:5353/backend.test:8080").unwrap(),
            Source::Dns {
                server: "127.0.0.1:5353".parse().unwrap(),
                name: "backend.test".into(),
                port: 8080
            }
        );
        assert_eq!(
            Source::parse("srv://127.0.0.1/_http._tcp.backend.test").unwrap(),
            Source::Srv {
                server: "127.0.0.1:53".parse().unwrap(),
                name: "_http._tcp.backend.test".into()
            }
        );
        assert_eq!(
            Source::parse("etcd://127.0.0.1:2379/services/backend/").unwrap(),
            Source::Etcd {
                server: "127.0.0.1:2379".parse().unwrap(),
                prefix: "/services/backend/".into()
            }
        );
        assert!(
            Source::parse("dns://127.0.0.1/backend.test")
                .unwrap_err()
                .contains("PORT")
        );
        assert!(
            Source::parse("consul:x")
                .unwrap_err()
                .contains("dns:NAME:PORT")
        );
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
    }
}
