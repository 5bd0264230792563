//! [`ProtocolAdmin`], the real [`KafkaAdmin`]: it speaks the Kafka protocol itself (framing from
//! the `kafka-protocol` crate) over one SASL/SCRAM-SHA-512 connection, because rdkafka's admin
//! API cannot manage ACLs, SCRAM credentials or client quotas.
//!
//! Every request goes to whichever bootstrap broker accepted the connection: in KRaft mode a
//! broker forwards mutations to the active controller, and answers reads from its metadata
//! cache. That cache follows the controller's log, so a read right after a write may briefly
//! show the old state; the reconcile loop converges on its next pass.

use std::{
    collections::{BTreeMap, HashMap},
    fmt, io,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::{
    ResponseError,
    messages::{
        AlterClientQuotasRequest, AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
        CreateAclsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteAclsRequest, DeleteTopicsRequest,
        DescribeAclsRequest, DescribeClientQuotasRequest, DescribeConfigsRequest, DescribeUserScramCredentialsRequest,
        IncrementalAlterConfigsRequest, MetadataRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
        SaslAuthenticateResponse, SaslHandshakeRequest, TopicName,
        alter_client_quotas_request::{EntityData as AlterEntity, EntryData as AlterEntry, OpData},
        alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion},
        create_acls_request::AclCreation,
        create_partitions_request::CreatePartitionsTopic,
        create_topics_request::{CreatableTopic, CreatableTopicConfig},
        delete_acls_request::DeleteAclsFilter,
        delete_topics_request::DeleteTopicState,
        describe_client_quotas_request::ComponentData,
        describe_configs_request::DescribeConfigsResource,
        describe_user_scram_credentials_request::UserName,
        incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    },
    protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Mutex,
};
use tracing::debug;

use super::{
    ByteRates, KafkaAdmin, KafkaAdminError, Operation, PrefixedAllow, ResourceKind, Result, TopicSpec, TopicState,
    scram::{self, ClientFirst, SaltedCredential, ScramError},
};
use crate::secret::Secret;

/// The client id brokers see in their request logs and quotas.
const CLIENT_ID: &str = "mysimbdp-operator";

/// How long one request (or connecting) may take before the call fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the broker may wait for topic operations to complete; shorter than
/// [`REQUEST_TIMEOUT`] so that a slow controller yields the broker's own timeout error.
const BROKER_TIMEOUT_MS: i32 = 25_000;

/// Largest response accepted; a bigger length prefix means the stream is out of step.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// `mechanism` of SCRAM-SHA-512 in the SCRAM credential APIs.
const SCRAM_SHA_512: i8 = 2;

/// The topic config the platform reads back.
const RETENTION_MS: &str = "retention.ms";

/// Client quota entity type and keys.
const USER_ENTITY: &str = "user";
const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";

/// Codes of Kafka's ACL enums (`ResourceType`, `PatternType`, `AclOperation`,
/// `AclPermissionType`), which the protocol carries as `int8`.
mod acl {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const PREFIXED: i8 = 4;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const DESCRIBE: i8 = 8;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALLOW: i8 = 3;
    /// The only host the platform grants from.
    pub const ANY_HOST: &str = "*";
}

/// Codes of Kafka's config enums (`ConfigResource.Type`, `ConfigSource`, `AlterConfigOp.OpType`).
mod config {
    pub const TOPIC_RESOURCE: i8 = 2;
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const SET: i8 = 0;
}

/// The APIs this adapter uses, with the versions the crate can encode; negotiation intersects
/// these with the broker's ranges.
const APIS: [(&str, i16, VersionRange); 16] = [
    ("ApiVersions", ApiVersionsRequest::KEY, ApiVersionsRequest::VERSIONS),
    ("SaslHandshake", SaslHandshakeRequest::KEY, SaslHandshakeRequest::VERSIONS),
    ("SaslAuthenticate", SaslAuthenticateRequest::KEY, SaslAuthenticateRequest::VERSIONS),
    (
        "DescribeUserScramCredentials",
        DescribeUserScramCredentialsRequest::KEY,
        DescribeUserScramCredentialsRequest::VERSIONS,
    ),
    ("AlterUserScramCredentials", AlterUserScramCredentialsRequest::KEY, AlterUserScramCredentialsRequest::VERSIONS),
    ("DescribeAcls", DescribeAclsRequest::KEY, DescribeAclsRequest::VERSIONS),
    ("CreateAcls", CreateAclsRequest::KEY, CreateAclsRequest::VERSIONS),
    ("DeleteAcls", DeleteAclsRequest::KEY, DeleteAclsRequest::VERSIONS),
    ("DescribeClientQuotas", DescribeClientQuotasRequest::KEY, DescribeClientQuotasRequest::VERSIONS),
    ("AlterClientQuotas", AlterClientQuotasRequest::KEY, AlterClientQuotasRequest::VERSIONS),
    ("Metadata", MetadataRequest::KEY, MetadataRequest::VERSIONS),
    ("DescribeConfigs", DescribeConfigsRequest::KEY, DescribeConfigsRequest::VERSIONS),
    ("CreateTopics", CreateTopicsRequest::KEY, CreateTopicsRequest::VERSIONS),
    ("CreatePartitions", CreatePartitionsRequest::KEY, CreatePartitionsRequest::VERSIONS),
    ("IncrementalAlterConfigs", IncrementalAlterConfigsRequest::KEY, IncrementalAlterConfigsRequest::VERSIONS),
    ("DeleteTopics", DeleteTopicsRequest::KEY, DeleteTopicsRequest::VERSIONS),
];

