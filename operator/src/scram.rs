//! SCRAM (RFC 5802), so that passwords never travel in the clear: the client side of the
//! SCRAM-SHA-512 exchange the platform's admin authenticates to Kafka with, the salted
//! credential that AlterUserScramCredentials stores for a tenant's Kafka user, and the
//! SCRAM-SHA-256 verifier (RFC 7677) that PostgreSQL stores for a tenant's role, computed here
//! so that only the verifier is sent.
//!
//! Everything here is pure computation; [`crate::kafka::connection`] carries the messages over
//! the wire. Passwords are used as their UTF-8 bytes without SASLprep, as Kafka does; the
//! platform's generated passwords are ASCII letters and digits, for which SASLprep changes
//! nothing (PostgreSQL's verifier is refused for a non-ASCII password, where it would).

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256, Sha512};

use crate::secret::{ExposeSecret, SecretString};

/// The SASL mechanism name, as SaslHandshake and the broker's listener configuration spell it.
pub const MECHANISM: &str = "SCRAM-SHA-512";

/// Kafka's minimum iteration count for SCRAM-SHA-512; fewer would make stolen credentials cheap
/// to brute-force, so a server asking for fewer is refused.
pub const MIN_ITERATIONS: u32 = 4096;

/// The GS2 header of a client that neither supports nor wants channel binding.
const GS2_HEADER: &str = "n,,";

/// `c=` of the client-final message: the GS2 header, base64-encoded.
const CHANNEL_BINDING: &str = "biws";

/// Length of a SHA-512 digest, and so of every key of the exchange.
const KEY_LEN: usize = 64;

/// Random bytes in a client nonce (encoded as 32 base64 characters).
const NONCE_BYTES: usize = 24;

/// Random bytes in the salt of a new credential.
const SALT_BYTES: usize = 32;

type HmacSha512 = Hmac<Sha512>;

/// Why a SCRAM exchange cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// The server's message does not follow RFC 5802.
    #[error("malformed SCRAM {message} message from the server: {problem}")]
    Malformed {
        /// Which message: `server-first` or `server-final`.
        message: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The server's nonce does not extend the client's, so the reply is not to this exchange.
    #[error("the server's SCRAM nonce does not extend the client's nonce; the reply is not to this exchange, retry it")]
    NonceMismatch,
    /// The server asks for fewer iterations than Kafka's minimum.
    #[error(
        "the server asks for {iterations} SCRAM iterations, fewer than the minimum {MIN_ITERATIONS}; \
         re-create the credential with at least {MIN_ITERATIONS} iterations"
    )]
    TooFewIterations {
        /// The iterations the server asked for.
        iterations: u32,
    },
    /// The server reported an error (`e=` in server-final).
    #[error("the server rejected the SCRAM exchange: {0}")]
    Server(String),
    /// The server's signature is wrong: it does not hold the user's credential.
    #[error(
        "the server's SCRAM signature does not match; it does not hold this user's credential, so it is not trusted"
    )]
    ServerSignature,
    /// PostgreSQL would prepare this password with SASLprep, which is not implemented here.
    #[error(
        "the password is not ASCII, so PostgreSQL would prepare it with SASLprep before hashing and the verifier \
         computed here would not match; use an ASCII password (the platform generates letters and digits)"
    )]
    NotAscii,
}

/// The first step of an exchange: the client-first message, and the state needed to answer the
/// server's reply.
pub struct ClientFirst {
    nonce: String,
    bare: String,
}

impl ClientFirst {
    /// Starts an exchange for `user` with a fresh random nonce.
    pub fn new(user: &str) -> Self {
        let mut bytes = [0u8; NONCE_BYTES];
        rand::rng().fill(&mut bytes);
        Self::with_nonce(user, BASE64.encode(bytes))
    }

    /// Starts an exchange with a given nonce (known-answer tests need a fixed one).
    fn with_nonce(user: &str, nonce: String) -> Self {
        let bare = format!("n={},r={nonce}", escape_username(user));
        Self { nonce, bare }
    }

