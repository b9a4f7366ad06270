//! Outside endpoints given as URLs (`live --target https://api.internal:8443/v1/items`), and
//! what a failed TLS handshake with one of them means in words.

use std::net::{SocketAddr, ToSocketAddrs as _};

use rustls::pki_types::ServerName;

/// One `--target`: where to connect, what to send as `Host` and the request path, and the name
/// its TLS certificate must carry.
#[derive(Clone, Debug)]
pub struct TargetUrl {
    /// The address dialled (the host resolved once, at the start).
    pub addr: SocketAddr,
    /// The URL's authority, sent as `Host` (`api.internal:8443`).
    pub authority: String,
    /// Path and query of every request (`/v1/items?q=1`; `/` when the URL has none).
    pub path: String,
    /// `https://`.
    pub https: bool,
    /// The name the certificate is checked against: the URL's host (a DNS name or an IP
    /// address); `None` when `--server-name` overrides it.
    pub server_name: Option<ServerName<'static>>,
    /// This target's own request (a targets file's method, headers and body); `None`: the
    /// run's.
    pub request: Option<std::sync::Arc<crate::driver::RequestSpec>>,
}

impl TargetUrl {
    /// Parses `http://HOST[:PORT][/PATH]` or `https://...` (`HOST:PORT` alone means http).
    /// Hosts may be names (resolved now), IPv4 or bracketed IPv6 addresses. Errors say what is
    /// wrong with the text.
    pub fn parse(text: &str) -> Result<TargetUrl, String> {
        let full = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let uri: hyper::Uri = full.parse().map_err(|e| {
            format!("`{text}` is not a URL ({e}): write http://HOST:PORT/PATH or https://...")
        })?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "`{text}`: scheme `{other}` is not supported: use http:// or https://"
                ));
            }
            None => false,
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{text}` has no host"))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{text}`: user names in target URLs are not supported"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("`{text}`: cannot resolve `{host}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{text}`: `{host}` resolves to no address"))?;
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("`{text}`: `{host}` is not a DNS name or IP address"))?;
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(TargetUrl {
            addr,
            authority: authority.as_str().to_owned(),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
            https,
            server_name: Some(server_name),
            request: None,
        })
    }
}

/// Parses a targets file in vegeta's formats: the text format (`METHOD URL`, then `Name: value`
/// header lines, then an optional `@BODYFILE` line, targets apart by blank lines; `#` comments)
/// or JSON lines (`{"method": "POST", "url": "...", "header": {"Name": ["value"]}, "body":
/// "BASE64"}`). Each target is one endpoint, with its own request, under `base`'s headers (the
/// command line's, added to every target). `file` names the file in errors, with the line.
pub fn parse_targets_file(
    text: &str,
    file: &str,
    base: &crate::driver::RequestSpec,
) -> Result<Vec<TargetUrl>, String> {
    let mut out = Vec::new();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(|l| l.starts_with('{')) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let at = |why: String| format!("{file}:{}: {why}", n + 1);
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
            let url = v
                .get("url")
                .and_then(|u| u.as_str())
                .ok_or_else(|| at("no \"url\"".into()))?;
            let method = v.get("method").and_then(|m| m.as_str()).unwrap_or("GET");
            let mut headers = Vec::new();
            if let Some(h) = v.get("header").and_then(|h| h.as_object()) {
                for (name, values) in h {
                    for value in values.as_array().into_iter().flatten() {
                        headers.push(format!("{name}: {}", value.as_str().unwrap_or_default()));
                    }
                }
            }
            let body = match v.get("body").and_then(|b| b.as_str()) {
                Some(b) => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| at(format!("\"body\" is not base64: {e}")))?
                }
                None => Vec::new(),
            };
            out.push(target(url, method, &headers, body, base).map_err(at)?);
        }
        return Ok(out);
    }
    // The text format: blocks apart by blank lines.
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |n: usize, why: String| format!("{file}:{}: {why}", n + 1);
        let (method, url) = line.split_once(' ').ok_or_else(|| {
            at(n, format!("`{line}`: a target starts with `METHOD URL`, such as `GET http://127.0.0.1:8080/`"))
        })?;
        let mut headers = Vec::new();
        let mut body = Vec::new();
        while let Some((m, l)) = lines.peek().map(|(m, l)| (*m, l.trim())) {
            if l.is_empty() {
                break;
            }
            lines.next();
            if l.starts_with('#') {
                continue;
            }
            if let Some(path) = l.strip_prefix('@') {
                body = std::fs::read(path).map_err(|e| at(m, format!("body file {path}: {e}")))?;
            } else if l.contains(':') {
                headers.push(l.to_owned());
            } else {
                return Err(at(
                    m,
                    format!(
                        "`{l}`: expected a `Name: value` header or an `@BODYFILE` line (a blank line ends a target)"
                    ),
                ));
            }
        }
        out.push(target(url.trim(), method.trim(), &headers, body, base).map_err(|e| at(n, e))?);
    }
    if out.is_empty() {
        return Err(format!("{file}: no targets"));
    }
    Ok(out)
}