/// Kafka administration over the Kafka protocol, authenticated as the platform's admin with
/// SCRAM-SHA-512. Holds one connection, opened on [`ProtocolAdmin::connect`] and reopened once
/// when it breaks; calls are serialized on it.
pub struct ProtocolAdmin {
    servers: Vec<String>,
    bootstrap: String,
    user: String,
    password: Secret,
    connection: Mutex<Option<Connection>>,
}

impl fmt::Debug for ProtocolAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtocolAdmin").field("bootstrap", &self.bootstrap).field("user", &self.user).finish()
    }
}

impl ProtocolAdmin {
    /// Connects to the first reachable server of `bootstrap` (comma-separated `host:port`),
    /// negotiates API versions and authenticates as `user` with SCRAM-SHA-512.
    pub async fn connect(bootstrap: &str, user: &str, password: Secret) -> Result<Self> {
        let servers: Vec<String> =
            bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if servers.is_empty() {
            return Err(KafkaAdminError::Connect {
                bootstrap: bootstrap.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no bootstrap server given; expected host:port[,…]",
                ),
            });
        }
        let admin = Self {
            servers,
            bootstrap: bootstrap.to_owned(),
            user: user.to_owned(),
            password,
            connection: Mutex::new(None),
        };
        let connection = admin.open().await?;
        *admin.connection.lock().await = Some(connection);
        Ok(admin)
    }

    /// The version used for each API the adapter needs (`None`: the broker offers none this
    /// client can speak), for diagnostics.
    pub async fn negotiated_versions(&self) -> Result<Vec<(&'static str, Option<i16>)>> {
        let mut guard = self.connection.lock().await;
        let connection = self.ready(&mut guard).await?;
        Ok(APIS.iter().map(|&(name, key, ours)| (name, connection.common(key, ours))).collect())
    }

    /// Opens and authenticates a connection to the first bootstrap server that accepts one.
    async fn open(&self) -> Result<Connection> {
        let mut last_error = None;
        for server in &self.servers {
            let stream = match tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(server)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!(server, error = %e, "cannot connect to Kafka bootstrap server");
                    last_error = Some(KafkaAdminError::Connect { bootstrap: self.bootstrap.clone(), source: e });
                    continue;
                }
                Err(_) => {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{server} did not accept within {REQUEST_TIMEOUT:?}"),
                    );
                    last_error = Some(KafkaAdminError::Connect { bootstrap: self.bootstrap.clone(), source: e });
                    continue;
                }
            };
            // Small requests and responses: do not wait to coalesce them.
            if let Err(e) = stream.set_nodelay(true) {
                debug!(server, error = %e, "cannot disable Nagle's algorithm");
            }
            match Connection::establish(stream, server, &self.user, &self.password).await {
                Ok(connection) => return Ok(connection),
                // The same credentials would fail on every broker.
                Err(e @ KafkaAdminError::Authentication { .. }) => return Err(e),
                Err(e) => {
                    debug!(server, error = %e, "Kafka connection setup failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| KafkaAdminError::Connect {
            bootstrap: self.bootstrap.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "no bootstrap server"),
        }))
    }

    /// The open connection, reopened when there is none or its SASL session is about to expire.
    async fn ready<'a>(&self, slot: &'a mut Option<Connection>) -> Result<&'a mut Connection> {
        if slot.as_ref().is_some_and(Connection::expired) {
            debug!(bootstrap = %self.bootstrap, "Kafka SASL session is expiring; reconnecting");
            *slot = None;
        }
        match slot {
            Some(connection) => Ok(connection),
            None => Ok(slot.insert(self.open().await?)),
        }
    }

    /// Sends the request `build` makes for the negotiated version and returns the response.
    /// When the connection turns out to be broken, reconnects and sends it once more: the
    /// requests are idempotent (creating what exists and deleting what is gone succeed), except
    /// that a repeated CreatePartitions may report INVALID_PARTITIONS, which the next reconcile
    /// pass sees through.
    async fn call<R, F>(&self, operation: &'static str, build: F) -> Result<R::Response>
    where
        R: Request + Send + Sync,
        R::Response: Send,
        F: Fn(i16) -> R + Send + Sync,
    {
        let mut guard = self.connection.lock().await;
        let mut retried = false;
        loop {
            let connection = self.ready(&mut guard).await?;
            let version = connection.version::<R>(operation)?;
            let server = connection.server.clone();
            let outcome = connection.exchange(&build(version), version).await;
            match outcome {
                Ok(response) => return Ok(response),
                Err(failure) => {
                    // Whatever went wrong, the stream may be out of step: never reuse it.
                    *guard = None;
                    match failure {
                        Failure::Broken(e) if !retried => {
                            debug!(operation, server, error = %e, "Kafka connection broke; reconnecting once");
                            retried = true;
                        }
                        failure => return Err(failure.into_error(operation, &server)),
                    }
                }
            }
        }
    }
}