    /// The client-first message to send.
    pub fn message(&self) -> String {
        format!("{GS2_HEADER}{}", self.bare)
    }

    /// Answers the server-first message: checks it and computes the client proof.
    pub fn respond(self, server_first: &[u8], password: &SecretString) -> Result<ClientFinal, ScramError> {
        let server_first = utf8(server_first, "server-first")?;
        let parsed = ServerFirst::parse(server_first)?;
        if !parsed.nonce.starts_with(&self.nonce) || parsed.nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salted = salted_password(password.expose_secret().as_bytes(), &parsed.salt, parsed.iterations);
        let without_proof = format!("c={CHANNEL_BINDING},r={}", parsed.nonce);
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);

        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; KEY_LEN] = Sha512::digest(client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();

        Ok(ClientFinal {
            message: format!("{without_proof},p={}", BASE64.encode(proof)),
            server_key: hmac(&salted, b"Server Key"),
            auth_message,
        })
    }
}

/// The second step: the client-final message, and what the server must prove in reply.
pub struct ClientFinal {
    message: String,
    server_key: [u8; KEY_LEN],
    auth_message: String,
}

impl ClientFinal {
    /// The client-final message to send.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Checks the server-final message: the server's signature proves it holds the credential;
    /// an `e=` attribute is the server's refusal.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = utf8(server_final, "server-final")?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(ScramError::Server(error.to_owned()));
        }
        let Some(encoded) = first.strip_prefix("v=") else {
            return Err(malformed("server-final", format!("expected v= or e=, got {first:?}")));
        };
        let signature =
            BASE64.decode(encoded).map_err(|e| malformed("server-final", format!("v= is not base64: {e}")))?;
        // Mac::verify_slice compares in constant time.
        hmac_of(&self.server_key, self.auth_message.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| ScramError::ServerSignature)
    }
}

/// The server-first message's attributes.
struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

impl<'a> ServerFirst<'a> {
    /// Parses `r=…,s=…,i=…[,extensions]`; RFC 5802 fixes the order of the attributes.
    fn parse(text: &'a str) -> Result<Self, ScramError> {
        const MESSAGE: &str = "server-first";
        if text.starts_with("m=") {
            return Err(malformed(MESSAGE, "it demands a mandatory extension (m=), which is not supported".into()));
        }
        let mut attributes = text.split(',');
        let nonce = attribute(attributes.next(), 'r', MESSAGE)?;
        let salt = attribute(attributes.next(), 's', MESSAGE)?;
        let iterations = attribute(attributes.next(), 'i', MESSAGE)?;

        let salt = BASE64.decode(salt).map_err(|e| malformed(MESSAGE, format!("s= is not base64: {e}")))?;
        if salt.is_empty() {
            return Err(malformed(MESSAGE, "the salt is empty".into()));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| malformed(MESSAGE, format!("i={iterations:?} is not a positive integer")))?;
        if iterations < MIN_ITERATIONS {
            return Err(ScramError::TooFewIterations { iterations });
        }
        Ok(Self { nonce, salt, iterations })
    }
}

/// The value of the attribute `key=value` expected at this position of a message.
fn attribute<'a>(part: Option<&'a str>, key: char, message: &'static str) -> Result<&'a str, ScramError> {
    let part = part.ok_or_else(|| malformed(message, format!("attribute {key}= is missing")))?;
    match part.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')) {
        Some(value) if !value.is_empty() => Ok(value),
        Some(_) => Err(malformed(message, format!("attribute {key}= is empty"))),
        None => Err(malformed(message, format!("expected attribute {key}=, got {part:?}"))),
    }
}

fn utf8<'a>(bytes: &'a [u8], message: &'static str) -> Result<&'a str, ScramError> {
    std::str::from_utf8(bytes).map_err(|e| malformed(message, format!("not UTF-8: {e}")))
}

fn malformed(message: &'static str, problem: String) -> ScramError {
    ScramError::Malformed { message, problem }
}