/// One target of a targets file: its URL and its own request under `base`'s headers.
fn target(
    url: &str,
    method: &str,
    headers: &[String],
    body: Vec<u8>,
    base: &crate::driver::RequestSpec,
) -> Result<TargetUrl, String> {
    let mut t = TargetUrl::parse(url)?;
    let own = crate::driver::RequestSpec::parse(Some(method), headers, body)?;
    // The command line's headers go on every target, after its own.
    let mut spec = own;
    for (n, v) in &base.headers {
        spec.headers.retain(|(m, _)| m != n);
        spec.headers.push((n.clone(), v.clone()));
    }
    if base.method_given {
        spec.method = base.method.clone();
    }
    if base.body_given {
        spec.body = base.body.clone();
    }
    t.request = Some(std::sync::Arc::new(spec));
    Ok(t)
}

/// What a failed TLS handshake means, in words a user can act on (`None`: not a TLS error).
pub fn tls_failure(e: &std::io::Error) -> Option<String> {
    use rustls::{AlertDescription, CertificateError, Error};
    let inner = e.get_ref()?.downcast_ref::<Error>()?;
    Some(match inner {
        Error::InvalidCertificate(c) => match c {
            // A CA of another name is an unknown issuer; one of the same name fails the
            // signature check.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "unknown CA: the server's certificate is not signed by the --ca given".to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "name mismatch: the server's certificate is not valid for the name checked (the URL's host, or --server-name)".to_owned()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".to_owned()
            }
            other => format!("the server's certificate is invalid: {other:?}"),
        },
        Error::AlertReceived(AlertDescription::CertificateRequired)
        | Error::AlertReceived(AlertDescription::HandshakeFailure)
        | Error::AlertReceived(AlertDescription::BadCertificate) => {
            "the server requires a client certificate it accepts (give --client-cert and --client-key)".to_owned()
        }
        Error::AlertReceived(AlertDescription::UnknownCA) => {
            "the server does not trust the client certificate given (--client-cert)".to_owned()
        }
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "the server does not speak TLS (an http:// endpoint?)".to_owned()
        }
        other => format!("TLS handshake failed: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_every_shape() {
        let t = TargetUrl::parse("https://127.0.0.1:8443/v1/items?q=1").unwrap();
        assert!(t.https);
        assert_eq!(t.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8443");
        assert_eq!(t.path, "/v1/items?q=1");
        let t = TargetUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        assert_eq!(t.path, "/");
        let t = TargetUrl::parse("localhost:9000/x").unwrap();
        assert!(!t.https);
        assert_eq!(t.addr.port(), 9000);
        assert_eq!(t.path, "/x");
        assert_eq!(
            TargetUrl::parse("https://127.0.0.1").unwrap().addr.port(),
            443
        );
        assert!(
            TargetUrl::parse("ftp://x:1")
                .unwrap_err()
                .contains("scheme `ftp`")
        );
        assert!(TargetUrl::parse("http://").is_err());
    }
}
