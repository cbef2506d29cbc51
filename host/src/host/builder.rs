//! Building a host: the config, and what the config does not say.

use std::{path::PathBuf, sync::Arc};

use parking_lot::Mutex;

use super::{background, eager::Eager, Host, HostError, Inner, MetricSummaries};
use crate::{
    config::{Config, ConfigError},
    coordinator::{ComponentSpec, Coordinator, CoordinatorBuilder, NativeComponent, RegisterError},
    discovery::{Catalog, Discovery, ScanMode},
    live::LiveDiscovery,
    plan::Plans,
    sources::{Sources, SyncReport},
    trust::TrustPolicy,
};

/// Builds a [`Host`] from a [`Config`]; see [`Host::builder`].
pub struct HostBuilder {
    config: Config,
    child_program: Option<PathBuf>,
    scan_mode: Option<ScanMode>,
    natives: Vec<(ComponentSpec, NativeComponent)>,
    trust: Option<TrustPolicy>,
    eager: bool,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("child_program", &self.child_program)
            .field("natives", &self.natives.len())
            .finish_non_exhaustive()
    }
}

impl HostBuilder {
    pub(super) fn new(config: Config) -> Self {
        Self {
            config,
            child_program: None,
            scan_mode: None,
            natives: Vec::new(),
            trust: None,
            eager: true,
        }
    }

    /// The program started as the host's scanners and isolation workers: it must call
    /// [`crate::run_child_if_requested`] first in `main`. Defaults to this executable.
    pub fn with_child_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.child_program = Some(program.into());
        self
    }

    /// How plugin files are scanned; [`ScanMode::InProcess`] maps every file into this
    /// process, a risk the embedder takes knowingly. Defaults to a scanner subprocess of
    /// the child program.
    pub fn with_scan_mode(mut self, mode: ScanMode) -> Self {
        self.scan_mode = Some(mode);
        self
    }

    /// Registers a native Rust component beside the plugins' (before eager components
    /// start). Defaults to none.
    pub fn with_native(mut self, spec: ComponentSpec, component: NativeComponent) -> Self {
        self.natives.push((spec, component));
        self
    }

    /// The trust policy plugin files must pass. Defaults to what `[host] trust` says, the
    /// trust file of `pinned` read at start, as the `plugin-host` binary does.
    pub fn with_trust(mut self, trust: TrustPolicy) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Whether the components `[components.NAME] eager = true` names start with the host.
    /// Defaults to true; a host started for one call (`plugin-host call`) starts only what
    /// that call needs.
    pub fn with_eager(mut self, eager: bool) -> Self {
        self.eager = eager;
        self
    }

    /// Discovers the plugins, registers their components and the native ones, and starts
    /// the host's background work: live discovery (as `[host] watch` says), the memory
    /// sampler, metrics aggregation, the lock watchdog, and the eager components (see
    /// [`Host::eager_started`]). Bad plugin files are logged and listed in the catalog,
    /// never fatal.
    ///
    /// # Errors
    ///
    /// [`HostError`]: the trust file cannot be read, the plugins directory cannot be
    /// scanned, a native component cannot be registered, or no tokio runtime runs.
    pub async fn start(self) -> Result<Host, HostError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(HostError::NoRuntime);
        }
        let eager = self.eager;
        let assembled = self.assemble().await?;
        for problem in assembled.problems() {
            tracing::warn!("{problem}");
        }
        for name in assembled.coordinator.overrides_without_component() {
            tracing::warn!("{}", unprovided(&name));
        }
        let Assembled {
            config,
            discovery,
            coordinator,
            sources,
            ..
        } = assembled;
        let live = LiveDiscovery::start(
            discovery,
            coordinator.clone(),
            config.host.watch,
            config.host.watch_rescan,
        );
        let summaries = Arc::new(MetricSummaries::default());
        let mut background = background::start(&config, &coordinator, &summaries);
        if let Some(sources) = &sources {
            background.extend(background::follow_sources(sources, &live.handle()));
        }
        let eager = Eager::start(&config, &coordinator, eager);
        tracing::info!(
            components = coordinator.component_names().len(),
            dir = %config.plugins_dir().display(),
            "host started"
        );
        Ok(Host {
            inner: Arc::new(Inner {
                rescan: live.handle(),
                live: Mutex::new(Some(live)),
                config,
                coordinator,
                summaries,
                background: Mutex::new(background),
                sources,
                eager,
            }),
        })
    }

    /// What a host of this config would run, and every problem in it, without running
    /// it: the plugins discovered (loading none), the components registered, the graph
    /// validated, the config's sections checked against what plugins provide. What
    /// `plugin-host check` reports.
    ///
    /// # Errors
    ///
    /// As [`Self::start`].
    pub async fn check(self) -> Result<CheckReport, HostError> {
        let assembled = self.assemble().await?;
        let problems = assembled.problems();
        let coordinator = &assembled.coordinator;
        Ok(CheckReport {
            problems,
            warnings: coordinator
                .overrides_without_component()
                .iter()
                .map(|name| unprovided(name))
                .collect(),
            components: coordinator.component_names().len(),
            memory_limit: coordinator.memory().limit(),
            memory_limit_source: coordinator.memory().limit_source().to_string(),
            catalog: Catalog::clone(&assembled.catalog),
        })
    }

    /// The discovery a host of this config runs (its plugins directory, cache, trust
    /// policy and scanners), for what reads plugins without running them (`list`,
    /// `inspect`).
    ///
    /// # Errors
    ///
    /// The trust file of `pinned` cannot be read.
    pub fn discovery(&self) -> Result<Discovery, HostError> {
        self.discovery_with(Sources::of(&self.config))
    }

    /// The discovery, over these sources.
    fn discovery_with(&self, sources: Option<Sources>) -> Result<Discovery, HostError> {
        let mut trust = match &self.trust {
            Some(trust) => trust.clone(),
            None => self.config.trust_policy()?,
        };
        let config = &self.config;
        let mut discovery = Discovery::new(config.plugins_dir())
            .with_cache_dir(config.cache_dir())
            .with_concurrency(config.host.scan_concurrency)
            .with_scan_timeout(config.host.scan_timeout)
            .with_copy_from_noexec(config.host.copy_from_noexec);
        if let Some(sources) = sources {
            trust = trust.with_verified(sources.verified());
            discovery = discovery.with_sources(sources);
        }
        let mut discovery = discovery.with_trust(trust);
        let scan_mode = self
            .scan_mode
            .clone()
            .or_else(|| self.child_program.clone().map(ScanMode::Subprocess));
        if let Some(mode) = scan_mode {
            discovery = discovery.with_scan_mode(mode);
        }
        Ok(discovery)
    }

    /// The trust policy, discovery and its catalog, and a coordinator with every
    /// component registered: a host before its background work starts.
    async fn assemble(self) -> Result<Assembled, HostError> {
        let problems = self.config.problems();
        if !problems.is_empty() {
            return Err(HostError::Config(ConfigError {
                file: None,
                problems,
            }));
        }
        let sources = Sources::of(&self.config);
        let pulled = match &sources {
            Some(sources) => sources.sync().await,
            None => SyncReport::default(),
        };
        let discovery = self.discovery_with(sources.clone())?;
        let trust = discovery.trust().clone();
        let config = self.config;
        let catalog = discovery.discover().await?;
        // The one place a config becomes the engine's plans and managers.
        let mut engine = CoordinatorBuilder::from_plans(Plans::resolve(&config))
            .with_locks(config.locks.builder().build())
            .with_memory(config.memory.builder().build())
            .with_trust(trust);
        if let Some(program) = self.child_program {
            engine = engine.with_worker_program(program);
        }
        let coordinator = engine.build();
        let registration = coordinator.register_catalog(catalog);
        let catalog = coordinator.catalog();
        for (spec, component) in self.natives {
            coordinator.register_native(spec, component)?;
        }
        Ok(Assembled {
            sources,
            pull_problems: pulled.problems.iter().map(ToString::to_string).collect(),
            config,
            discovery,
            catalog,
            coordinator,
            registration,
        })
    }
}

