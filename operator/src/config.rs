//! The operator's command line: every setting has a flag, an environment variable and (where
//! one makes sense) a default; credentials come from the environment only.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use clap::{Args, ValueEnum};
use kube::runtime::events::{Recorder, Reporter};

use crate::{
    context::{AppEndpoints, Context},
    coredms::{CoreDmsAdmin, ferretdb::FerretDbAdmin, mongo::MongoAdmin, postgres::PostgresConnector},
    kafka::{KafkaAdmin, SecurityProtocol, Transport, protocol::ProtocolAdmin},
    metrics::Metrics,
    secret::{ExposeSecret, SecretString},
    staging,
    tenant::plan::{Egress, Platform},
};

/// Which coredms the platform runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoreDmsBackend {
    /// MongoDB: tenant users with roles on their own database.
    Mongodb,
    /// FerretDB v1 on PostgreSQL: tenant users are PostgreSQL roles owning their schema.
    FerretdbPostgres,
}

/// Connections to the shared services and what the platform gives each tenant.
#[derive(Debug, Clone, Args)]
pub struct PlatformArgs {
    /// Kafka bootstrap servers the operator uses (host:port,...).
    #[arg(long, env = "MYSIMBDP_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: String,
    /// Kafka bootstrap servers as apps reach them; defaults to --kafka-bootstrap.
    #[arg(long, env = "MYSIMBDP_APP_KAFKA_BOOTSTRAP")]
    pub app_kafka_bootstrap: Option<String>,
    /// Kafka security protocol of the operator's clients (admin, monitor) and, unless
    /// --app-kafka-security-protocol says otherwise, of apps: SASL_SSL or SASL_PLAINTEXT.
    #[arg(long, env = "MYSIMBDP_KAFKA_SECURITY_PROTOCOL", default_value = "SASL_PLAINTEXT")]
    pub kafka_security_protocol: SecurityProtocol,
    /// Kafka security protocol apps use toward --app-kafka-bootstrap; defaults to
    /// --kafka-security-protocol.
    #[arg(long, env = "MYSIMBDP_APP_KAFKA_SECURITY_PROTOCOL")]
    pub app_kafka_security_protocol: Option<SecurityProtocol>,
    /// With SASL_SSL: PEM file of the CA that signed the brokers' certificates, trusted instead
    /// of the system's CAs; apps get its certificates in MYSIMBDP_KAFKA_SSL_CA_PEM.
    #[arg(long, env = "MYSIMBDP_KAFKA_CA_FILE")]
    pub kafka_ca_file: Option<PathBuf>,
    /// The Kafka admin (a super user) the operator authenticates as with SCRAM-SHA-512.
    #[arg(long, env = "MYSIMBDP_KAFKA_ADMIN_USER", default_value = "admin")]
    pub kafka_admin_user: String,
    /// The Kafka admin's password (environment only).
    #[arg(long, env = "MYSIMBDP_KAFKA_ADMIN_PASSWORD", hide_env_values = true, hide = true)]
    pub kafka_admin_password: SecretString,

    /// coredms connection as the admin.
    #[command(flatten)]
    pub coredms: CoreDmsArgs,
    /// coredms URL as apps reach it; defaults to --coredms-url.
    #[arg(long, env = "MYSIMBDP_APP_COREDMS_URL")]
    pub app_coredms_url: Option<String>,
    /// Which coredms backend runs behind the URL.
    #[arg(long, env = "MYSIMBDP_COREDMS_BACKEND", value_enum, default_value = "ferretdb-postgres")]
    pub coredms_backend: CoreDmsBackend,
    /// PostgreSQL URL under FerretDB, with superuser credentials (environment only; only for
    /// the ferretdb-postgres backend).
    /// TLS follows the URL's sslmode (libpq's names; verify-full is the one to use) and
    /// sslrootcert.
    #[arg(long, env = "MYSIMBDP_POSTGRES_URL", hide_env_values = true, hide = true)]
    pub postgres_url: Option<SecretString>,
    /// PEM file of the CA that signed PostgreSQL's certificate; overrides the URL's sslrootcert.
    #[arg(long, env = "MYSIMBDP_POSTGRES_CA_FILE")]
    pub postgres_ca_file: Option<PathBuf>,