/// One authenticated connection to a broker.
struct Connection {
    stream: TcpStream,
    server: String,
    next_correlation_id: i32,
    /// The broker's supported versions per API key.
    broker_versions: HashMap<i16, VersionRange>,
    /// When the broker ends the SASL session (a little early, to reconnect before it does).
    expires_at: Option<Instant>,
}

/// Why an exchange on a connection failed.
#[derive(Debug)]
enum Failure {
    /// Reading or writing failed: the connection is gone, a new one may succeed.
    Broken(io::Error),
    /// No response within [`REQUEST_TIMEOUT`].
    TimedOut,
    /// The broker sent something this client cannot make sense of.
    Invalid(String),
}

impl Failure {
    fn into_error(self, operation: &'static str, server: &str) -> KafkaAdminError {
        let message = match self {
            Failure::Broken(e) => format!("the connection to {server} broke: {e}"),
            Failure::TimedOut => {
                format!("{server} did not answer within {REQUEST_TIMEOUT:?}; the connection is dropped, retry later")
            }
            Failure::Invalid(problem) => format!("unexpected response from {server}: {problem}"),
        };
        KafkaAdminError::Protocol { operation, message }
    }
}

impl Connection {
    /// Negotiates API versions and authenticates on a fresh TCP connection.
    async fn establish(stream: TcpStream, server: &str, user: &str, password: &Secret) -> Result<Self> {
        let mut connection = Self {
            stream,
            server: server.to_owned(),
            next_correlation_id: 0,
            broker_versions: HashMap::new(),
            expires_at: None,
        };
        connection.negotiate_versions().await?;
        connection.authenticate(user, password).await?;
        debug!(server, user, "connected to Kafka");
        Ok(connection)
    }

    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Instant::now() >= at)
    }

    /// The highest version both the broker and this client speak, if any.
    fn common(&self, key: i16, ours: VersionRange) -> Option<i16> {
        let common = self.broker_versions.get(&key)?.intersect(&ours);
        (!common.is_empty()).then_some(common.max)
    }

    /// The version to use for `R`, or why there is none.
    fn version<R: Request>(&self, operation: &'static str) -> Result<i16> {
        self.common(R::KEY, R::VERSIONS).ok_or_else(|| {
            let broker = self.broker_versions.get(&R::KEY).map_or("none".to_owned(), ToString::to_string);
            KafkaAdminError::Protocol {
                operation,
                message: format!(
                    "{} offers versions {broker} of this API and this client speaks {}; upgrade the broker",
                    self.server,
                    R::VERSIONS
                ),
            }
        })
    }

    /// ApiVersions: learns which versions of each API the broker speaks.
    async fn negotiate_versions(&mut self) -> Result<()> {
        const OPERATION: &str = "ApiVersions";
        let mut version = ApiVersionsRequest::VERSIONS.max;
        let mut body = self.round_trip(&api_versions_request(), version, OPERATION).await?;
        // A broker that does not speak our version answers in v0 with UNSUPPORTED_VERSION and
        // its own range for ApiVersions (KIP-511); ask again in the highest common version.
        if body.get(..2) == Some(&ResponseError::UnsupportedVersion.code().to_be_bytes()[..]) {
            let v0 = decode::<ApiVersionsResponse>(&mut body, 0).map_err(|f| f.into_error(OPERATION, &self.server))?;
            let theirs = v0.api_keys.iter().find(|k| k.api_key == ApiVersionsRequest::KEY);
            version = theirs.map_or(0, |k| k.max_version.min(ApiVersionsRequest::VERSIONS.max));
            body = self.round_trip(&api_versions_request(), version, OPERATION).await?;
        }
        let response =
            decode::<ApiVersionsResponse>(&mut body, version).map_err(|f| f.into_error(OPERATION, &self.server))?;
        if let Some(err) = ResponseError::try_from_code(response.error_code) {
            return Err(KafkaAdminError::Protocol {
                operation: OPERATION,
                message: format!("{} answered {err}", self.server),
            });
        }
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, VersionRange { min: k.min_version, max: k.max_version }))
            .collect();
        let chosen: Vec<String> = APIS
            .iter()
            .map(|&(name, key, ours)| {
                format!("{name}={}", self.common(key, ours).map_or("-".into(), |v| v.to_string()))
            })
            .collect();
        debug!(server = %self.server, versions = %chosen.join(" "), "negotiated Kafka API versions");
        Ok(())
    }

    /// SaslHandshake v1 for SCRAM-SHA-512, then the SCRAM exchange in SaslAuthenticate rounds.
    async fn authenticate(&mut self, user: &str, password: &Secret) -> Result<()> {
        let version = self.version::<SaslHandshakeRequest>("SaslHandshake")?;
        if version < 1 {
            // v0 sends SASL tokens as raw frames instead of SaslAuthenticate; brokers since
            // Kafka 1.0 speak v1.
            return Err(KafkaAdminError::Protocol {
                operation: "SaslHandshake",
                message: format!("{} only speaks SaslHandshake v0, which this client does not support", self.server),
            });
        }
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(scram::MECHANISM));
        let response = self.request(&handshake, version, "SaslHandshake").await?;
        if let Some(err) = ResponseError::try_from_code(response.error_code) {
            let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(KafkaAdminError::Authentication {
                user: user.to_owned(),
                message: format!(
                    "{err}: the listener at {} does not offer {} (it offers {offered:?}); enable it on the listener",
                    self.server,
                    scram::MECHANISM
                ),
            });
        }

        let version = self.version::<SaslAuthenticateRequest>("SaslAuthenticate")?;
        let first = ClientFirst::new(user);
        let server_first = self.sasl_round(first.message().into_bytes(), version, user).await?;
        let last = first.respond(&server_first.auth_bytes, password).map_err(|e| scram_error(user, e))?;
        let server_final = self.sasl_round(last.message().as_bytes().to_vec(), version, user).await?;
        last.verify(&server_final.auth_bytes).map_err(|e| scram_error(user, e))?;

        // With connections.max.reauth.ms set the broker closes the connection when the session
        // ends; reconnect at 90% of it rather than lose a request to that.
        let lifetime = u64::try_from(server_final.session_lifetime_ms).unwrap_or(0);
        if lifetime > 0 {
            self.expires_at = Some(Instant::now() + Duration::from_millis(lifetime / 10 * 9));
        }
        Ok(())
    }

    /// One SaslAuthenticate round; the broker's refusal becomes an authentication error.
    async fn sasl_round(&mut self, bytes: Vec<u8>, version: i16, user: &str) -> Result<SaslAuthenticateResponse> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let response = self.request(&request, version, "SaslAuthenticate").await?;
        match ResponseError::try_from_code(response.error_code) {
            None => Ok(response),
            Some(err) => Err(KafkaAdminError::Authentication {
                user: user.to_owned(),
                message: response.error_message.as_ref().map_or_else(|| err.to_string(), ToString::to_string),
            }),
        }
    }

    /// An exchange during connection setup, with failures as errors.
    async fn request<R: Request>(&mut self, request: &R, version: i16, operation: &'static str) -> Result<R::Response> {
        let server = self.server.clone();
        self.exchange(request, version).await.map_err(|f| f.into_error(operation, &server))
    }

    /// Sends `request` in `version` and decodes the response.
    async fn exchange<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, Failure> {
        let mut body = self.send(request, version).await?;
        decode::<R::Response>(&mut body, version)
    }

    /// Like [`Connection::exchange`] but returns the undecoded response body.
    async fn round_trip<R: Request>(&mut self, request: &R, version: i16, operation: &'static str) -> Result<Bytes> {
        let server = self.server.clone();
        self.send(request, version).await.map_err(|f| f.into_error(operation, &server))
    }

    /// Writes one request frame and reads its response frame; returns the body after the
    /// response header, whose correlation id must be the request's.
    async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<Bytes, Failure> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_frame(request, version, correlation_id)?;
        debug!(
            api = ?ApiKey::try_from(R::KEY).ok(),
            version,
            correlation_id,
            bytes = frame.len(),
            server = %self.server,
            "Kafka request"
        );
        let mut body = tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.stream.write_all(&frame).await.map_err(Failure::Broken)?;
            read_frame(&mut self.stream).await
        })
        .await
        .map_err(|_| Failure::TimedOut)??;
        let header = decode::<ResponseHeader>(&mut body, R::Response::header_version(version))?;
        if header.correlation_id != correlation_id {
            return Err(Failure::Invalid(format!(
                "response correlation id {} does not match request {correlation_id}",
                header.correlation_id
            )));
        }
        Ok(body)
    }
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
}

