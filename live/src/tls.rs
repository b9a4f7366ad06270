//! TLS for live mode (rustls with the `ring` provider only, so no second crypto provider can be
//! enabled by accident): server configs for the test backends, client configs trusting a custom
//! CA with an optional client certificate (mTLS), and a throwaway PKI for tests and for
//! `meshbench live --tls` against in-process backends.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// PEM texts of a CA, a server certificate for `localhost` / `127.0.0.1` / `::1`, and a client
/// certificate, all signed by the CA.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The server certificate.
    pub server_cert_pem: String,
    /// The server key.
    pub server_key_pem: String,
    /// The client certificate (for mTLS).
    pub client_cert_pem: String,
    /// The client key.
    pub client_key_pem: String,
}

/// Generates a fresh CA with a server and a client certificate.
pub fn generate_pki() -> Result<TestPki, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let e = |e: rcgen::Error| e.to_string();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meshbench test CA");
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(e)?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(e)?;
    let server_cert = server.signed_by(&server_key, &issuer).map_err(e)?;

    let mut client = CertificateParams::new(vec!["meshbench-client".to_owned()]).map_err(e)?;
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client
        .distinguished_name
        .push(DnType::CommonName, "meshbench client");
    let client_key = KeyPair::generate().map_err(e)?;
    let client_cert = client.signed_by(&client_key, &issuer).map_err(e)?;

    Ok(TestPki {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let v: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: not a PEM certificate chain: {e}"))?;
    if v.is_empty() {
        return Err(format!("{what}: no certificate in the PEM text"));
    }
    Ok(v)
}

fn key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("{what}: not a PEM private key: {e}"))
}

fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, "CA")? {
        roots
            .add(c)
            .map_err(|e| format!("CA: unusable certificate: {e}"))?;
    }
    Ok(roots)
}

/// A server config from a certificate chain and key (PEM); with `client_ca_pem`, clients must
/// present a certificate signed by that CA (mTLS). ALPN offers h2 and http/1.1. It issues no
/// session tickets: live clients never resume (see [`client_config`]).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            certs(cert_pem, "server certificate")?,
            key(key_pem, "server key")?,
        )
        .map_err(|e| format!("server certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client config trusting `ca_pem`, presenting `client` (certificate, key) when given, and
/// asking for h2 by ALPN when `http2`.
///
/// Every connection does a full handshake: session resumption is off, so a new connection
/// costs what the simulator's `mesh.handshake` models (the server's certificate checked and its
/// signature verified, and with mTLS the client's signature and the server's check of its
/// chain). With rustls's default ticket cache, every connection after the first resumed by a
/// pre-shared key, skipping both certificates, and mTLS cost no more than TLS.
pub fn client_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    http2: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match client {
        Some((cert, k)) => builder
            .with_client_auth_cert(certs(cert, "client certificate")?, key(k, "client key")?)
            .map_err(|e| format!("client certificate and key: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// What a client needs to dial TLS: the config and the name to verify.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// The rustls config.
    pub config: Arc<rustls::ClientConfig>,
    /// The server name checked against the certificate (`localhost`, or an IP address).
    pub server_name: ServerName<'static>,
}