    /// Where tenants stage files: file:///absolute/path, or s3://bucket[/prefix] (credentials,
    /// region and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
    /// AWS_ENDPOINT; AWS_ALLOW_HTTP=true for a plain-HTTP endpoint).
    #[arg(long, env = "MYSIMBDP_STAGING_URL", default_value = "file:///var/lib/mysimbdp/staging")]
    pub staging_url: String,
    /// s3:// staging: the S3 endpoint as apps reach it, when it differs from the operator's
    /// (each run gets pre-signed links to its own files, signed for this endpoint).
    #[arg(long, env = "MYSIMBDP_APP_STAGING_ENDPOINT")]
    pub app_staging_endpoint: Option<String>,

    /// Most CPU cores one tenant may have.
    #[arg(long, env = "MYSIMBDP_TENANT_MAX_CPU", default_value_t = 16.0)]
    pub tenant_max_cpu: f64,
    /// Most memory one tenant may have, as a quantity.
    #[arg(long, env = "MYSIMBDP_TENANT_MAX_MEMORY", default_value = "64Gi")]
    pub tenant_max_memory: mysimbdp_api::quantity::PositiveQuantity,
    /// Most Kafka partitions one tenant may have over all its topics.
    #[arg(long, env = "MYSIMBDP_TENANT_MAX_PARTITIONS", default_value_t = 64)]
    pub tenant_max_partitions: u32,
    /// Most coredms storage one tenant may have, as a quantity.
    #[arg(long, env = "MYSIMBDP_TENANT_MAX_STORAGE", default_value = "100Gi")]
    pub tenant_max_storage: mysimbdp_api::quantity::PositiveQuantity,
    /// CPU of an app container that sets none.
    #[arg(long, env = "MYSIMBDP_APP_DEFAULT_CPU", default_value = "500m")]
    pub app_default_cpu: mysimbdp_api::quantity::PositiveQuantity,
    /// Memory of an app container that sets none.
    #[arg(long, env = "MYSIMBDP_APP_DEFAULT_MEMORY", default_value = "256Mi")]
    pub app_default_memory: mysimbdp_api::quantity::PositiveQuantity,
    /// Extra destinations apps may reach, as CIDR:PORT (repeatable). Kafka and coredms are
    /// added automatically when their app addresses are IP addresses.
    #[arg(long = "app-egress", env = "MYSIMBDP_APP_EGRESS", value_delimiter = ',', value_parser = parse_egress)]
    pub app_egress: Vec<Egress>,

    /// Address of the metrics and health endpoints.
    #[arg(long, env = "MYSIMBDP_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,

    /// Whether each tenant namespace holds the staging claim batch runs mount (set from
    /// --kubernetes-staging-claim; the tenant quota then allows that one claim).
    #[arg(skip)]
    pub tenant_staging_claim: bool,
    /// The ClusterRole (made by the chart) a Tenant's spec.owners are bound to in its namespace;
    /// the operator needs the `bind` verb on it.
    #[arg(long, env = "MYSIMBDP_TENANT_OWNER_ROLE", default_value = mysimbdp_api::constants::TENANT_OWNER_ROLE)]
    pub tenant_owner_role: String,
    /// The ClusterRole a Tenant's spec.viewers are bound to in its namespace.
    #[arg(long, env = "MYSIMBDP_TENANT_VIEWER_ROLE", default_value = mysimbdp_api::constants::TENANT_VIEWER_ROLE)]
    pub tenant_viewer_role: String,
    /// Serve the tenant API (tenant.mysimbdp.io: staging and records for tenants' owners,
    /// behind the API server's aggregation layer) on this address; off when unset.
    #[arg(long, env = "MYSIMBDP_TENANT_API_ADDR")]
    pub tenant_api_addr: Option<SocketAddr>,
    /// The tenant API's serving certificate (PEM; the APIService's caBundle vouches for it).
    #[arg(long, env = "MYSIMBDP_TENANT_API_CERT", default_value = "/etc/mysimbdp/tenant-api/tls.crt")]
    pub tenant_api_cert: std::path::PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "MYSIMBDP_TENANT_API_KEY", default_value = "/etc/mysimbdp/tenant-api/tls.key")]
    pub tenant_api_key: std::path::PathBuf,
}