/// A request frame: 4-byte length, then the request header in the version the API requires
/// for `version`, then the body.
fn encode_frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> Result<BytesMut, Failure> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header
        .encode(&mut frame, R::header_version(version))
        .and_then(|()| request.encode(&mut frame, version))
        .map_err(|e| Failure::Invalid(format!("cannot encode the request in version {version}: {e}")))?;
    let length = i32::try_from(frame.len() - 4)
        .map_err(|_| Failure::Invalid(format!("request of {} bytes is too large", frame.len())))?;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

async fn read_frame(stream: &mut TcpStream) -> Result<Bytes, Failure> {
    let length = stream.read_i32().await.map_err(Failure::Broken)?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&l| l <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| Failure::Invalid(format!("response length {length} is out of range")))?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.map_err(Failure::Broken)?;
    Ok(Bytes::from(body))
}

fn decode<M: Decodable>(body: &mut Bytes, version: i16) -> Result<M, Failure> {
    M::decode(body, version).map_err(|e| {
        Failure::Invalid(format!("cannot decode {} in version {version}: {e}", std::any::type_name::<M>()))
    })
}

fn scram_error(user: &str, error: ScramError) -> KafkaAdminError {
    match error {
        ScramError::Server(_) => KafkaAdminError::Authentication { user: user.to_owned(), message: error.to_string() },
        other => KafkaAdminError::Protocol { operation: "SaslAuthenticate", message: other.to_string() },
    }
}

/// `Ok` for error code 0, else the request error naming the operation and resource.
fn check(operation: &'static str, resource: impl fmt::Display, code: i16, message: Option<&StrBytes>) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(err) => Err(KafkaAdminError::Request {
            operation,
            resource: resource.to_string(),
            code: err.to_string(),
            message: message.map(ToString::to_string).unwrap_or_default(),
        }),
    }
}

