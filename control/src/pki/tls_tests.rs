//! A real TLS handshake over loopback with the PKI's configurations.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

/// Serves one connection: answers with the client's user name, or
/// "anonymous" when it presented no certificate.
async fn serve_one(listener: &TcpListener, acceptor: &TlsAcceptor) -> Option<ClientIdentity> {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut tls = acceptor.accept(tcp).await.unwrap();
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| client_identity(leaf).unwrap());
    let mut ping = [0u8; 4];
    tls.read_exact(&mut ping).await.unwrap();
    assert_eq!(&ping, b"ping");
    let user = identity.as_ref().map_or("anonymous", |id| id.user.as_str());
    tls.write_all(user.as_bytes()).await.unwrap();
    tls.shutdown().await.unwrap();
    identity
}

async fn ask(port: u16, config: rustls::ClientConfig, name: &str) -> std::io::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await?;
    tls.write_all(b"ping").await?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await?;
    Ok(answer)
}

#[tokio::test]
async fn handshake_with_admin_certificate_over_loopback() {
    // rustls checks validity against the real clock.
    let now = SystemTime::now();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &["hami.test".to_owned()], now).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(pki.server_config().unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    // The admin certificate: the server sees CN hami-admin, O system:masters.
    let (cert_pem, key_pem) = pki.admin();
    let admin = pki.client_config(Some((&cert_pem, &key_pem))).unwrap();
    let (served, answer) = tokio::join!(
        serve_one(&listener, &acceptor),
        ask(port, admin, "127.0.0.1")
    );
    let id = served.unwrap();
    assert_eq!(id.user, ADMIN_USER);
    assert_eq!(id.groups, vec![ADMIN_GROUP.to_owned()]);
    assert_eq!(answer.unwrap(), ADMIN_USER);

    // No client certificate is admitted too (bearer tokens), by DNS name.
    let anonymous = pki.client_config(None).unwrap();
    let (served, answer) = tokio::join!(
        serve_one(&listener, &acceptor),
        ask(port, anonymous, "hami.test")
    );
    assert!(served.is_none());
    assert_eq!(answer.unwrap(), "anonymous");
}

#[tokio::test]
async fn client_certificate_of_another_ca_is_refused() {
    let now = SystemTime::now();
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = Pki::load_or_create(ours.path(), &[], now).unwrap();
    let other = Pki::load_or_create(theirs.path(), &[], now).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(pki.server_config().unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    let (cert_pem, key_pem) = other.admin();
    let forged = pki.client_config(Some((&cert_pem, &key_pem))).unwrap();
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await
    };
    let (accepted, answer) = tokio::join!(server, ask(port, forged, "localhost"));
    assert!(
        accepted.is_err(),
        "the server refuses a certificate it did not sign"
    );
    assert!(answer.is_err());

    // And a client trusting only the other CA refuses our server.
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await
    };
    let wrong_trust = other.client_config(None).unwrap();
    let (accepted, answer) = tokio::join!(server, ask(port, wrong_trust, "localhost"));
    assert!(accepted.is_err());
    assert!(answer.is_err());
}
