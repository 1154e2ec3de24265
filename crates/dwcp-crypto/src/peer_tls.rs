//! TLS between the nodes of a cluster: each node has its own self-signed
//! certificate, and each side of a link checks the other's by its SHA-256,
//! as published in the cluster's membership records.
//!
//! Why pinning rather than a cluster CA: the membership record is already
//! the authority on who is a node (it reaches every node over the
//! post-quantum TLS link to NATS), so a fingerprint in it is all a peer
//! needs to know; there is no CA key to guard, and a node's certificate is
//! made at start with nothing to distribute. Both sides authenticate (the
//! server asks for a client certificate), TLS 1.3 only, `X25519MLKEM768`
//! only, ALPN `h2`.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::tls::{TlsError, node_link_provider};

/// The SHA-256 of a certificate (DER), lowercase hex: how peers name it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// A node's peer-link certificate and key: self-signed, made at every
/// start (no key file to guard); peers learn it by its fingerprint.
pub struct PeerIdentity {
    /// The certificate chain (one self-signed certificate).
    pub certs: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// Its SHA-256, as the membership record publishes it.
    pub fingerprint: String,
}

impl PeerIdentity {
    /// A fresh certificate and key.
    pub fn generate() -> Result<PeerIdentity, TlsError> {
        let (cert, key) = crate::tls::self_signed(&["dwcp-peer"])?;
        let (certs, key) = crate::tls::parse_pem(cert.as_bytes(), key.as_bytes())?;
        let fingerprint = fingerprint(&certs[0]);
        Ok(PeerIdentity {
            certs,
            key,
            fingerprint,
        })
    }

    /// The server side of a link, for clients whose fingerprint `allowed` accepts.
    pub fn server_config(&self, allowed: Allowed) -> Result<Arc<ServerConfig>, TlsError> {
        peer_server_config(self.certs.clone(), self.key.clone_key(), allowed)
    }

    /// The client side of a link to the peer whose fingerprint is `expected`.
    pub fn client_config(&self, expected: &str) -> Result<Arc<ClientConfig>, TlsError> {
        peer_client_config(self.certs.clone(), self.key.clone_key(), expected)
    }
}

/// Decides whether a fingerprint belongs to a current member.
pub type Allowed = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The server side of a peer link: clients must present a certificate
/// whose fingerprint `allowed` accepts.
pub fn peer_server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    allowed: Allowed,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(node_link_provider());
    let verifier = Arc::new(PinnedClients {
        allowed,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of a link to the peer whose certificate has
/// `expected` as fingerprint, presenting this node's own.
pub fn peer_client_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    expected: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider: Arc<CryptoProvider> = Arc::new(node_link_provider());
    let verifier = Arc::new(PinnedServer {
        expected: expected.to_ascii_lowercase(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

struct PinnedServer {
    expected: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinnedServer({})", self.expected)
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if fingerprint(end_entity) == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(
                "the peer's certificate is not the one its membership record names".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("peer links are TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

struct PinnedClients {
    allowed: Allowed,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinnedClients")
    }
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if (self.allowed)(&fingerprint(end_entity)) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(Error::General(
                "the client's certificate is not a current member's".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("peer links are TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::NamedGroup;

    fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<Option<NamedGroup>, Error> {
        crate::tls::tests::handshake_as(server, client, "dwcp-peer")
    }

    #[test]
    fn members_connect_post_quantum_and_strangers_are_refused_both_ways() {
        crate::tls::install_default_provider();
        let s = PeerIdentity::generate().unwrap();
        let c = PeerIdentity::generate().unwrap();
        let x = PeerIdentity::generate().unwrap();
        let member = c.fingerprint.clone();
        let server = s.server_config(Arc::new(move |fp| fp == member)).unwrap();

        let client = c.client_config(&s.fingerprint).unwrap();
        assert_eq!(
            handshake(server.clone(), client).unwrap(),
            Some(NamedGroup::X25519MLKEM768)
        );
        // A client that is not a member.
        let stranger = x.client_config(&s.fingerprint).unwrap();
        assert!(handshake(server.clone(), stranger).is_err());
        // A server that is not the node the client meant.
        let wrong = c.client_config(&c.fingerprint).unwrap();
        assert!(handshake(server, wrong).is_err());
    }
}