fn is(code: i16, error: ResponseError) -> bool {
    code == error.code()
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A response that does not line up with its request (e.g. fewer results than items).
fn mismatch(operation: &'static str, problem: impl Into<String>) -> KafkaAdminError {
    KafkaAdminError::Protocol { operation, message: problem.into() }
}

fn resource_code(kind: ResourceKind) -> i8 {
    match kind {
        ResourceKind::Topic => acl::TOPIC,
        ResourceKind::Group => acl::GROUP,
        ResourceKind::TransactionalId => acl::TRANSACTIONAL_ID,
    }
}

fn resource_kind(code: i8) -> Option<ResourceKind> {
    match code {
        acl::TOPIC => Some(ResourceKind::Topic),
        acl::GROUP => Some(ResourceKind::Group),
        acl::TRANSACTIONAL_ID => Some(ResourceKind::TransactionalId),
        _ => None,
    }
}

fn operation_code(operation: Operation) -> i8 {
    match operation {
        Operation::Read => acl::READ,
        Operation::Write => acl::WRITE,
        Operation::Describe => acl::DESCRIBE,
        Operation::DescribeConfigs => acl::DESCRIBE_CONFIGS,
    }
}

fn operation_of(code: i8) -> Option<Operation> {
    match code {
        acl::READ => Some(Operation::Read),
        acl::WRITE => Some(Operation::Write),
        acl::DESCRIBE => Some(Operation::Describe),
        acl::DESCRIBE_CONFIGS => Some(Operation::DescribeConfigs),
        _ => None,
    }
}

/// A described binding as a prefixed allow, or `None` when it has another shape.
fn prefixed_allow(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Option<PrefixedAllow> {
    if pattern_type != acl::PREFIXED || host != acl::ANY_HOST || permission != acl::ALLOW {
        return None;
    }
    Some(PrefixedAllow {
        resource: resource_kind(resource_type)?,
        prefix: name.to_owned(),
        principal: principal.to_owned(),
        operation: operation_of(operation)?,
    })
}

fn quota_op(key: &'static str, rate: Option<f64>) -> OpData {
    OpData::default()
        .with_key(StrBytes::from_static_str(key))
        .with_value(rate.unwrap_or(0.0))
        .with_remove(rate.is_none())
}

#[async_trait]
impl KafkaAdmin for ProtocolAdmin {
    /// DescribeUserScramCredentials for the user; RESOURCE_NOT_FOUND means no credential.
    async fn scram_user_exists(&self, user: &str) -> Result<bool> {
        const OP: &str = "DescribeUserScramCredentials";
        debug!(user, "describing SCRAM credentials");
        let response = self
            .call(OP, |_| {
                DescribeUserScramCredentialsRequest::default()
                    .with_users(Some(vec![UserName::default().with_name(text(user))]))
            })
            .await?;
        check(OP, user, response.error_code, response.error_message.as_ref())?;
        let result = response
            .results
            .iter()
            .find(|r| r.user.as_str() == user)
            .ok_or_else(|| mismatch(OP, format!("the response does not mention user {user:?}")))?;
        if is(result.error_code, ResponseError::ResourceNotFound) {
            return Ok(false);
        }
        check(OP, user, result.error_code, result.error_message.as_ref())?;
        Ok(result.credential_infos.iter().any(|c| c.mechanism == SCRAM_SHA_512))
    }

    /// AlterUserScramCredentials with an upsertion: a fresh salt, 4096 iterations and the
    /// salted password, so the password itself is never sent.
    async fn upsert_scram_user(&self, user: &str, password: &Secret) -> Result<()> {
        const OP: &str = "AlterUserScramCredentials";
        let credential = SaltedCredential::new(password);
        debug!(user, iterations = credential.iterations, "upserting SCRAM-SHA-512 credential");
        let response = self
            .call(OP, |_| {
                let upsertion = ScramCredentialUpsertion::default()
                    .with_name(text(user))
                    .with_mechanism(SCRAM_SHA_512)
                    .with_iterations(credential.iterations)
                    .with_salt(Bytes::copy_from_slice(&credential.salt))
                    .with_salted_password(Bytes::copy_from_slice(&credential.salted_password));
                AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion])
            })
            .await?;
        for result in &response.results {
            check(OP, user, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// AlterUserScramCredentials with a deletion; RESOURCE_NOT_FOUND (no credential) is success.
    async fn delete_scram_user(&self, user: &str) -> Result<()> {
        const OP: &str = "AlterUserScramCredentials";
        debug!(user, "deleting SCRAM-SHA-512 credential");
        let response = self
            .call(OP, |_| {
                let deletion = ScramCredentialDeletion::default().with_name(text(user)).with_mechanism(SCRAM_SHA_512);
                AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion])
            })
            .await?;
        for result in response.results.iter().filter(|r| !is(r.error_code, ResponseError::ResourceNotFound)) {
            check(OP, user, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// DescribeAcls filtered on the principal only (any resource, pattern, host, operation).
    async fn acls_of(&self, principal: &str) -> Result<Vec<PrefixedAllow>> {
        const OP: &str = "DescribeAcls";
        debug!(principal, "describing ACLs");
        let response = self
            .call(OP, |_| {
                DescribeAclsRequest::default()
                    .with_resource_type_filter(acl::ANY)
                    .with_resource_name_filter(None)
                    .with_pattern_type_filter(acl::ANY)
                    .with_principal_filter(Some(text(principal)))
                    .with_host_filter(None)
                    .with_operation(acl::ANY)
                    .with_permission_type(acl::ANY)
            })
            .await?;
        check(OP, principal, response.error_code, response.error_message.as_ref())?;
        let mut allows = Vec::new();
        for resource in &response.resources {
            for binding in &resource.acls {
                let allow = prefixed_allow(
                    resource.resource_type,
                    &resource.resource_name,
                    resource.pattern_type,
                    &binding.principal,
                    &binding.host,
                    binding.operation,
                    binding.permission_type,
                );
                let allow = allow.ok_or_else(|| {
                    mismatch(
                        OP,
                        format!(
                            "{principal} has a binding the platform never creates (resource type {}, name {:?}, \
                             pattern type {}, host {:?}, operation {}, permission {}); remove it with kafka-acls.sh",
                            resource.resource_type,
                            resource.resource_name.as_str(),
                            resource.pattern_type,
                            binding.host.as_str(),
                            binding.operation,
                            binding.permission_type
                        ),
                    )
                })?;
                allows.push(allow);
            }
        }
        allows.sort();
        Ok(allows)
    }

    /// CreateAcls: one PREFIXED ALLOW creation from host `*` per binding.
    async fn create_acls(&self, acls: &[PrefixedAllow]) -> Result<()> {
        const OP: &str = "CreateAcls";
        if acls.is_empty() {
            return Ok(());
        }
        debug!(count = acls.len(), first = %acls[0], "creating ACLs");
        let response = self
            .call(OP, |_| {
                let creations = acls
                    .iter()
                    .map(|a| {
                        AclCreation::default()
                            .with_resource_type(resource_code(a.resource))
                            .with_resource_name(text(&a.prefix))
                            .with_resource_pattern_type(acl::PREFIXED)
                            .with_principal(text(&a.principal))
                            .with_host(StrBytes::from_static_str(acl::ANY_HOST))
                            .with_operation(operation_code(a.operation))
                            .with_permission_type(acl::ALLOW)
                    })
                    .collect();
                CreateAclsRequest::default().with_creations(creations)
            })
            .await?;
        if response.results.len() != acls.len() {
            return Err(mismatch(OP, format!("{} results for {} creations", response.results.len(), acls.len())));
        }
        for (acl, result) in acls.iter().zip(&response.results) {
            check(OP, acl, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// DeleteAcls with one exact filter per binding; a binding already gone matches nothing.
    async fn delete_acls(&self, acls: &[PrefixedAllow]) -> Result<()> {
        const OP: &str = "DeleteAcls";
        if acls.is_empty() {
            return Ok(());
        }
        debug!(count = acls.len(), first = %acls[0], "deleting ACLs");
        let response = self
            .call(OP, |_| {
                let filters = acls
                    .iter()
                    .map(|a| {
                        DeleteAclsFilter::default()
                            .with_resource_type_filter(resource_code(a.resource))
                            .with_resource_name_filter(Some(text(&a.prefix)))
                            .with_pattern_type_filter(acl::PREFIXED)
                            .with_principal_filter(Some(text(&a.principal)))
                            .with_host_filter(Some(StrBytes::from_static_str(acl::ANY_HOST)))
                            .with_operation(operation_code(a.operation))
                            .with_permission_type(acl::ALLOW)
                    })
                    .collect();
                DeleteAclsRequest::default().with_filters(filters)
            })
            .await?;
        if response.filter_results.len() != acls.len() {
            return Err(mismatch(OP, format!("{} results for {} filters", response.filter_results.len(), acls.len())));
        }
        for (acl, result) in acls.iter().zip(&response.filter_results) {
            check(OP, acl, result.error_code, result.error_message.as_ref())?;
            for matched in &result.matching_acls {
                check(OP, acl, matched.error_code, matched.error_message.as_ref())?;
            }
        }
        Ok(())
    }

    /// DescribeClientQuotas, strict, for exactly the entity `user=<user>`.
    async fn quotas_of(&self, user: &str) -> Result<ByteRates> {
        const OP: &str = "DescribeClientQuotas";
        debug!(user, "describing client quotas");
        let response = self
            .call(OP, |_| {
                let component = ComponentData::default()
                    .with_entity_type(StrBytes::from_static_str(USER_ENTITY))
                    .with_match_type(0) // MATCH_EXACT
                    .with_match(Some(text(user)));
                DescribeClientQuotasRequest::default().with_components(vec![component]).with_strict(true)
            })
            .await?;
        check(OP, user, response.error_code, response.error_message.as_ref())?;
        let mut rates = ByteRates::default();
        for value in response.entries.iter().flatten().flat_map(|e| &e.values) {
            match value.key.as_str() {
                PRODUCER_BYTE_RATE => rates.producer = Some(value.value),
                CONSUMER_BYTE_RATE => rates.consumer = Some(value.value),
                _ => {}
            }
        }
        Ok(rates)
    }

    /// AlterClientQuotas on `user=<user>`: sets each rate, or removes it when `None`.
    async fn set_quotas(&self, user: &str, rates: ByteRates) -> Result<()> {
        const OP: &str = "AlterClientQuotas";
        debug!(user, producer = ?rates.producer, consumer = ?rates.consumer, "setting client quotas");
        let response = self
            .call(OP, |_| {
                let entity = AlterEntity::default()
                    .with_entity_type(StrBytes::from_static_str(USER_ENTITY))
                    .with_entity_name(Some(text(user)));
                let entry = AlterEntry::default().with_entity(vec![entity]).with_ops(vec![
                    quota_op(PRODUCER_BYTE_RATE, rates.producer),
                    quota_op(CONSUMER_BYTE_RATE, rates.consumer),
                ]);
                AlterClientQuotasRequest::default().with_entries(vec![entry])
            })
            .await?;
        for entry in &response.entries {
            check(OP, format!("user={user}"), entry.error_code, entry.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Metadata for all topics (filtered here by prefix, internal topics left out), then
    /// DescribeConfigs for their `retention.ms`, reported only when set on the topic itself
    /// (config source DYNAMIC_TOPIC_CONFIG) rather than inherited.
    async fn topics_with_prefix(&self, prefix: &str) -> Result<Vec<TopicState>> {
        debug!(prefix, "listing topics");
        // v0 spells "all topics" as an empty list, later versions as null.
        let metadata =
            self.call("Metadata", |v| MetadataRequest::default().with_topics((v == 0).then(Vec::new))).await?;
        check("Metadata", "all topics", metadata.error_code, None)?;
        let mut topics = BTreeMap::new();
        for topic in metadata.topics.iter().filter(|t| !t.is_internal) {
            let Some(name) = topic.name.as_deref().filter(|n| n.starts_with(prefix)) else { continue };
            check("Metadata", name.as_str(), topic.error_code, None)?;
            let partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            topics.insert(name.to_string(), TopicState { name: name.to_string(), partitions, retention_ms: None });
        }
        if topics.is_empty() {
            return Ok(Vec::new());
        }

        const OP: &str = "DescribeConfigs";
        let configs = self
            .call(OP, |_| {
                let resources = topics
                    .keys()
                    .map(|name| {
                        DescribeConfigsResource::default()
                            .with_resource_type(config::TOPIC_RESOURCE)
                            .with_resource_name(text(name))
                            .with_configuration_keys(Some(vec![StrBytes::from_static_str(RETENTION_MS)]))
                    })
                    .collect();
                DescribeConfigsRequest::default().with_resources(resources)
            })
            .await?;
        for result in &configs.results {
            let name = result.resource_name.as_str();
            if is(result.error_code, ResponseError::UnknownTopicOrPartition) {
                // Deleted between the two requests.
                topics.remove(name);
                continue;
            }
            check(OP, name, result.error_code, result.error_message.as_ref())?;
            let retention = result
                .configs
                .iter()
                .find(|c| c.name.as_str() == RETENTION_MS && c.config_source == config::DYNAMIC_TOPIC_CONFIG);
            if let (Some(topic), Some(value)) = (topics.get_mut(name), retention.and_then(|c| c.value.as_ref())) {
                let ms = value.parse().map_err(|_| {
                    mismatch(OP, format!("topic {name:?} has {RETENTION_MS}={:?}, not a number", value.as_str()))
                })?;
                topic.retention_ms = Some(ms);
            }
        }
        Ok(topics.into_values().collect())
    }

    /// CreateTopics with the broker's default replication factor (-1) and `retention.ms`;
    /// TOPIC_ALREADY_EXISTS is success.
    async fn create_topic(&self, topic: &TopicSpec) -> Result<()> {
        const OP: &str = "CreateTopics";
        debug!(topic = %topic.name, partitions = topic.partitions, retention_ms = topic.retention_ms, "creating topic");
        let response = self
            .call(OP, |_| {
                let retention = CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str(RETENTION_MS))
                    .with_value(Some(StrBytes::from_string(topic.retention_ms.to_string())));
                let creatable = CreatableTopic::default()
                    .with_name(TopicName(text(&topic.name)))
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(-1)
                    .with_configs(vec![retention]);
                CreateTopicsRequest::default().with_topics(vec![creatable]).with_timeout_ms(BROKER_TIMEOUT_MS)
            })
            .await?;
        for result in response.topics.iter().filter(|r| !is(r.error_code, ResponseError::TopicAlreadyExists)) {
            check(OP, &topic.name, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// CreatePartitions to the new total, with the broker choosing replica placement.
    async fn add_partitions(&self, topic: &str, total: i32) -> Result<()> {
        const OP: &str = "CreatePartitions";
        debug!(topic, total, "adding partitions");
        let response = self
            .call(OP, |_| {
                // Null assignments let the broker place the new replicas (an empty list would
                // mean "no assignments given" and be refused).
                let partitions = CreatePartitionsTopic::default()
                    .with_name(TopicName(text(topic)))
                    .with_count(total)
                    .with_assignments(None);
                CreatePartitionsRequest::default().with_topics(vec![partitions]).with_timeout_ms(BROKER_TIMEOUT_MS)
            })
            .await?;
        for result in &response.results {
            check(OP, topic, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// IncrementalAlterConfigs with a SET operation per config, so other topic configs stay.
    async fn set_topic_configs(&self, topic: &str, configs: &BTreeMap<String, String>) -> Result<()> {
        const OP: &str = "IncrementalAlterConfigs";
        if configs.is_empty() {
            return Ok(());
        }
        debug!(topic, ?configs, "setting topic configs");
        let response = self
            .call(OP, |_| {
                let alterations = configs
                    .iter()
                    .map(|(name, value)| {
                        AlterableConfig::default()
                            .with_name(text(name))
                            .with_config_operation(config::SET)
                            .with_value(Some(text(value)))
                    })
                    .collect();
                let resource = AlterConfigsResource::default()
                    .with_resource_type(config::TOPIC_RESOURCE)
                    .with_resource_name(text(topic))
                    .with_configs(alterations);
                IncrementalAlterConfigsRequest::default().with_resources(vec![resource])
            })
            .await?;
        for result in &response.responses {
            check(OP, topic, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// DeleteTopics by name; UNKNOWN_TOPIC_OR_PARTITION (already gone) is success.
    async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        const OP: &str = "DeleteTopics";
        if topics.is_empty() {
            return Ok(());
        }
        debug!(?topics, "deleting topics");
        let response = self
            .call(OP, |version| {
                let request = DeleteTopicsRequest::default().with_timeout_ms(BROKER_TIMEOUT_MS);
                // v6 names topics in `topics` (which may also carry ids), earlier versions in
                // `topic_names`.
                if version >= 6 {
                    request.with_topics(
                        topics
                            .iter()
                            .map(|t| DeleteTopicState::default().with_name(Some(TopicName(text(t)))))
                            .collect(),
                    )
                } else {
                    request.with_topic_names(topics.iter().map(|t| TopicName(text(t))).collect())
                }
            })
            .await?;
        for result in response.responses.iter().filter(|r| !is(r.error_code, ResponseError::UnknownTopicOrPartition)) {
            let name = result.name.as_deref().map_or("(unnamed)", |n| n.as_str());
            check(OP, name, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    use super::*;

    /// Decodes a frame the way a broker does: length, header (its version derived from the API
    /// key and version), body.
    fn broker_decode<R: Request + fmt::Debug>(mut frame: Bytes) -> (RequestHeader, R) {
        let length = frame.get_i32();
        assert_eq!(usize::try_from(length).unwrap(), frame.len());
        let header = decode_request_header_from_buffer(&mut frame).unwrap();
        let request = R::decode(&mut frame, header.request_api_version).unwrap();
        assert!(frame.is_empty(), "{} bytes left after the body", frame.len());
        (header, request)
    }

    #[test]
    fn frames_carry_length_header_and_body_in_the_right_versions() {
        // Metadata v12 has a flexible (v2) header, SaslHandshake v1 a v1 header.
        let metadata = MetadataRequest::default().with_topics(None);
        let frame = encode_frame(&metadata, 12, 7).unwrap().freeze();
        let (header, decoded) = broker_decode::<MetadataRequest>(frame);
        assert_eq!((header.request_api_key, header.request_api_version, header.correlation_id), (3, 12, 7));
        assert_eq!(header.client_id.as_deref(), Some(CLIENT_ID));
        assert_eq!(decoded, metadata);

        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(scram::MECHANISM));
        let (header, decoded) = broker_decode::<SaslHandshakeRequest>(encode_frame(&handshake, 1, 8).unwrap().freeze());
        assert_eq!((header.request_api_key, header.correlation_id), (17, 8));
        assert_eq!(decoded, handshake);
    }

    #[test]
    fn only_prefixed_allows_from_any_host_are_platform_bindings() {
        use acl::*;
        let allow = |pattern, host, permission, resource, operation| {
            prefixed_allow(resource, "acme.", pattern, "User:acme", host, operation, permission)
        };
        assert_eq!(
            allow(PREFIXED, "*", ALLOW, GROUP, READ),
            Some(PrefixedAllow {
                resource: ResourceKind::Group,
                prefix: "acme.".into(),
                principal: "User:acme".into(),
                operation: Operation::Read,
            })
        );
        assert_eq!(allow(3, "*", ALLOW, TOPIC, READ), None, "LITERAL");
        assert_eq!(allow(PREFIXED, "10.0.0.1", ALLOW, TOPIC, READ), None, "a specific host");
        assert_eq!(allow(PREFIXED, "*", 2, TOPIC, READ), None, "DENY");
        assert_eq!(allow(PREFIXED, "*", ALLOW, 4, READ), None, "the cluster resource");
        assert_eq!(allow(PREFIXED, "*", ALLOW, TOPIC, 2), None, "operation ALL");
    }

    #[test]
    fn acl_codes_round_trip() {
        for kind in [ResourceKind::Topic, ResourceKind::Group, ResourceKind::TransactionalId] {
            assert_eq!(resource_kind(resource_code(kind)), Some(kind));
        }
        for operation in [Operation::Read, Operation::Write, Operation::Describe, Operation::DescribeConfigs] {
            assert_eq!(operation_of(operation_code(operation)), Some(operation));
        }
    }

    #[test]
    fn error_codes_become_named_request_errors() {
        assert!(check("CreateTopics", "t", 0, None).is_ok());
        let err = check("CreateTopics", "t", 36, Some(&StrBytes::from_static_str("exists"))).unwrap_err();
        assert!(matches!(
            &err,
            KafkaAdminError::Request { operation: "CreateTopics", resource, code, message }
                if resource == "t" && code == "TopicAlreadyExists" && message == "exists"
        ));
        assert_eq!(err.to_string(), "Kafka CreateTopics on \"t\" failed: TopicAlreadyExists exists");
    }
}