impl PlatformArgs {
    /// The tenant API's settings, when it is to be served.
    pub fn tenant_api(&self) -> Option<crate::tenant_api::TenantApiConfig> {
        self.tenant_api_addr.map(|addr| crate::tenant_api::TenantApiConfig {
            addr,
            cert: self.tenant_api_cert.clone(),
            key: self.tenant_api_key.clone(),
        })
    }
}

fn parse_egress(value: &str) -> Result<Egress, String> {
    let (cidr, port) =
        value.rsplit_once(':').ok_or_else(|| format!("{value:?} is not CIDR:PORT, e.g. 10.0.0.0/16:9092"))?;
    let port = port.parse().map_err(|_| format!("{port:?} in {value:?} is not a TCP port"))?;
    if !cidr.contains('/') {
        return Err(format!("{cidr:?} in {value:?} is not a CIDR, e.g. 10.0.0.0/16"));
    }
    Ok(Egress { cidr: cidr.to_owned(), port })
}

/// `host:port` pairs of a comma-separated server list or a `mongodb://` URL whose host is an
/// IP address, as single-address CIDRs.
fn ip_egress(addresses: &str) -> Vec<Egress> {
    let hosts = addresses.strip_prefix("mongodb://").map_or(addresses, |rest| {
        let rest = rest.split(['/', '?']).next().unwrap_or_default();
        rest.rsplit('@').next().unwrap_or_default()
    });
    hosts
        .split(',')
        .filter_map(|hostport| {
            let (host, port) = hostport.trim().rsplit_once(':')?;
            let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            Some(Egress { cidr: format!("{ip}/{bits}"), port: port.parse().ok()? })
        })
        .collect()
}

/// The coredms connection of the platform admin, and the platform's own database.
#[derive(Debug, Clone, Args)]
pub struct CoreDmsArgs {
    /// coredms (MongoDB API) URL without credentials, as the operator reaches it.
    #[arg(long, env = "MYSIMBDP_COREDMS_URL")]
    pub coredms_url: String,
    /// The coredms admin user.
    #[arg(long, env = "MYSIMBDP_COREDMS_ADMIN_USER")]
    pub coredms_admin_user: String,
    /// The coredms admin's password (environment only).
    #[arg(long, env = "MYSIMBDP_COREDMS_ADMIN_PASSWORD", hide_env_values = true, hide = true)]
    pub coredms_admin_password: SecretString,
    /// How the admin authenticates (PLAIN for FerretDB; empty lets the driver negotiate).
    #[arg(long, env = "MYSIMBDP_COREDMS_AUTH_MECHANISM", default_value = "")]
    pub coredms_auth_mechanism: String,
    /// The admin's authentication database (`$external` for PLAIN).
    #[arg(long, env = "MYSIMBDP_COREDMS_AUTH_SOURCE", default_value = "admin")]
    pub coredms_auth_source: String,
    /// The platform's own database in coredms (ledger, reports, decisions).
    #[arg(long, env = "MYSIMBDP_PLATFORM_DATABASE", default_value = "mysimbdp")]
    pub platform_database: String,
}

impl CoreDmsArgs {
    /// A coredms client authenticated as the admin.
    pub async fn admin_client(&self) -> Result<mongodb::Client, StartupError> {
        let mut options = mongodb::options::ClientOptions::parse(&self.coredms_url)
            .await
            .map_err(|e| StartupError::CoreDms(format!("--coredms-url {:?}: {e}", self.coredms_url)))?;
        let mechanism = match self.coredms_auth_mechanism.as_str() {
            "" => None,
            m => Some(m.parse().map_err(|e| StartupError::CoreDms(format!("--coredms-auth-mechanism {m:?}: {e}")))?),
        };
        options.credential = Some(
            mongodb::options::Credential::builder()
                .username(self.coredms_admin_user.clone())
                .password(self.coredms_admin_password.expose_secret().to_owned())
                .mechanism(mechanism)
                .source(self.coredms_auth_source.clone())
                .build(),
        );
        options.app_name = Some("mysimbdp-operator".into());
        mongodb::Client::with_options(options).map_err(|e| StartupError::CoreDms(e.to_string()))
    }
}

