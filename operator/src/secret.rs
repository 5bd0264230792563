//! Credentials. Every password the operator holds is a [`SecretString`] (the `secrecy` crate):
//! its `Debug` prints `[REDACTED]`, it has no `Display`, its value is reachable only through
//! [`ExposeSecret::expose_secret`] at the one place that must send it, and its memory is zeroed
//! when it is dropped. This module adds the generator of new passwords.

use rand::{Rng, distr::Alphanumeric};
pub use secrecy::{ExposeSecret, SecretString};

/// A new random password of 32 letters and digits (about 190 bits).
pub fn generate() -> SecretString {
    SecretString::from(rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let s = SecretString::from("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
        assert_eq!(s.expose_secret(), "hunter2");
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.expose_secret().len(), 32);
        assert!(a.expose_secret().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
