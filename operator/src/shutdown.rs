//! The operator's one shutdown signal. SIGTERM (how Kubernetes stops a pod) or SIGINT (Ctrl-C)
//! triggers it once, and every controller, loop and background task of the process stops on
//! it: the controllers finish the reconciliations under way, the loops finish their round.
//! Whatever the process started outside itself (the local runtime's processes) is stopped
//! after, when the operator is told to.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A handle on the shutdown signal; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// A signal nothing has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal triggered by SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = wait_for_signal().await;
            info!(signal = name, "stopping");
            trigger.trigger();
        });
        shutdown
    }

    /// Triggers it (idempotent).
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes once it is triggered.
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }

    /// A future that completes once it is triggered and is `Send + Sync + 'static`, as
    /// kube-runtime's controllers want for their graceful shutdown.
    pub fn future(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let (done, wait) = tokio::sync::oneshot::channel::<()>();
        let token = self.0.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            let _ = done.send(());
        });
        async move {
            let _ = wait.await;
        }
    }
}

async fn wait_for_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the operator cleanly");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_one_trigger() {
        let shutdown = Shutdown::new();
        let waiter = shutdown.clone();
        let future = shutdown.future();
        assert!(!waiter.is_triggered());
        shutdown.trigger();
        waiter.wait().await;
        future.await;
        assert!(waiter.is_triggered());
    }
}
