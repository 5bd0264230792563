//! What a stream replica tells its metrics sidecar: the [`Meter`] counts what the pipeline
//! stores and dead-letters and notes when the gatherer last proved alive; the reporter sends the
//! counts as one [`Measurement`] JSON line every half report interval over TCP to
//! `MYSIMBDP_SIDECAR_ADDR`.
//!
//! The reporter never slows ingestion down: it runs on its own task, connects and writes with
//! short timeouts, and when the sidecar is not there it keeps the counts for the next attempt and
//! says so once in the log. When the gatherer has not come back for longer than the hang
//! threshold (the app's wrangle hook is stuck), it sends nothing: the sidecar then reports the
//! replica silent, which is how the platform learns that the app hangs.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt, net::TcpStream, sync::watch};
use tracing::{debug, info, warn};

use crate::contract::Measurement;

/// How long connecting to or writing to the sidecar may take.
const SIDECAR_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest period between two measurement lines.
const MIN_PERIOD: Duration = Duration::from_millis(50);

/// Counts of the pipeline since the last measurement sent, and its heartbeat.
#[derive(Debug)]
pub(crate) struct Meter {
    pending: Mutex<Measurement>,
    started: Instant,
    /// Milliseconds after `started` when the gatherer last proved alive.
    heartbeat_ms: AtomicU64,
}

impl Meter {
    pub fn new() -> Self {
        Self { pending: Mutex::new(Measurement::default()), started: Instant::now(), heartbeat_ms: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Measurement> {
        // The counters stay usable even if a holder panicked: they are plain numbers.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages stored now: their count, bytes and summed ingestion time.
    pub fn stored(&self, messages: u64, bytes: u64, ingestion_ms: f64) {
        let mut pending = self.lock();
        pending.messages += messages;
        pending.bytes += bytes;
        pending.ingestion_ms += ingestion_ms;
    }

    /// Messages sent to the dead-letter topic now.
    pub fn dead_lettered(&self, messages: u64) {
        self.lock().dead_lettered += messages;
    }

    /// Takes the counts since the last take.
    pub fn take(&self) -> Measurement {
        std::mem::take(&mut *self.lock())
    }

    /// Puts counts back that could not be sent.
    pub fn put_back(&self, unsent: Measurement) {
        let mut pending = self.lock();
        pending.messages += unsent.messages;
        pending.bytes += unsent.bytes;
        pending.ingestion_ms += unsent.ingestion_ms;
        pending.dead_lettered += unsent.dead_lettered;
    }

    /// The gatherer is alive now.
    pub fn beat(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(now, Ordering::Relaxed);
    }

    /// How long ago the gatherer last proved alive.
    pub fn since_beat(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }
}

/// The hang threshold for a report interval: three intervals, and at least three seconds.
pub(crate) fn default_hang_after(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(3))
}

/// Sends measurements to the sidecar at `addr` every half `interval` until `done` turns true,
/// then sends the last counts once more and returns.
pub(crate) async fn report(
    meter: std::sync::Arc<Meter>,
    addr: String,
    interval: Duration,
    hang_after: Duration,
    mut done: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval((interval / 2).max(MIN_PERIOD));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sidecar = Sidecar { addr, connection: None, missing_since: None, hung: false };
    loop {
        let finished = tokio::select! {
            _ = ticks.tick() => false,
            _ = done.wait_for(|done| *done) => true,
        };
        if finished {
            sidecar.send(&meter).await;
            return;
        }
        let idle = meter.since_beat();
        if idle > hang_after {
            if !sidecar.hung {
                warn!(
                    seconds = idle.as_secs(),
                    "the app has not come back from wrangling a message; sending no measurements, so the platform sees the replica hang"
                );
                sidecar.hung = true;
            }
            continue;
        }
        if sidecar.hung {
            info!("the app makes progress again; measurements resume");
            sidecar.hung = false;
        }
        sidecar.send(&meter).await;
    }
}

/// The connection to the sidecar, opened when needed.
struct Sidecar {
    addr: String,
    connection: Option<TcpStream>,
    /// Since when the sidecar cannot be reached (logged once).
    missing_since: Option<Instant>,
    hung: bool,
}

impl Sidecar {
    async fn send(&mut self, meter: &Meter) {
        let measurement = meter.take();
        let mut line = match serde_json::to_vec(&measurement) {
            Ok(line) => line,
            Err(e) => {
                // Plain numbers always encode; kept as a guard rather than a panic.
                warn!(error = %e, "cannot encode a measurement");
                meter.put_back(measurement);
                return;
            }
        };
        line.push(b'\n');
        if self.connection.is_none() {
            self.connection = self.connect().await;
        }
        let Some(connection) = self.connection.as_mut() else {
            meter.put_back(measurement);
            return;
        };
        match tokio::time::timeout(SIDECAR_TIMEOUT, connection.write_all(&line)).await {
            Ok(Ok(())) => {
                if let Some(since) = self.missing_since.take() {
                    info!(addr = %self.addr, after_seconds = since.elapsed().as_secs(), "metrics sidecar reached again");
                }
            }
            Ok(Err(e)) => self.lost(meter, measurement, &e.to_string()),
            Err(_) => self.lost(meter, measurement, "the write timed out"),
        }
    }

    async fn connect(&mut self) -> Option<TcpStream> {
        let reason = match tokio::time::timeout(SIDECAR_TIMEOUT, TcpStream::connect(&self.addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                debug!(addr = %self.addr, "connected to the metrics sidecar");
                return Some(stream);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connecting timed out".to_owned(),
        };
        self.missing(&reason);
        None
    }

    fn lost(&mut self, meter: &Meter, measurement: Measurement, reason: &str) {
        self.connection = None;
        meter.put_back(measurement);
        self.missing(reason);
    }

    fn missing(&mut self, reason: &str) {
        if self.missing_since.is_none() {
            info!(
                addr = %self.addr,
                reason,
                "metrics sidecar not reachable; ingestion goes on and the counts wait for the next attempt"
            );
            self.missing_since = Some(Instant::now());
        } else {
            debug!(addr = %self.addr, reason, "metrics sidecar still not reachable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_until_taken_and_unsent_ones_come_back() {
        let meter = Meter::new();
        meter.stored(3, 300, 12.5);
        meter.dead_lettered(1);
        let taken = meter.take();
        assert_eq!(taken, Measurement { messages: 3, bytes: 300, ingestion_ms: 12.5, dead_lettered: 1 });
        assert_eq!(meter.take(), Measurement::default(), "an idle interval reports zeros");
        meter.stored(1, 10, 1.0);
        meter.put_back(taken);
        assert_eq!(meter.take(), Measurement { messages: 4, bytes: 310, ingestion_ms: 13.5, dead_lettered: 1 });
    }

    #[test]
    fn the_hang_threshold_is_three_intervals_at_least_three_seconds() {
        assert_eq!(default_hang_after(Duration::from_secs(5)), Duration::from_secs(15));
        assert_eq!(default_hang_after(Duration::from_millis(500)), Duration::from_secs(3));
        let meter = Meter::new();
        meter.beat();
        assert!(meter.since_beat() < Duration::from_secs(1));
    }
}
