//! The sandbox a component asks for, and the one its library's worker enters.

use plugin_api::SandboxNeeds;

use super::{ComponentPlan, Plans};
use crate::{
    config::{ConnectGrant, Isolation, SandboxMode},
    manifest::PluginInfo,
    platform::Connect,
    protocol::SandboxPlan,
};

impl ComponentPlan {
    /// The sandbox this component asks for: its mode, and what it grants (what its
    /// plugin declares, each key the operator sets replacing it); `None` without one
    /// (off, or not isolated).
    pub fn sandbox_for(&self, declared: &SandboxNeeds) -> Option<(SandboxMode, SandboxNeeds)> {
        if self.sandbox == SandboxMode::Off || self.isolation != Isolation::Process {
            return None;
        }
        let mut granted = declared.clone();
        let grants = &self.grants;
        let paths =
            |list: &Vec<std::path::PathBuf>| list.iter().map(|p| p.display().to_string()).collect();
        if let Some(read) = &grants.read {
            granted.read = paths(read);
        }
        if let Some(write) = &grants.write {
            granted.write = paths(write);
        }
        match &grants.connect {
            Some(ConnectGrant::Anywhere(anywhere)) => {
                granted.connect = *anywhere;
                granted.connect_ports.clear();
            }
            Some(ConnectGrant::Ports(ports)) => {
                granted.connect = false;
                granted.connect_ports.clone_from(ports);
            }
            None => {}
        }
        if let Some(spawn) = grants.spawn {
            granted.spawn = spawn;
        }
        Some((self.sandbox, granted))
    }
}

/// The sandbox the worker of `info`'s library enters: the components of one library
/// share a worker, so it is sandboxed if any of its isolated components asks for it,
/// strictly if any asks strictly, and grants what all of them are granted.
pub(crate) fn worker_sandbox(plans: &Plans, info: &PluginInfo) -> Option<SandboxPlan> {
    let asked: Vec<(SandboxMode, SandboxNeeds)> = info
        .components
        .iter()
        .filter_map(|c| plans.component(&c.name).sandbox_for(&info.sandbox))
        .collect();
    if asked.is_empty() {
        return None;
    }
    let mut plan = SandboxPlan {
        best_effort: asked
            .iter()
            .all(|(mode, _)| *mode == SandboxMode::BestEffort),
        ..SandboxPlan::default()
    };
    let mut ports = Vec::new();
    let mut anywhere = false;
    for (_, granted) in asked {
        plan.read.extend(granted.read.iter().map(Into::into));
        plan.write.extend(granted.write.iter().map(Into::into));
        anywhere |= granted.connect;
        ports.extend(granted.connect_ports.iter().copied());
        plan.spawn |= granted.spawn;
    }
    plan.read.sort();
    plan.read.dedup();
    plan.write.sort();
    plan.write.dedup();
    ports.sort_unstable();
    ports.dedup();
    plan.connect = match (anywhere, ports.is_empty()) {
        (true, _) => Connect::Anywhere,
        (false, false) => Connect::Ports(ports),
        (false, true) => Connect::Nothing,
    };
    Some(plan)
}
