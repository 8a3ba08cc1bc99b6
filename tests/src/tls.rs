//! Throwaway TLS material for tests: a CA, a server certificate for `localhost` and 127.0.0.1
//! signed by it, and an unrelated CA a worker must not accept the server with.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// PEM files written by [`TestPki::write`].
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the server uses.
    pub other_ca: PathBuf,
    /// The server's certificate (for `localhost` and 127.0.0.1).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

fn certificate_authority(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

impl TestPki {
    /// Generates the material and writes it as PEM files into `dir`.
    pub fn write(dir: &Path) -> anyhow::Result<TestPki> {
        let ca = certificate_authority("earthcatalog test CA")?;
        let other = certificate_authority("some other CA")?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])?;
        params.distinguished_name.push(DnType::CommonName, "earthcatalog coordinator");
        let cert = params.signed_by(&key, &ca)?;
        let pki = TestPki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            cert: dir.join("coordinator.pem"),
            key: dir.join("coordinator.key"),
        };
        std::fs::write(&pki.ca, ca.pem())?;
        std::fs::write(&pki.other_ca, other.pem())?;
        std::fs::write(&pki.cert, cert.pem())?;
        std::fs::write(&pki.key, key.serialize_pem())?;
        Ok(pki)
    }
}
