//! The eager components: started when the host starts, dependencies first, independent
//! ones concurrently, in the background; the host's readiness waits for them.

use serde::Serialize;
use tokio::sync::watch;

use crate::{
    config::Config,
    coordinator::{Coordinator, ErrorChainDisplay},
};

/// How starting the eager components went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EagerReport {
    /// The components that started.
    pub started: Vec<String>,
    /// The components that failed to start, with why.
    pub failed: Vec<(String, String)>,
}

pub(super) struct Eager {
    names: Vec<String>,
    done: watch::Receiver<Option<EagerReport>>,
    task: tokio::task::JoinHandle<()>,
}

impl Eager {
    /// Starts the eager components the config names that some plugin provides (unless
    /// `enabled` is false); the others are logged.
    pub(super) fn start(config: &Config, coordinator: &Coordinator, enabled: bool) -> Self {
        let mut names = Vec::new();
        let eager = config.components.iter().filter(|(_, c)| c.eager && enabled);
        for (name, component) in eager {
            if component.enabled && coordinator.state_of(name).is_some() {
                names.push(name.clone());
            } else {
                tracing::warn!(component = %name, "eager component is not provided by any plugin");
            }
        }
        let (report, done) = watch::channel(None);
        let task = tokio::spawn(start_all(coordinator.clone(), names.clone(), report));
        Self { names, done, task }
    }

    pub(super) fn names(&self) -> &[String] {
        &self.names
    }

    /// The report, once every eager component started or failed; an empty one if the
    /// host stopped first.
    pub(super) async fn finished(&self) -> EagerReport {
        let mut done = self.done.clone();
        let report = match done.wait_for(Option::is_some).await {
            Ok(report) => report.clone().unwrap_or_default(),
            Err(_) => EagerReport::default(),
        };
        report
    }

    pub(super) fn abort(&self) {
        self.task.abort();
    }
}

async fn start_all(
    coordinator: Coordinator,
    names: Vec<String>,
    report: watch::Sender<Option<EagerReport>>,
) {
    let gets = names.iter().map(|name| {
        let coordinator = coordinator.clone();
        async move { (name, coordinator.get(name).await) }
    });
    let mut outcome = EagerReport::default();
    for (name, result) in futures::future::join_all(gets).await {
        match result {
            Ok(_) => outcome.started.push(name.clone()),
            Err(err) => {
                let why = ErrorChainDisplay(&err).to_string();
                tracing::error!(component = %name, error = %why, "eager component failed to start");
                outcome.failed.push((name.clone(), why));
            }
        }
    }
    let _ = report.send(Some(outcome));
}
