//! The tenant's credentials Secret: generated once, kept across reconciliations, recreated
//! (with new passwords, applied to Kafka and coredms) when deleted.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{ByteString, api::core::v1::Secret as KubeSecret};

use super::{names::TenantNames, plan};
use crate::{
    context::AppEndpoints,
    coredms::AppAuth,
    secret::{ExposeSecret, SecretString},
};

/// Keys of the credentials Secret: the environment variable names of the app contract, so a
/// pod takes them all with `envFrom`.
pub use mysimbdp_ingest_sdk::contract::env as keys;

/// Annotation listing the systems (`kafka`, `coredms`) where the Secret's passwords are set.
pub const APPLIED_ANNOTATION: &str = "mysimbdp.io/credentials-applied-to";

/// The two passwords of a tenant and where they are known to be set.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Kafka SCRAM password.
    pub kafka: SecretString,
    /// coredms password.
    pub coredms: SecretString,
    /// Systems that already have these passwords.
    pub applied: BTreeSet<String>,
    /// Whether the passwords were generated now (there was no complete Secret).
    pub generated: bool,
}

impl Credentials {
    /// The passwords of an existing Secret, or new ones (applied nowhere yet) when there is no
    /// Secret or it lacks a password.
    pub fn from_secret(secret: Option<&KubeSecret>) -> Self {
        let value = |key: &str| {
            let data = secret?.data.as_ref()?;
            let bytes = &data.get(key)?.0;
            String::from_utf8(bytes.clone()).ok().filter(|v| !v.is_empty())
        };
        match (value(keys::KAFKA_PASSWORD), value(keys::COREDMS_PASSWORD)) {
            (Some(kafka), Some(coredms)) => {
                let applied = secret
                    .and_then(|s| s.metadata.annotations.as_ref())
                    .and_then(|a| a.get(APPLIED_ANNOTATION))
                    .map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default();
                Self {
                    kafka: SecretString::from(kafka),
                    coredms: SecretString::from(coredms),
                    applied,
                    generated: false,
                }
            }
            _ => Self {
                kafka: crate::secret::generate(),
                coredms: crate::secret::generate(),
                applied: BTreeSet::new(),
                generated: true,
            },
        }
    }

    /// Whether `system`'s password must be (re)set.
    pub fn needs_reset(&self, system: &str) -> bool {
        !self.applied.contains(system)
    }
}

/// The Secret an app reads its connection settings from.
pub fn secret(
    tenant: &mysimbdp_api::Tenant,
    names: &TenantNames,
    endpoints: &AppEndpoints,
    auth: &AppAuth,
    credentials: &Credentials,
) -> KubeSecret {
    let entries = [
        (keys::KAFKA_BOOTSTRAP, endpoints.kafka_bootstrap.as_str()),
        (keys::KAFKA_SECURITY_PROTOCOL, &endpoints.kafka_security_protocol),
        (keys::KAFKA_SASL_MECHANISM, &endpoints.kafka_sasl_mechanism),
        (keys::KAFKA_USERNAME, &names.kafka_user),
        (keys::KAFKA_PASSWORD, credentials.kafka.expose_secret()),
        (keys::KAFKA_PREFIX, &names.kafka_prefix),
        (keys::COREDMS_URL, &endpoints.coredms_url),
        (keys::COREDMS_USERNAME, &names.coredms_user),
        (keys::COREDMS_PASSWORD, credentials.coredms.expose_secret()),
        (keys::COREDMS_DATABASE, &names.database),
        (keys::COREDMS_AUTH_MECHANISM, auth.mechanism.as_deref().unwrap_or("")),
        (keys::COREDMS_AUTH_SOURCE, &auth.source),
    ];
    let ca = endpoints.kafka_ssl_ca_pem.as_deref().map(|pem| (keys::KAFKA_SSL_CA_PEM, pem));
    let data: BTreeMap<String, ByteString> =
        entries.into_iter().chain(ca).map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec()))).collect();
    let mut metadata = plan::object_meta(
        tenant,
        names,
        super::names::CREDENTIALS_SECRET,
        Some(&names.namespace),
        "tenant-credentials",
    );
    let applied: Vec<&str> = credentials.applied.iter().map(String::as_str).collect();
    metadata.annotations = Some(BTreeMap::from([(APPLIED_ANNOTATION.to_owned(), applied.join(","))]));
    KubeSecret { metadata, data: Some(data), type_: Some("Opaque".into()), ..KubeSecret::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_passwords_are_kept_and_missing_ones_generated() {
        let fresh = Credentials::from_secret(None);
        assert!(fresh.needs_reset("kafka") && fresh.needs_reset("coredms"));

        let tenant: mysimbdp_api::Tenant = serde_yaml::from_str(
            "apiVersion: mysimbdp.io/v1alpha1\nkind: Tenant\nmetadata: {name: t, uid: u}\nspec:\n  agreement:\n    files: {formats: [Csv], maxFileSize: 1Mi, maxFilesPerDay: 1, maxBytesPerDay: 1Mi}\n    compute: {cpu: '1', memory: 1Gi}\n    kafka: {producerByteRate: 1Mi, consumerByteRate: 1Mi}\n    coredms: {storageQuota: 1Gi}\n",
        )
        .unwrap();
        let names = TenantNames::new("t", None);
        let endpoints = AppEndpoints {
            kafka_bootstrap: "k:9092".into(),
            kafka_security_protocol: "SASL_PLAINTEXT".into(),
            kafka_sasl_mechanism: "SCRAM-SHA-512".into(),
            kafka_ssl_ca_pem: None,
            coredms_url: "mongodb://c:27017/".into(),
        };
        let auth = AppAuth { mechanism: Some("PLAIN".into()), source: "$external".into() };
        assert!(fresh.generated);
        let mut applied = fresh.clone();
        applied.applied = BTreeSet::from(["kafka".to_owned(), "coredms".to_owned()]);
        applied.generated = false;
        let written = secret(&tenant, &names, &endpoints, &auth, &applied);

        let read = Credentials::from_secret(Some(&written));
        assert_eq!(
            (read.kafka.expose_secret(), read.coredms.expose_secret(), &read.applied, read.generated),
            (applied.kafka.expose_secret(), applied.coredms.expose_secret(), &applied.applied, applied.generated),
            "the same passwords and applied systems come back"
        );
        assert!(!read.needs_reset("kafka"));
        let data = written.data.unwrap();
        assert_eq!(data["MYSIMBDP_KAFKA_USERNAME"].0, b"tenant-t");
        assert_eq!(data[keys::COREDMS_DATABASE].0, b"t");
    }
}