/// A host before its background work starts.
struct Assembled {
    /// The sources, when the config names any.
    sources: Option<Sources>,
    /// Sources that could not be pulled, one line each.
    pull_problems: Vec<String>,
    config: Config,
    discovery: Discovery,
    /// The catalog registered, as the coordinator keeps it.
    catalog: Arc<Catalog>,
    coordinator: Coordinator,
    registration: Vec<RegisterError>,
}

impl Assembled {
    /// Every problem: plugin files that cannot be used, components that could not be
    /// registered, dependencies nothing provides.
    fn problems(&self) -> Vec<String> {
        let files = self.catalog.failures().map(ToString::to_string);
        let registration = self.registration.iter().map(ToString::to_string);
        let graph = self.coordinator.validate();
        self.pull_problems
            .iter()
            .cloned()
            .chain(self.coordinator.memory().below_rss())
            .chain(files)
            .chain(registration)
            .chain(graph.iter().map(ToString::to_string))
            .collect()
    }
}

/// What a config names that no plugin provides.
fn unprovided(name: &str) -> String {
    format!("config has [components.{name}], but no plugin provides a component `{name}`")
}

/// What [`HostBuilder::check`] found.
#[derive(Debug)]
pub struct CheckReport {
    /// Every problem, one line each: bad plugin files, registrations refused, missing
    /// dependencies.
    pub problems: Vec<String>,
    /// What is not wrong but likely a mistake (a config section nothing provides).
    pub warnings: Vec<String>,
    /// The plugins discovered.
    pub catalog: Catalog,
    /// Components registered.
    pub components: usize,
    /// The memory limit admission works by, and where it comes from.
    pub memory_limit: u64,
    /// Where the memory limit comes from, in words.
    pub memory_limit_source: String,
}