/// Why the operator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// No Kubernetes configuration.
    #[error("cannot configure a Kubernetes client (set KUBECONFIG or run in a cluster): {0}")]
    Kube(#[from] kube::Error),
    /// Kafka unreachable or refusing the admin.
    #[error("cannot administer Kafka: {0}")]
    Kafka(#[from] crate::kafka::KafkaAdminError),
    /// coredms settings unusable.
    #[error("cannot administer coredms: {0}")]
    CoreDms(String),
    /// The Kafka CA file is unusable.
    #[error(
        "--kafka-ca-file (MYSIMBDP_KAFKA_CA_FILE): {0}; give the PEM certificate of the CA that signed the brokers' \
         certificates"
    )]
    KafkaCaFile(#[from] crate::tls::CaFileError),
    /// Staging URL unusable.
    #[error(transparent)]
    Staging(#[from] staging::StagingError),
}

impl PlatformArgs {
    /// The platform's limits and defaults.
    pub fn platform(&self) -> Platform {
        let app_kafka = self.app_kafka_bootstrap.as_deref().unwrap_or(&self.kafka_bootstrap);
        let app_coredms = self.app_coredms_url.as_deref().unwrap_or(&self.coredms.coredms_url);
        let mut egress = ip_egress(app_kafka);
        egress.extend(ip_egress(app_coredms));
        egress.extend(self.app_egress.iter().cloned());
        Platform {
            max_cpu: self.tenant_max_cpu,
            max_memory: self.tenant_max_memory.value(),
            max_partitions: self.tenant_max_partitions,
            max_storage: self.tenant_max_storage.value(),
            default_app_cpu: self.app_default_cpu.clone(),
            default_app_memory: self.app_default_memory.clone(),
            egress,
            platform_topic_partitions: 1,
            staging_claim: self.tenant_staging_claim,
            owner_role: self.tenant_owner_role.clone(),
            viewer_role: self.tenant_viewer_role.clone(),
        }
    }

    /// Where apps reach Kafka and coredms; with SASL_SSL and a CA file, the CA's certificates.
    pub fn endpoints(&self) -> Result<AppEndpoints, StartupError> {
        let protocol = self.app_kafka_security_protocol.unwrap_or(self.kafka_security_protocol);
        let ca_pem = match (&self.kafka_ca_file, protocol) {
            (Some(path), SecurityProtocol::SaslSsl) => Some(crate::tls::read_ca_pem(path)?),
            _ => None,
        };
        Ok(AppEndpoints {
            kafka_bootstrap: self.app_kafka_bootstrap.clone().unwrap_or_else(|| self.kafka_bootstrap.clone()),
            kafka_security_protocol: protocol.as_str().into(),
            kafka_sasl_mechanism: "SCRAM-SHA-512".into(),
            kafka_ssl_ca_pem: ca_pem,
            coredms_url: self.app_coredms_url.clone().unwrap_or_else(|| self.coredms.coredms_url.clone()),
        })
    }

    /// How the admin client reaches the brokers.
    pub fn kafka_transport(&self) -> Transport {
        Transport::new(self.kafka_security_protocol, self.kafka_ca_file.clone())
    }

    /// Kafka client settings of the platform admin, for the monitor's consumers: the same
    /// protocol, and with SASL_SSL the same CA, as the admin client.
    pub fn kafka_admin_client(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", &self.kafka_bootstrap)
            .set("security.protocol", self.kafka_security_protocol.as_str())
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", &self.kafka_admin_user)
            .set("sasl.password", self.kafka_admin_password.expose_secret());
        if self.kafka_security_protocol == SecurityProtocol::SaslSsl {
            config.set("ssl.endpoint.identification.algorithm", "https");
            if let Some(ca_file) = &self.kafka_ca_file {
                config.set("ssl.ca.location", ca_file.to_string_lossy());
            }
        }
        config
    }

    /// Connects to everything and builds the controllers' shared context.
    pub async fn context(&self, metrics: Arc<Metrics>) -> Result<Arc<Context>, StartupError> {
        let client = kube::Client::try_default().await?;
        let kafka: Arc<dyn KafkaAdmin> = Arc::new(
            ProtocolAdmin::connect(
                &self.kafka_bootstrap,
                &self.kafka_admin_user,
                self.kafka_admin_password.clone(),
                &self.kafka_transport(),
            )
            .await?,
        );
        let mongo = self.coredms.admin_client().await?;
        // The first authenticated request must be the admin's: FerretDB loads its catalogue of
        // databases with the privileges of whoever asks first.
        mongo
            .database("admin")
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await
            .map_err(|e| StartupError::CoreDms(format!("{}: {e}", self.coredms.coredms_url)))?;
        let ledger = crate::batch::ledger::Ledger::open(&mongo, &self.coredms.platform_database)
            .await
            .map_err(|e| StartupError::CoreDms(e.to_string()))?;
        let coredms: Arc<dyn CoreDmsAdmin> = match self.coredms_backend {
            CoreDmsBackend::Mongodb => Arc::new(MongoAdmin::new(mongo.clone())),
            CoreDmsBackend::FerretdbPostgres => {
                let url = self.postgres_url.clone().ok_or_else(|| {
                    StartupError::CoreDms("the ferretdb-postgres backend needs MYSIMBDP_POSTGRES_URL".into())
                })?;
                let postgres = PostgresConnector::new(&url, self.postgres_ca_file.as_deref())
                    .map_err(|e| StartupError::CoreDms(e.to_string()))?;
                Arc::new(FerretDbAdmin::new(mongo.clone(), postgres))
            }
        };
        let staging =
            Arc::new(staging::ObjectStaging::open_for_apps(&self.staging_url, self.app_staging_endpoint.as_deref())?);
        let reporter = Reporter {
            controller: "mysimbdp-operator".into(),
            instance: std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok()),
        };
        Ok(Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            kafka,
            coredms,
            staging,
            platform: self.platform(),
            endpoints: self.endpoints()?,
            metrics,
            ledger,
            platform_db: mongo.database(&self.coredms.platform_database),
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        platform: PlatformArgs,
    }

    fn parse(extra: &[&str]) -> Result<PlatformArgs, clap::Error> {
        let mut argv = vec![
            "op",
            "--kafka-bootstrap=127.0.0.1:19096",
            "--kafka-admin-password=kafka-pw-41d2",
            "--coredms-url=mongodb://127.0.0.1:27018/",
            "--coredms-admin-user=admin",
            "--coredms-admin-password=coredms-pw-9e7b",
            "--postgres-url=postgres://admin:pg-pw-c3a1@127.0.0.1:15432/ferretdb?sslmode=verify-full",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|cli| cli.platform)
    }

    #[test]
    fn debug_output_redacts_every_password() {
        let args = parse(&[]).unwrap();
        let printed = format!("{args:?} {:?}", args.coredms);
        for password in ["kafka-pw-41d2", "coredms-pw-9e7b", "pg-pw-c3a1"] {
            assert!(!printed.contains(password), "{password} is printed: {printed}");
        }
        assert!(printed.contains("127.0.0.1:19096"), "{printed}");
        let client = format!("{:?}", args.kafka_admin_client());
        assert!(!client.contains("kafka-pw-41d2"), "{client}");
    }

    #[test]
    fn kafka_security_settings_reach_every_client() {
        let plaintext = parse(&[]).unwrap();
        assert_eq!(plaintext.kafka_transport(), Transport::Plaintext);
        assert_eq!(plaintext.kafka_admin_client().get("ssl.ca.location"), None);

        let tls = parse(&["--kafka-security-protocol=SASL_SSL", "--kafka-ca-file=/etc/mysimbdp/kafka-ca.crt"]).unwrap();
        assert_eq!(tls.kafka_transport(), Transport::Tls { ca_file: Some("/etc/mysimbdp/kafka-ca.crt".into()) });
        let client = tls.kafka_admin_client();
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("ssl.ca.location"), Some("/etc/mysimbdp/kafka-ca.crt"));
        let error = tls.endpoints().unwrap_err().to_string();
        assert!(error.starts_with("--kafka-ca-file (MYSIMBDP_KAFKA_CA_FILE): cannot use the CA file"), "{error}");

        // Apps behind another listener keep their own protocol and get no CA.
        let apps_plain = parse(&[
            "--kafka-security-protocol=SASL_SSL",
            "--kafka-ca-file=/etc/mysimbdp/kafka-ca.crt",
            "--app-kafka-security-protocol=SASL_PLAINTEXT",
        ])
        .unwrap();
        let endpoints = apps_plain.endpoints().unwrap();
        assert_eq!((endpoints.kafka_security_protocol.as_str(), endpoints.kafka_ssl_ca_pem), ("SASL_PLAINTEXT", None));

        let refused = parse(&["--kafka-security-protocol=PLAINTEXT"]).expect_err("PLAINTEXT is refused");
        assert!(refused.to_string().contains("use SASL_SSL (TLS) or SASL_PLAINTEXT"), "{refused}");
    }

    #[test]
    fn egress_comes_from_ip_endpoints_and_flags() {
        assert_eq!(
            ip_egress("127.0.0.1:19092,10.0.0.7:9092,kafka.example:9092"),
            vec![
                Egress { cidr: "127.0.0.1/32".into(), port: 19092 },
                Egress { cidr: "10.0.0.7/32".into(), port: 9092 }
            ]
        );
        assert_eq!(
            ip_egress("mongodb://u:p@127.0.0.1:27018/?authMechanism=PLAIN"),
            vec![Egress { cidr: "127.0.0.1/32".into(), port: 27018 }]
        );
        assert_eq!(parse_egress("10.1.0.0/16:9093").unwrap(), Egress { cidr: "10.1.0.0/16".into(), port: 9093 });
        assert!(parse_egress("10.1.0.0:9093").unwrap_err().contains("not a CIDR"));
        assert!(parse_egress("10.1.0.0/16").unwrap_err().contains("CIDR:PORT"));
    }
}

