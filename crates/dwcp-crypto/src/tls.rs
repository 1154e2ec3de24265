//! TLS configurations: rustls on the aws-lc-rs provider.
//!
//! Client-facing HTTPS offers `X25519MLKEM768` first and keeps the
//! classical groups for old clients; node-to-node links offer and accept
//! `X25519MLKEM768` only, over TLS 1.3, so a classical-only peer cannot
//! connect at all.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is not PEM certificates.
    #[error("the certificate is not a PEM certificate chain: {0}")]
    Certificate(String),
    /// The key file is not a PEM private key.
    #[error("the private key is not a PEM private key: {0}")]
    Key(String),
    /// rustls refused the pair.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate could not be made.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
}

/// Makes aws-lc-rs the process's default rustls provider. Other crates
/// in the build enable `ring` too; with two providers and no default,
/// rustls would not know which to use. Safe to call more than once.
pub fn install_default_provider() {
    let _ = aws_lc_rs::default_provider().install_default();
}

/// Client-facing HTTPS and guests' outgoing HTTPS: `X25519MLKEM768`
/// preferred, classical groups still offered.
pub fn hybrid_preferred_provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![
            aws_lc_rs::kx_group::X25519MLKEM768,
            aws_lc_rs::kx_group::X25519,
            aws_lc_rs::kx_group::SECP256R1,
            aws_lc_rs::kx_group::SECP384R1,
        ],
        ..aws_lc_rs::default_provider()
    }
}

/// Node-to-node links: `X25519MLKEM768` only.
pub fn node_link_provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![aws_lc_rs::kx_group::X25519MLKEM768],
        ..aws_lc_rs::default_provider()
    }
}

/// A server configuration for client-facing HTTPS (HTTP/1.1).
pub fn ingress_server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(hybrid_preferred_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server configuration for node-to-node links: TLS 1.3 and
/// `X25519MLKEM768` only.
pub fn node_link_server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(Arc::new(node_link_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// A client configuration for node-to-node links, trusting `roots`.
pub fn node_link_client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(Arc::new(node_link_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A certificate and key, parsed from PEM.
pub fn parse_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    Ok((certs, key))
}

/// A self-signed certificate for `names` (DNS names or IP addresses):
/// (certificate PEM, private key PEM).
pub fn self_signed(names: &[&str]) -> Result<(String, String), TlsError> {
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::{ClientConnection, NamedGroup, ServerConnection};

    /// Runs a handshake in memory; the group both ends agreed on.
    fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<Option<NamedGroup>, rustls::Error> {
        handshake_as(server, client, "localhost")
    }

    /// Runs a handshake in memory, the client asking for `name`; the group
    /// both ends agreed on.
    pub(crate) fn handshake_as(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &'static str,
    ) -> Result<Option<NamedGroup>, rustls::Error> {
        let mut server = ServerConnection::new(server)?;
        let mut client = ClientConnection::new(client, name.try_into().expect("a name"))?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).expect("to memory");
            server.read_tls(&mut buf.as_slice()).expect("from memory");
            server.process_new_packets()?;
            let mut buf = Vec::new();
            server.write_tls(&mut buf).expect("to memory");
            client.read_tls(&mut buf.as_slice()).expect("from memory");
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(client.negotiated_key_exchange_group().map(|g| g.name()));
            }
        }
        panic!("the handshake did not finish");
    }

    fn client(
        groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
        roots: RootCertStore,
    ) -> Arc<ClientConfig> {
        let provider = CryptoProvider {
            kx_groups: groups,
            ..aws_lc_rs::default_provider()
        };
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    #[test]
    fn ingress_prefers_hybrid_and_node_links_refuse_classical_peers() {
        let (cert, key) = self_signed(&["localhost", "127.0.0.1"]).unwrap();
        let (certs, key) = parse_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(certs[0].clone()).unwrap();
        let hybrid_first = client(
            vec![
                aws_lc_rs::kx_group::X25519MLKEM768,
                aws_lc_rs::kx_group::X25519,
            ],
            roots.clone(),
        );
        let classical = client(vec![aws_lc_rs::kx_group::X25519], roots.clone());

        let ingress = ingress_server_config(certs.clone(), key.clone_key()).unwrap();
        assert_eq!(
            handshake(ingress.clone(), hybrid_first.clone()).unwrap(),
            Some(NamedGroup::X25519MLKEM768)
        );
        assert_eq!(
            handshake(ingress, classical.clone()).unwrap(),
            Some(NamedGroup::X25519)
        );

        let link = node_link_server_config(certs, key).unwrap();
        assert_eq!(
            handshake(link.clone(), node_link_client_config(roots).unwrap()).unwrap(),
            Some(NamedGroup::X25519MLKEM768)
        );
        assert!(
            handshake(link, classical).is_err(),
            "a classical-only peer connected"
        );
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        assert!(matches!(
            parse_pem(b"junk", b"junk"),
            Err(TlsError::Certificate(_))
        ));
        let (cert, _) = self_signed(&["localhost"]).unwrap();
        assert!(matches!(
            parse_pem(cert.as_bytes(), b"junk"),
            Err(TlsError::Key(_))
        ));
    }
}