/// Escapes a user name for `n=`: `=` and `,` would otherwise end or corrupt the attribute.
pub fn escape_username(user: &str) -> String {
    let mut escaped = String::with_capacity(user.len());
    for c in user.chars() {
        match c {
            '=' => escaped.push_str("=3D"),
            ',' => escaped.push_str("=2C"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A credential as AlterUserScramCredentials stores it: the broker derives the stored and
/// server keys from the salted password, so the password itself never leaves the platform.
#[derive(Clone)]
pub struct SaltedCredential {
    /// The random salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations, as the protocol carries them.
    pub iterations: i32,
    /// `Hi(password, salt, iterations)`: PBKDF2-HMAC-SHA512.
    pub salted_password: [u8; KEY_LEN],
}

impl SaltedCredential {
    /// Salts `password` with a fresh random 32-byte salt at [`MIN_ITERATIONS`].
    pub fn new(password: &SecretString) -> Self {
        let mut salt = vec![0u8; SALT_BYTES];
        rand::rng().fill(&mut salt[..]);
        let salted_password = salted_password(password.expose_secret().as_bytes(), &salt, MIN_ITERATIONS);
        // MIN_ITERATIONS (4096) fits an i32, so the cast is exact.
        const ITERATIONS: i32 = MIN_ITERATIONS as i32;
        Self { salt, iterations: ITERATIONS, salted_password }
    }
}

impl fmt::Debug for SaltedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The salted password is as good as the password against this broker: never print it.
        f.debug_struct("SaltedCredential")
            .field("salt", &BASE64.encode(&self.salt))
            .field("iterations", &self.iterations)
            .field("salted_password", &"<redacted>")
            .finish()
    }
}

/// PBKDF2 iterations of PostgreSQL's verifiers (its `scram_iterations` default).
pub const POSTGRES_ITERATIONS: u32 = 4096;

/// Random bytes in the salt of a PostgreSQL verifier (PostgreSQL's own length).
const POSTGRES_SALT_BYTES: usize = 16;

/// The SCRAM-SHA-256 verifier of `password` as PostgreSQL stores it in `pg_authid.rolpassword`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, with a fresh random salt. Given
/// to `CREATE ROLE … PASSWORD '<verifier>'`, PostgreSQL stores it as it is, so the password
/// itself is never sent and never lands in a statement or a server log.
pub fn postgres_verifier(password: &SecretString) -> Result<String, ScramError> {
    let mut salt = [0u8; POSTGRES_SALT_BYTES];
    rand::rng().fill(&mut salt);
    postgres_verifier_with(password.expose_secret(), &salt, POSTGRES_ITERATIONS)
}

fn postgres_verifier_with(password: &str, salt: &[u8], iterations: u32) -> Result<String, ScramError> {
    if !password.is_ascii() {
        return Err(ScramError::NotAscii);
    }
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations);
    let sha256_hmac = |key: &[u8], data: &[u8]| -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    };
    let stored_key: [u8; 32] = Sha256::digest(sha256_hmac(&salted, b"Client Key")).into();
    let server_key = sha256_hmac(&salted, b"Server Key");
    Ok(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    ))
}

/// `Hi(password, salt, iterations)` of RFC 5802 with HMAC-SHA-512, i.e. PBKDF2.
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    pbkdf2::pbkdf2_hmac_array::<Sha512, KEY_LEN>(password, salt, iterations)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    hmac_of(key, data).finalize().into_bytes().into()
}