/// Where tenant apps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Local processes: the app's command, found on PATH.
    Local,
    /// Kubernetes Jobs (batch) and Deployments (stream) in the tenants' namespaces.
    Kubernetes,
}

/// How batch ingestion runs.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// Where batch runs and stream app replicas run.
    #[arg(long, env = "MYSIMBDP_RUNTIME", value_enum, default_value = "local")]
    pub runtime: RuntimeKind,
    /// Folder of the local runtime's records (runs: pid, exit code, output, result; stream
    /// replicas: pids and logs).
    #[arg(long, env = "MYSIMBDP_RUNS_DIR", default_value = "/var/lib/mysimbdp/runs")]
    pub runs_dir: std::path::PathBuf,
    /// How often the batch manager looks at the staging areas and the runs.
    #[arg(long, env = "MYSIMBDP_BATCH_POLL_INTERVAL", default_value = "2s")]
    pub batch_poll_interval: mysimbdp_api::quantity::PositiveDuration,
    /// Most batch runs at once over all tenants.
    #[arg(long, env = "MYSIMBDP_MAX_CONCURRENT_RUNS", default_value_t = 4)]
    pub max_concurrent_runs: usize,
    /// kubernetes runtime: a PersistentVolumeClaim, present in every tenant namespace, that
    /// holds a `file://` staging store; mounted read-only in each run at --kubernetes-staging-path.
    #[arg(long, env = "MYSIMBDP_KUBERNETES_STAGING_CLAIM")]
    pub kubernetes_staging_claim: Option<String>,
    /// kubernetes runtime: where that claim is mounted (the staging URL's path, so that input
    /// URLs resolve unchanged).
    #[arg(long, env = "MYSIMBDP_KUBERNETES_STAGING_PATH", default_value = "/var/lib/mysimbdp/staging")]
    pub kubernetes_staging_path: String,
    /// local runtime: when the operator stops (SIGTERM, Ctrl-C), stop every run and stream
    /// replica it started too. By default they keep running, so that a restarted operator
    /// adopts them where they are.
    #[arg(
        long,
        env = "MYSIMBDP_LOCAL_STOP_ON_EXIT",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub local_stop_on_exit: bool,
    /// kubernetes runtime: a node label KEY=VALUE every tenant pod (batch runs, stream
    /// replicas) must land on, e.g. nodes dedicated to tenants (repeatable).
    #[arg(long = "app-node-selector", env = "MYSIMBDP_APP_NODE_SELECTOR", value_delimiter = ',', value_parser = parse_annotation)]
    pub app_node_selector: Vec<(String, String)>,
    /// kubernetes runtime: a taint every tenant pod tolerates, KEY[=VALUE]:EFFECT as `kubectl
    /// taint` writes it (repeatable).
    #[arg(long = "app-toleration", env = "MYSIMBDP_APP_TOLERATIONS", value_delimiter = ',', value_parser = crate::runtime::pod::parse_toleration)]
    pub app_tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// kubernetes runtime: when tenant pods' images are pulled (Always, IfNotPresent, Never);
    /// the cluster's default when unset.
    #[arg(long, env = "MYSIMBDP_APP_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub app_image_pull_policy: Option<String>,
    /// kubernetes runtime: an annotation KEY=VALUE for every run's pod (repeatable).
    #[arg(long = "run-pod-annotation", env = "MYSIMBDP_RUN_POD_ANNOTATIONS", value_delimiter = ',', value_parser = parse_annotation)]
    pub run_pod_annotations: Vec<(String, String)>,
}

