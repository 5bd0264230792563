//! TLS of the operator's own connections (the Kafka admin client, PostgreSQL admin sessions):
//! OpenSSL, which kube, rdkafka and mongodb link already, trusting either the system's CAs or
//! only the CAs of a PEM file the platform team names. Hostname verification is OpenSSL's
//! (`SslConnector`), which checks IP addresses against the certificate's IP names.

use std::path::{Path, PathBuf};

use openssl::{
    ssl::{SslConnector, SslConnectorBuilder, SslMethod},
    x509::{X509, store::X509StoreBuilder},
};

/// A CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the CA file {path}: {reason}")]
pub struct CaFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// The PEM text of a CA file, checked to hold at least one certificate.
pub fn read_ca_pem(path: &Path) -> Result<String, CaFileError> {
    let error = |reason: String| CaFileError { path: path.to_owned(), reason };
    let pem = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let certificates = X509::stack_from_pem(pem.as_bytes()).map_err(|e| error(format!("not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(error("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(pem)
}

/// A TLS client configuration that verifies the server's certificate chain: against the CAs in
/// `ca_file` only, when given, else against the system's. The caller's `connect(host, …)`
/// checks the host name.
pub fn client(ca_file: Option<&Path>) -> Result<SslConnectorBuilder, CaFileError> {
    let tls_error = |e: openssl::error::ErrorStack| CaFileError {
        path: ca_file.map(Path::to_owned).unwrap_or_default(),
        reason: format!("OpenSSL cannot set up TLS: {e}"),
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_error)?;
    if let Some(path) = ca_file {
        let pem = read_ca_pem(path)?;
        let mut store = X509StoreBuilder::new().map_err(tls_error)?;
        for certificate in X509::stack_from_pem(pem.as_bytes()).map_err(tls_error)? {
            store.add_cert(certificate).map_err(tls_error)?;
        }
        // Replaces the store with the system's CAs: a server is trusted only through this file.
        builder.set_cert_store(store.build());
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_ca_files_are_named_with_the_reason() {
        let missing = read_ca_pem(Path::new("/nonexistent/ca.crt")).unwrap_err();
        assert!(missing.to_string().starts_with("cannot use the CA file /nonexistent/ca.crt: "), "{missing}");

        let dir = std::env::temp_dir().join(format!("mysimbdp-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let error = client(Some(&empty)).err().expect("a file without certificates is refused");
        assert!(error.to_string().contains("holds no PEM certificate"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
