//! Restarting the local stack's shared Kafka broker from a test, and leaving it up and healthy
//! whatever happens.
//!
//! Kafka 4.1.2 can come back from a restart without any SCRAM credential: every SCRAM login, the
//! admin's included, then fails with "invalid credentials", and `kafka_up` waits in vain for its
//! health check. At start the broker replays its metadata log as one delta; `ScramDelta::apply`
//! drops a mechanism's user map as soon as a removal empties it, and the additions of the same
//! delta applied after that (in hash order) are lost. Any SCRAM user ever deleted (a tenant
//! offboarded, a test's user) can trigger it; a restart that loads a KRaft snapshot holding the
//! users does not. Until the stack avoids it, [`start`] repairs the admin's login the way an
//! operator would: it upserts the admin's SCRAM credential (same password, new salt) through the
//! controller listener, as the controller's static PLAIN user, and the broker loads it like any
//! new credential. Other users' credentials are not repaired (their passwords are not known
//! here).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mysimbdp_e2e::Stack;
use mysimbdp_ingest_sdk::rdkafka::{
    ClientConfig,
    producer::{BaseProducer, Producer},
    util::Timeout,
};
use sha2::{Digest, Sha512};

/// Runs a function of the stack's Kafka script (`kafka_down`, `kafka_up`) with the stack's settings.
fn kafka_script(stack: &Stack, function: &str) -> Output {
    let dir = Stack::repo_dir().join("e2e/stack");
    let script = format!("set -euo pipefail; . {0}/lib.sh; . {0}/kafka.sh; {function}", dir.display());
    Command::new("bash").args(["-c", &script]).envs(stack.vars()).output().expect("bash runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Stops the broker (its state is kept).
pub fn stop(stack: &Stack) {
    let output = kafka_script(stack, "kafka_down");
    assert!(output.status.success(), "kafka_down failed: {}", text(&output));
}

/// Starts the broker and waits until it is healthy; repairs the admin's login when the broker
/// comes back without it. Returns whether a repair was needed.
pub fn start(stack: &Stack) -> Result<bool, String> {
    let up_stack = stack.clone();
    let up = std::thread::spawn(move || kafka_script(&up_stack, "kafka_up"));
    let mut refused_since: Option<Instant> = None;
    let mut repaired = false;
    while !up.is_finished() {
        std::thread::sleep(Duration::from_millis(500));
        if repaired || !port_open(stack.var("MYSIMBDP_KAFKA_BOOTSTRAP")) {
            continue;
        }
        if admin_logs_in(stack) {
            refused_since = None;
            continue;
        }
        // A broker that has just opened its port may refuse logins for a moment while it loads
        // its metadata; a refusal that lasts is the lost credential.
        let since = *refused_since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "the restarted broker refuses the admin's SCRAM login (its credentials were not restored); re-applying the admin's credential through the controller listener"
            );
            upsert_admin_credential(stack)?;
            repaired = true;
        }
    }
    let output = up.join().map_err(|_| "the kafka_up thread panicked".to_owned())?;
    if output.status.success() { Ok(repaired) } else { Err(format!("kafka_up failed: {}", text(&output))) }
}