fn parse_annotation(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{value:?} is not KEY=VALUE"))
}

impl BatchArgs {
    /// The runtime the flags choose.
    pub fn runtime(&self, client: kube::Client) -> Arc<dyn crate::runtime::Runtime> {
        match self.runtime {
            RuntimeKind::Local => Arc::new(crate::runtime::local::LocalRuntime::new(&self.runs_dir, client)),
            RuntimeKind::Kubernetes => Arc::new(crate::runtime::kubernetes::KubernetesRuntime::new(
                client,
                self.kubernetes_staging_claim.clone(),
                self.kubernetes_staging_path.clone(),
                self.run_pod_annotations.iter().cloned().collect(),
                self.placement(),
            )),
        }
    }

    /// Where tenant pods land.
    pub fn placement(&self) -> crate::runtime::pod::Placement {
        crate::runtime::pod::Placement {
            node_selector: self.app_node_selector.iter().cloned().collect(),
            tolerations: self.app_tolerations.clone(),
            image_pull_policy: self.app_image_pull_policy.clone(),
        }
    }

    /// The manager's pacing.
    pub fn manager(&self) -> crate::batch::manager::ManagerConfig {
        crate::batch::manager::ManagerConfig {
            poll_interval: self.batch_poll_interval.get(),
            max_concurrent_runs: self.max_concurrent_runs.max(1),
        }
    }
}

