//! When a stream replica writes the messages it has gathered: a pure policy, so that batching
//! is tested without a broker. Messages are gathered while they keep arriving (big batches under
//! load, for throughput) and written as soon as none arrives for a moment or the oldest has
//! waited too long (small batches when traffic is light, for a short ingestion time).

use std::time::Duration;

/// How long the gatherer waits for a message when it holds none; it also bounds how long the
/// gatherer goes without proving it is alive.
pub const IDLE_TICK: Duration = Duration::from_millis(250);

/// The batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most messages in one batch.
    pub max_messages: usize,
    /// How long a batch waits for one more message before it is written.
    pub linger: Duration,
    /// Longest a message waits in a batch before the batch is written, however busy the topic.
    pub max_delay: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self { max_messages: 2000, linger: Duration::from_millis(5), max_delay: Duration::from_millis(100) }
    }
}

impl BatchPolicy {
    /// How long to wait for the next message, given the batch's size and the age of its oldest
    /// message; `None` means "write the batch now".
    pub fn wait(&self, messages: usize, oldest_age: Duration) -> Option<Duration> {
        if messages == 0 {
            return Some(IDLE_TICK);
        }
        if messages >= self.max_messages.max(1) || oldest_age >= self.max_delay {
            return None;
        }
        Some(self.linger.min(self.max_delay - oldest_age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_written_when_full_old_or_when_traffic_pauses() {
        let policy =
            BatchPolicy { max_messages: 3, linger: Duration::from_millis(5), max_delay: Duration::from_millis(100) };
        let ms = Duration::from_millis;
        let cases = [
            // (messages, oldest age, expected wait)
            (0, ms(0), Some(IDLE_TICK)),
            (0, ms(500), Some(IDLE_TICK)),
            (1, ms(0), Some(ms(5))),
            (2, ms(97), Some(ms(3))),
            (2, ms(100), None),
            (3, ms(0), None),
            (4, ms(0), None),
        ];
        for (messages, age, expected) in cases {
            assert_eq!(policy.wait(messages, age), expected, "{messages} messages, oldest {age:?}");
        }
        let zero = BatchPolicy { max_messages: 0, ..policy };
        assert_eq!(zero.wait(1, ms(0)), None, "a batch holds at least one message");
    }
}
