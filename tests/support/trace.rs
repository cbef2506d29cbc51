//! Which process mapped which library, read from glibc's loader trace (`LD_DEBUG=files`,
//! one file per process).

use std::{collections::HashMap, fs, path::Path, process::Output};

use crate::sandbox::Sandbox;

impl Sandbox {
    /// Runs the binary with `args` and records which process mapped which file.
    pub fn run_traced(&self, args: &[&str], env: &[(&str, &str)]) -> (Output, LoadTrace) {
        let trace_dir = tempfile::tempdir().expect("trace directory");
        let mut command = self.host();
        command
            .args(args)
            .envs(env.iter().copied())
            .env("LD_DEBUG", "files")
            .env("LD_DEBUG_OUTPUT", trace_dir.path().join("ld"));
        let child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running plugin-host");
        let main_pid = child.id();
        let output = child.wait_with_output().expect("waiting for plugin-host");
        let mut per_pid = HashMap::new();
        for entry in fs::read_dir(trace_dir.path()).expect("trace files") {
            let path = entry.expect("trace file").path();
            let pid = path
                .extension()
                .and_then(|ext| ext.to_str())
                .and_then(|ext| ext.parse::<u32>().ok())
                .expect("trace file named ld.PID");
            per_pid.insert(pid, fs::read_to_string(&path).unwrap_or_default());
        }
        assert!(
            per_pid.contains_key(&main_pid),
            "no loader trace for the host process; is this glibc?"
        );
        (output, LoadTrace { main_pid, per_pid })
    }
}

/// Which process mapped which shared object, read from glibc's loader trace.
#[derive(Debug)]
pub struct LoadTrace {
    main_pid: u32,
    per_pid: HashMap<u32, String>,
}

/// The names under which the trace shows `library` opened. The host hands the dynamic
/// loader a link to the descriptor it vetted (in a directory of its own), not the file's
/// path, so the file is recognised by its name.
fn opened_as(trace: &str, library: &Path) -> Vec<String> {
    let Some(name) = library.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = trace
        .lines()
        .flat_map(|line| {
            line.split_whitespace()
                .filter_map(|word| word.strip_prefix("file="))
                .filter(|path| {
                    *path == library.display().to_string() || path.ends_with(&format!("/{name}"))
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.dedup();
    names
}

fn mentions(trace: &str, library: &Path) -> bool {
    !opened_as(trace, library).is_empty()
}

impl LoadTrace {
    /// Whether the host process itself mapped `library`.
    pub fn host_mapped(&self, library: &Path) -> bool {
        mentions(&self.per_pid[&self.main_pid], library)
    }

    /// The names the host process handed the dynamic loader for `library`.
    pub fn host_opened_as(&self, library: &Path) -> Vec<String> {
        opened_as(&self.per_pid[&self.main_pid], library)
    }

    /// How many child processes (scanners) ran.
    pub fn child_processes(&self) -> usize {
        self.per_pid.len() - 1
    }

    /// How many libraries the child processes (scanners) mapped through a vetted
    /// descriptor: a scanner opens every file it is given, then fences itself in, then
    /// hands the loader each file as `/proc/self/fd/N` (it may write no link in its
    /// sandbox), so the trace does not name the file.
    pub fn child_mapped_descriptors(&self) -> usize {
        self.per_pid
            .iter()
            .filter(|(pid, _)| **pid != self.main_pid)
            .map(|(_, trace)| {
                let mut names: Vec<&str> = trace
                    .lines()
                    .flat_map(str::split_whitespace)
                    .filter_map(|word| word.strip_prefix("file=/proc/self/fd/"))
                    .map(|fd| fd.trim_end_matches(|c: char| !c.is_ascii_digit()))
                    .collect();
                names.sort_unstable();
                names.dedup();
                names.len()
            })
            .sum()
    }
}