/// How stream apps run and are watched.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// kubernetes runtime: the image of the metrics sidecar beside every stream app replica.
    #[arg(long, env = "MYSIMBDP_SIDECAR_IMAGE", default_value = "ghcr.io/mysimbdp/mysimbdp-sidecar:0.1.0")]
    pub sidecar_image: String,
    /// local runtime: the metrics sidecar's program, found on PATH.
    #[arg(long, env = "MYSIMBDP_SIDECAR_COMMAND", default_value = "mysimbdp-sidecar")]
    pub sidecar_command: String,
    /// How often a running stream app is looked at when nothing changed; the local runtime
    /// restarts replicas whose processes ended then.
    #[arg(long, env = "MYSIMBDP_STREAM_RESYNC", default_value = "5s")]
    pub stream_resync: mysimbdp_api::quantity::PositiveDuration,
    /// How often the monitor checks which apps are due for judgement (each app is judged once
    /// per report interval).
    #[arg(long, env = "MYSIMBDP_MONITOR_TICK", default_value = "1s")]
    pub monitor_tick: mysimbdp_api::quantity::PositiveDuration,
}

impl StreamArgs {
    /// The replica runtime of `kind`.
    pub fn runtime(
        &self,
        kind: RuntimeKind,
        runs_dir: &std::path::Path,
        client: kube::Client,
        placement: crate::runtime::pod::Placement,
    ) -> Arc<dyn crate::runtime::replicas::ReplicaRuntime> {
        match kind {
            RuntimeKind::Local => Arc::new(crate::runtime::local_replicas::LocalReplicas::new(
                runs_dir,
                self.sidecar_command.clone(),
                client,
            )),
            RuntimeKind::Kubernetes => Arc::new(crate::runtime::deployment::DeploymentRuntime::new(
                client,
                self.sidecar_image.clone(),
                placement,
            )),
        }
    }
}