fn port_open(bootstrap: &str) -> bool {
    bootstrap
        .split(',')
        .next()
        .and_then(|addr| addr.parse().ok())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

fn admin_logs_in(stack: &Stack) -> bool {
    let config: ClientConfig = stack.kafka_admin_config();
    let Ok(producer) = config.create::<BaseProducer>() else { return false };
    producer.client().fetch_metadata(None, Timeout::After(Duration::from_secs(3))).is_ok()
}

/// Upserts the admin's SCRAM-SHA-512 credential through the controller listener (SASL/PLAIN as
/// the controller's static user, a super user), speaking the Kafka protocol directly: the
/// admin clients refuse this API on a controller bootstrap, the controller accepts it.
fn upsert_admin_credential(stack: &Stack) -> Result<(), String> {
    let secrets = PathBuf::from(stack.var("MYSIMBDP_STATE")).join("secrets");
    let read = |name: &str| {
        std::fs::read_to_string(secrets.join(name)).map(|s| s.trim().to_owned()).map_err(|e| format!("{name}: {e}"))
    };
    let controller_password = read("kafka-controller.password")?;
    let admin = stack.var("MYSIMBDP_KAFKA_ADMIN_USER").to_owned();
    let admin_password = stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD").to_owned();
    let port = std::env::var("MYSIMBDP_KAFKA_CONTROLLER_PORT").unwrap_or_else(|_| "19093".into());
    let mut connection = Connection::open(&format!("127.0.0.1:{port}"))?;

    let handshake = connection.call(17, 1, false, &string("PLAIN"))?; // SaslHandshake v1
    check(&handshake, "SASL handshake")?;
    let token = format!("\0controller\0{controller_password}");
    let mut body = (token.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(token.as_bytes());
    let authenticated = connection.call(36, 1, false, &body)?; // SaslAuthenticate v1
    check(&authenticated, "SASL/PLAIN as the controller user")?;

    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let salt = Sha512::digest(format!("mysimbdp-repair-{nanos}-{}", std::process::id()))[..24].to_vec();
    let iterations = 4096;
    let mut salted = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(admin_password.as_bytes(), &salt, iterations, &mut salted);
    // AlterUserScramCredentials v0 (flexible): no deletions, one upsertion.
    let mut body = vec![1, 2];
    body.extend(compact_bytes(admin.as_bytes()));
    body.push(2); // SCRAM-SHA-512
    body.extend_from_slice(&(iterations as i32).to_be_bytes());
    body.extend(compact_bytes(&salt));
    body.extend(compact_bytes(&salted));
    body.extend([0, 0]); // the upsertion's and the request's tagged fields
    let response = connection.call(51, 0, true, &body)?;
    // Response header tags, throttle time, one result: user, then its error code.
    let user_len = usize::from(*response.get(6).ok_or("short response")?).saturating_sub(1);
    let code = response.get(7 + user_len..9 + user_len).ok_or("short response")?;
    match i16::from_be_bytes([code[0], code[1]]) {
        0 => Ok(()),
        code => Err(format!("AlterUserScramCredentials answered error code {code}")),
    }
}

fn check(response: &[u8], what: &str) -> Result<(), String> {
    match response.get(..2).map(|c| i16::from_be_bytes([c[0], c[1]])) {
        Some(0) => Ok(()),
        other => Err(format!("{what} failed (error code {other:?})")),
    }
}

fn string(text: &str) -> Vec<u8> {
    let mut out = (text.len() as i16).to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

fn compact_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = bytes.len() as u64 + 1;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
    out
}

struct Connection {
    stream: TcpStream,
    correlation: i32,
}

impl Connection {
    fn open(addr: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connecting to the controller at {addr}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        Ok(Self { stream, correlation: 0 })
    }

    /// Sends one request and returns the response after its correlation id.
    fn call(&mut self, api_key: i16, version: i16, flexible: bool, body: &[u8]) -> Result<Vec<u8>, String> {
        self.correlation += 1;
        let mut request = Vec::new();
        request.extend_from_slice(&api_key.to_be_bytes());
        request.extend_from_slice(&version.to_be_bytes());
        request.extend_from_slice(&self.correlation.to_be_bytes());
        request.extend(string("mysimbdp-test"));
        if flexible {
            request.push(0);
        }
        request.extend_from_slice(body);
        let mut frame = (request.len() as i32).to_be_bytes().to_vec();
        frame.extend(request);
        let io = |e: std::io::Error| format!("talking to the controller: {e}");
        self.stream.write_all(&frame).map_err(io)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(io)?;
        let mut response = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut response).map_err(io)?;
        if response.get(..4) != Some(&self.correlation.to_be_bytes()[..]) {
            return Err("a response to another request".into());
        }
        Ok(response.split_off(4))
    }
}
