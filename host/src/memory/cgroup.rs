//! The memory limit a container imposes, read from the cgroup filesystem.
//!
//! cgroup v2: the smallest `memory.max` on the way from this process's cgroup up to the
//! root (`max` means none). cgroup v1: the same walk over `memory.limit_in_bytes`, where
//! the huge "unlimited" value means none.

use std::path::{Path, PathBuf};

/// v1 reports "unlimited" as a page-aligned value near `i64::MAX`; anything this large
/// is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// A cgroup limit and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupLimit {
    pub(crate) bytes: u64,
    pub(crate) file: PathBuf,
    pub(crate) version: u8,
}

/// Reads the effective limit for the process whose `/proc/self/cgroup` is `proc_cgroup`,
/// with the cgroup filesystem mounted under `root` (`/` on a real system).
pub(crate) fn detect(root: &Path, proc_cgroup: &str) -> Option<CgroupLimit> {
    let mut best: Option<CgroupLimit> = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let found = if controllers.is_empty() {
            smallest(&root.join("sys/fs/cgroup"), path, "memory.max", 2)
        } else if controllers.split(',').any(|c| c == "memory") {
            smallest(
                &root.join("sys/fs/cgroup/memory"),
                path,
                "memory.limit_in_bytes",
                1,
            )
        } else {
            None
        };
        if let Some(found) = found {
            if best.as_ref().is_none_or(|b| found.bytes < b.bytes) {
                best = Some(found);
            }
        }
    }
    best
}

/// The smallest limit in `file_name` from `mount/path` up to `mount`.
fn smallest(mount: &Path, path: &str, file_name: &str, version: u8) -> Option<CgroupLimit> {
    let mut dir = mount.join(path.trim_start_matches('/'));
    let mut best: Option<CgroupLimit> = None;
    loop {
        let file = dir.join(file_name);
        if let Some(bytes) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| parse(&text, version))
        {
            if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                best = Some(CgroupLimit {
                    bytes,
                    file,
                    version,
                });
            }
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            return best;
        }
    }
}

fn parse(text: &str, version: u8) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let bytes: u64 = text.parse().ok()?;
    (version == 2 || bytes < V1_UNLIMITED).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v2_takes_the_smallest_limit_up_the_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "sys/fs/cgroup/system.slice/memory.max",
            "1073741824\n",
        );
        write(
            root.path(),
            "sys/fs/cgroup/system.slice/app.service/memory.max",
            "4294967296\n",
        );
        let limit = detect(root.path(), "0::/system.slice/app.service\n").unwrap();
        assert_eq!(limit.bytes, 1 << 30, "the parent's tighter limit wins");
        assert!(limit.file.ends_with("system.slice/memory.max"));
        assert_eq!(limit.version, 2);
    }

    #[test]
    fn v2_max_everywhere_is_no_limit() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "sys/fs/cgroup/user.slice/memory.max", "max\n");
        write(
            root.path(),
            "sys/fs/cgroup/user.slice/session/memory.max",
            "max\n",
        );
        assert_eq!(detect(root.path(), "0::/user.slice/session\n"), None);
    }

    #[test]
    fn v2_in_a_container_namespace_reads_the_mount_root() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "sys/fs/cgroup/memory.max", "536870912\n");
        assert_eq!(detect(root.path(), "0::/\n").unwrap().bytes, 512 << 20);
    }

    #[test]
    fn v1_reads_the_memory_controller_and_ignores_the_unlimited_value() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n";
        write(
            root.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            root.path(),
            "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "268435456\n",
        );
        let limit = detect(root.path(), cgroup).unwrap();
        assert_eq!((limit.bytes, limit.version), (256 << 20, 1));

        write(
            root.path(),
            "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(
            detect(root.path(), cgroup),
            None,
            "unlimited at every level"
        );
    }

    #[test]
    fn no_cgroup_files_means_no_limit() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(detect(root.path(), "0::/somewhere\n"), None);
        assert_eq!(detect(root.path(), ""), None);
    }
}
