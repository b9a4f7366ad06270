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
        })
    }
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