fn hmac_of(key: &[u8], data: &[u8]) -> HmacSha512 {
    // HMAC takes keys of any length (longer ones are hashed), so this cannot fail.
    let mut mac = HmacSha512::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently with Python's hashlib.pbkdf2_hmac and hmac (SHA-512), for
    // the exchange of RFC 5802's example (user "user", password "pencil") with SHA-512.
    const KAT_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const KAT_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const KAT_SALTED_PASSWORD: &str = "f16efe1be67f1d09502ebd5ed9262fddffba5a377ab4f0b687e5ed5ba0f50686\
                                       b8a4ae166476da8ab3b951d2fa9238b63998f45461bc33a464814949cec9631d";
    const KAT_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==";
    const KAT_SERVER_FINAL: &str =
        "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn kat_client_final() -> ClientFinal {
        ClientFirst::with_nonce("user", KAT_CLIENT_NONCE.into())
            .respond(KAT_SERVER_FIRST.as_bytes(), &SecretString::from("pencil"))
            .expect("the known server-first is valid")
    }

    #[test]
    fn known_answer() {
        let first = ClientFirst::with_nonce("user", KAT_CLIENT_NONCE.into());
        assert_eq!(first.message(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(hex(&salted_password(b"pencil", &salt, 4096)), KAT_SALTED_PASSWORD);

        let last = kat_client_final();
        assert_eq!(last.message(), KAT_CLIENT_FINAL);
        last.verify(KAT_SERVER_FINAL.as_bytes()).expect("the known server signature verifies");
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let mut forged = BASE64.decode(KAT_SERVER_FINAL.strip_prefix("v=").unwrap()).unwrap();
        forged[0] ^= 1;
        let forged = format!("v={}", BASE64.encode(forged));
        assert!(matches!(kat_client_final().verify(forged.as_bytes()), Err(ScramError::ServerSignature)));
    }

    #[test]
    fn server_errors_are_reported() {
        let err = kat_client_final().verify(b"e=invalid-proof").unwrap_err();
        assert!(matches!(&err, ScramError::Server(e) if e == "invalid-proof"), "{err:?}");
        assert!(err.to_string().contains("invalid-proof"));
    }

    #[test]
    fn usernames_are_escaped() {
        assert_eq!(escape_username("plain-user.1"), "plain-user.1");
        assert_eq!(escape_username("a=b,c"), "a=3Db=2Cc");
        assert_eq!(escape_username("=3D"), "=3D3D");
        let first = ClientFirst::with_nonce("x,y=z", "nonce".into());
        assert_eq!(first.message(), "n,,n=x=2Cy=3Dz,r=nonce");
    }

    #[test]
    fn nonces_are_random_and_printable() {
        let (a, b) = (ClientFirst::new("u"), ClientFirst::new("u"));
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.nonce.len(), 32);
        assert!(a.nonce.bytes().all(|c| c.is_ascii_graphic() && c != b','));
    }

    /// A server of the exchange, written from RFC 5802: checks the client's proof against the
    /// stored key of `credential`, then lets the client check the server's signature.
    fn serve(credential: &SaltedCredential, client: ClientFirst, password: &SecretString) -> Result<(), String> {
        let client_first = client.message();
        let bare = client_first.strip_prefix("n,,").ok_or("no GS2 header")?;
        let client_nonce = bare.split(',').nth(1).and_then(|r| r.strip_prefix("r=")).ok_or("no r=")?;
        let server_first =
            format!("r={client_nonce}server-part,s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let last = client.respond(server_first.as_bytes(), password).map_err(|e| e.to_string())?;

        let (without_proof, proof) = last.message().rsplit_once(",p=").ok_or("no p=")?;
        assert_eq!(without_proof, format!("c=biws,r={client_nonce}server-part"));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let stored_key: [u8; KEY_LEN] = Sha512::digest(hmac(&credential.salted_password, b"Client Key")).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof = BASE64.decode(proof).map_err(|e| e.to_string())?;
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        if Sha512::digest(&client_key).as_slice() != stored_key {
            return Err("invalid-proof".into());
        }
        let server_signature = hmac(&hmac(&credential.salted_password, b"Server Key"), auth_message.as_bytes());
        last.verify(format!("v={}", BASE64.encode(server_signature)).as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn round_trip_with_a_server() {
        let password = crate::secret::generate();
        let credential = SaltedCredential::new(&password);
        assert_eq!(credential.salt.len(), 32);
        assert_eq!(credential.iterations, 4096);
        assert_eq!(
            credential.salted_password,
            salted_password(password.expose_secret().as_bytes(), &credential.salt, 4096)
        );

        let first = ClientFirst::new("tenant-acme");
        assert!(first.message().starts_with("n,,n=tenant-acme,r="));
        serve(&credential, first, &password).expect("the right password authenticates");

        let wrong = serve(&credential, ClientFirst::new("tenant-acme"), &SecretString::from("wrong"));
        let wrong = wrong.expect_err("a wrong password is refused");
        assert!(wrong.contains("invalid-proof"), "{wrong}");
    }

    #[test]
    fn new_credentials_get_fresh_salts_and_never_print_the_salted_password() {
        let password = SecretString::from("pencil");
        let (a, b) = (SaltedCredential::new(&password), SaltedCredential::new(&password));
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.salted_password, b.salted_password);
        let printed = format!("{a:?}");
        assert!(printed.contains("<redacted>") && !printed.contains(&hex(&a.salted_password[..4])), "{printed}");
    }

    fn respond(server_first: &str) -> Result<ClientFinal, ScramError> {
        ClientFirst::with_nonce("user", "abc".into()).respond(server_first.as_bytes(), &SecretString::from("pw"))
    }

    #[test]
    fn malformed_server_first_messages_are_refused() {
        let malformed = [
            ("r=abcdef,i=4096", "expected attribute s="),
            ("r=abcdef,s=c2FsdA==", "attribute i= is missing"),
            ("s=c2FsdA==,r=abcdef,i=4096", "expected attribute r="),
            ("r=abcdef,s=,i=4096", "attribute s= is empty"),
            ("r=abcdef,s=not base64!,i=4096", "s= is not base64"),
            ("r=abcdef,s=c2FsdA==,i=many", "is not a positive integer"),
            ("r=abcdef,s=c2FsdA==,i=-4096", "is not a positive integer"),
            ("m=ext,r=abcdef,s=c2FsdA==,i=4096", "mandatory extension"),
            ("", "expected attribute r="),
        ];
        for (message, expected) in malformed {
            let err = respond(message).err().unwrap_or_else(|| panic!("{message:?} was accepted"));
            assert!(matches!(err, ScramError::Malformed { message: "server-first", .. }), "{message:?}: {err:?}");
            assert!(err.to_string().contains(expected), "{message:?}: {err}");
        }
        let not_utf8 = ClientFirst::with_nonce("user", "abc".into())
            .respond(b"r=abc\xff,s=c2FsdA==,i=4096", &SecretString::from("pw"));
        assert!(not_utf8.err().is_some_and(|e| e.to_string().contains("not UTF-8")));
    }

    #[test]
    fn a_foreign_or_unextended_nonce_is_refused() {
        for nonce in ["xyzdef", "abc", "ab"] {
            let err = respond(&format!("r={nonce},s=c2FsdA==,i=4096")).err();
            assert!(matches!(err, Some(ScramError::NonceMismatch)), "{nonce}: {err:?}");
        }
    }

    #[test]
    fn too_few_iterations_are_refused() {
        let err = respond("r=abcdef,s=c2FsdA==,i=4095").err();
        assert!(matches!(err, Some(ScramError::TooFewIterations { iterations: 4095 })), "{err:?}");
        assert!(respond("r=abcdef,s=c2FsdA==,i=4096,x=extension").is_ok(), "extensions after i= are allowed");
    }

    #[test]
    fn postgres_verifiers_match_a_known_answer_and_are_salted_afresh() {
        // Computed independently with Python's hashlib.pbkdf2_hmac and hmac (SHA-256).
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            postgres_verifier_with("pencil", &salt, 4096).unwrap(),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:\
             dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
        );
        let password = SecretString::from("pencil");
        let (a, b) = (postgres_verifier(&password).unwrap(), postgres_verifier(&password).unwrap());
        assert_ne!(a, b, "each verifier has its own salt");
        assert!(a.starts_with("SCRAM-SHA-256$4096:") && !a.contains("pencil"), "{a}");
        assert!(matches!(postgres_verifier(&SecretString::from("pässword")), Err(ScramError::NotAscii)));
    }

    #[test]
    fn malformed_server_final_messages_are_refused() {
        for message in ["", "x=1", "v=###", "V=abc"] {
            let err = kat_client_final().verify(message.as_bytes()).unwrap_err();
            assert!(matches!(err, ScramError::Malformed { message: "server-final", .. }), "{message:?}: {err:?}");
        }
    }
}