/// Leader election among replicas of the operator (off for a single local process).
#[derive(Debug, Clone, Args)]
pub struct LeaderElectionArgs {
    /// Run the controllers only while holding a Lease, so that several replicas can run and
    /// one of them works; the others wait, healthy, to take over.
    #[arg(
        long,
        env = "MYSIMBDP_LEADER_ELECTION",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub leader_election: bool,
    /// Name of the Lease (replicas running the same controllers share one).
    #[arg(long, env = "MYSIMBDP_LEADER_ELECTION_LEASE_NAME", default_value = "mysimbdp-operator")]
    pub leader_election_lease_name: String,
    /// Namespace of the Lease; defaults to the operator's own (in a pod) or the kubeconfig's.
    #[arg(long, env = "MYSIMBDP_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// How long a lease that is not renewed keeps the other replicas waiting.
    #[arg(long, env = "MYSIMBDP_LEADER_ELECTION_LEASE_DURATION", default_value = "15s")]
    pub leader_election_lease_duration: mysimbdp_api::quantity::PositiveDuration,
    /// How long the leader keeps trying to renew before it gives up and exits; shorter than
    /// the lease duration.
    #[arg(long, env = "MYSIMBDP_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s")]
    pub leader_election_renew_deadline: mysimbdp_api::quantity::PositiveDuration,
    /// How often replicas look at the lease and the leader renews it; shorter than the renew
    /// deadline.
    #[arg(long, env = "MYSIMBDP_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s")]
    pub leader_election_retry_period: mysimbdp_api::quantity::PositiveDuration,
}

#[cfg(test)]
mod leader_election_tests {
    use clap::Parser;

    use super::LeaderElectionArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        leader: LeaderElectionArgs,
    }

    #[test]
    fn leader_election_is_off_unless_asked_for() {
        let off = Cli::try_parse_from(["op"]).unwrap().leader;
        assert!(!off.leader_election);
        assert_eq!(off.leader_election_lease_name, "mysimbdp-operator");
        assert_eq!(off.leader_election_namespace, None);
        assert_eq!(off.leader_election_lease_duration.get().as_secs(), 15);
        for args in
            [&["op", "--leader-election"][..], &["op", "--leader-election=true"], &["op", "--leader-election=1"]]
        {
            assert!(Cli::try_parse_from(args).unwrap().leader.leader_election, "{args:?}");
        }
        assert!(!Cli::try_parse_from(["op", "--leader-election=off"]).unwrap().leader.leader_election);
        let set = Cli::try_parse_from([
            "op",
            "--leader-election",
            "--leader-election-lease-name=mysimbdp-monitor",
            "--leader-election-namespace=platform",
            "--leader-election-retry-period=500ms",
        ])
        .unwrap()
        .leader;
        assert_eq!(set.leader_election_lease_name, "mysimbdp-monitor");
        assert_eq!(set.leader_election_namespace.as_deref(), Some("platform"));
        assert_eq!(set.leader_election_retry_period.get().as_millis(), 500);
        assert!(Cli::try_parse_from(["op", "--leader-election-lease-duration=soon"]).is_err());
    }
}
