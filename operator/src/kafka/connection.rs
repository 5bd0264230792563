//! The connection under [`ProtocolAdmin`](super::protocol::ProtocolAdmin): one TCP connection
//! to a bootstrap broker, TLS on it for `SASL_SSL` (OpenSSL; the broker's certificate verified
//! and its host name checked), Kafka's request framing (the `kafka-protocol` crate encodes and
//! decodes the messages), API version negotiation and the SASL/SCRAM-SHA-512 handshake. [`Link`]
//! holds that connection, reopens it when it breaks or its SASL session ends, and serializes
//! requests on it; it knows nothing about what the requests mean.

use std::{
    collections::HashMap,
    fmt, io,
    pin::Pin,
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::{
    ResponseError,
    messages::{
        AlterClientQuotasRequest, AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
        CreateAclsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteAclsRequest, DeleteTopicsRequest,
        DescribeAclsRequest, DescribeClientQuotasRequest, DescribeConfigsRequest, DescribeUserScramCredentialsRequest,
        IncrementalAlterConfigsRequest, MetadataRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
        SaslAuthenticateResponse, SaslHandshakeRequest,
    },
    protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange},
};
use openssl::{ssl::SslConnector, x509::X509VerifyResult};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::Mutex,
};
use tokio_openssl::SslStream;
use tracing::debug;

use super::{KafkaAdminError, Result, Transport};
use crate::{
    scram::{self, ClientFirst, ScramError},
    secret::SecretString,
    tls,
};

/// The client id brokers see in their request logs and quotas.
const CLIENT_ID: &str = "mysimbdp-operator";

/// How long one request (or connecting) may take before the call fails.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response accepted; a bigger length prefix means the stream is out of step.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

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

/// One authenticated connection to whichever bootstrap server accepts it, opened on
/// [`Link::open`] and reopened when it breaks; requests are serialized on it.
pub struct Link {
    servers: Vec<String>,
    bootstrap: String,
    user: String,
    password: SecretString,
    /// TLS for `SASL_SSL`; `None` for `SASL_PLAINTEXT`.
    tls: Option<SslConnector>,
    connection: Mutex<Option<Connection>>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("bootstrap", &self.bootstrap)
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The stream of a connection: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl Link {
    /// Connects to the first reachable server of `bootstrap` (comma-separated `host:port`)
    /// over `transport`, negotiates API versions and authenticates as `user` with SCRAM-SHA-512.
    pub async fn open(bootstrap: &str, user: &str, password: SecretString, transport: &Transport) -> Result<Self> {
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
        let tls = match transport {
            Transport::Plaintext => None,
            Transport::Tls { ca_file } => Some(
                tls::client(ca_file.as_deref())
                    .map_err(|e| KafkaAdminError::Tls {
                        server: bootstrap.to_owned(),
                        message: format!(
                            "{e}; --kafka-ca-file (MYSIMBDP_KAFKA_CA_FILE) must name the PEM certificate of the CA \
                             that signed the brokers' certificates"
                        ),
                    })?
                    .build(),
            ),
        };
        let link = Self {
            servers,
            bootstrap: bootstrap.to_owned(),
            user: user.to_owned(),
            password,
            tls,
            connection: Mutex::new(None),
        };
        let connection = link.establish().await?;
        *link.connection.lock().await = Some(connection);
        Ok(link)
    }

    /// The version used for each API the adapter needs (`None`: the broker offers none this
    /// client can speak), for diagnostics.
    pub async fn negotiated_versions(&self) -> Result<Vec<(&'static str, Option<i16>)>> {
        let mut guard = self.connection.lock().await;
        let connection = self.ready(&mut guard).await?;
        Ok(APIS.iter().map(|&(name, key, ours)| (name, connection.common(key, ours))).collect())
    }

    /// Opens and authenticates a connection to the first bootstrap server that accepts one.
    async fn establish(&self) -> Result<Connection> {
        let mut last_error = None;
        for server in &self.servers {
            let tcp = match tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(server)).await {
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
            if let Err(e) = tcp.set_nodelay(true) {
                debug!(server, error = %e, "cannot disable Nagle's algorithm");
            }
            let stream: Box<dyn Io> = match &self.tls {
                None => Box::new(tcp),
                Some(connector) => match tokio::time::timeout(REQUEST_TIMEOUT, handshake(connector, tcp, server)).await
                {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(e)) => {
                        debug!(server, error = %e, "TLS with Kafka bootstrap server failed");
                        last_error = Some(e);
                        continue;
                    }
                    Err(_) => {
                        last_error = Some(KafkaAdminError::Tls {
                            server: server.clone(),
                            message: format!(
                                "no TLS handshake within {REQUEST_TIMEOUT:?}; is it a SASL_SSL listener \
                                 (--kafka-security-protocol)?"
                            ),
                        });
                        continue;
                    }
                },
            };
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
            None => Ok(slot.insert(self.establish().await?)),
        }
    }

    /// Sends the request `build` makes for the negotiated version and returns the response.
    /// When the connection turns out to be broken, reconnects and sends it once more: the
    /// requests are idempotent (creating what exists and deleting what is gone succeed), except
    /// that a repeated CreatePartitions may report INVALID_PARTITIONS, which the next reconcile
    /// pass sees through.
    pub async fn call<R, F>(&self, operation: &'static str, build: F) -> Result<R::Response>
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

/// TLS on a fresh TCP connection to `server`: the broker's certificate must chain to a trusted
/// CA and name the host of `server`.
async fn handshake(connector: &SslConnector, tcp: TcpStream, server: &str) -> Result<SslStream<TcpStream>> {
    let host = host_of(server);
    let tls_error = |message: String| KafkaAdminError::Tls { server: server.to_owned(), message };
    let ssl = connector
        .configure()
        .and_then(|configuration| configuration.into_ssl(host))
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    if let Err(e) = Pin::new(&mut stream).connect().await {
        let verdict = stream.ssl().verify_result();
        let message = if verdict == X509VerifyResult::OK {
            format!("the TLS handshake failed ({e}); is it a SASL_SSL listener (--kafka-security-protocol)?")
        } else {
            format!(
                "the broker's certificate is not trusted: {}; --kafka-ca-file (MYSIMBDP_KAFKA_CA_FILE) must name the \
                 CA that signed it, and the certificate must name {host}",
                verdict.error_string()
            )
        };
        return Err(tls_error(message));
    }
    Ok(stream)
}

/// The host of `host:port` (an IPv6 address without its brackets).
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// One authenticated connection to a broker.
struct Connection {
    stream: Box<dyn Io>,
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
    async fn establish(stream: Box<dyn Io>, server: &str, user: &str, password: &SecretString) -> Result<Self> {
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
    async fn authenticate(&mut self, user: &str, password: &SecretString) -> Result<()> {
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

async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Result<Bytes, Failure> {
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

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    use super::*;
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
    fn hosts_are_taken_from_servers() {
        assert_eq!(host_of("127.0.0.1:19096"), "127.0.0.1");
        assert_eq!(host_of("kafka-0.kafka:9093"), "kafka-0.kafka");
        assert_eq!(host_of("[::1]:9093"), "::1");
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
}
