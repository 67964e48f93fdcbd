//! Naming a network namespace in a configuration, and doing work inside it.
//!
//! Namespaces belong to threads: a thread that has entered one opens its sockets and starts its
//! child processes there, whatever the rest of the process does. So work for another namespace
//! runs on a thread of its own that enters it first, and the rest of the rig never moves.

use std::fs::File;
use std::path::{Path, PathBuf};

/// The file of a network namespace named in a configuration: a bare name is one that `ip netns`
/// made (`/run/netns/<name>`), anything with a `/` is the path of a namespace file (such as
/// `/proc/<pid>/ns/net`).
pub fn namespace_path(namespace: &str) -> PathBuf {
    if namespace.contains('/') {
        PathBuf::from(namespace)
    } else {
        Path::new(rtnetlink::NETNS_PATH).join(namespace)
    }
}

/// How errors and messages name a namespace: "the rig's namespace" when there is none.
pub(crate) fn describe_namespace(namespace: Option<&Path>) -> String {
    match namespace {
        Some(path) => format!("the network namespace {}", path.display()),
        None => "the rig's network namespace".to_string(),
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub(crate) fn enter(path: &Path) -> std::result::Result<(), String> {
    let file = File::open(path).map_err(|error| {
        format!(
            "cannot open the network namespace {}: {error} (check the name with `ip netns list`)",
            path.display()
        )
    })?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|error| format!("cannot enter the network namespace {}: {error}", path.display()))
}

/// Runs `job` inside the network namespace at `namespace` (on a short-lived thread that enters
/// it), or right here when `namespace` is `None`.
pub(crate) fn run_inside<T: Send + 'static>(
    namespace: Option<&Path>,
    job: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> std::result::Result<T, String> {
    let Some(path) = namespace else {
        return job();
    };
    let inside = path.to_path_buf();
    std::thread::Builder::new()
        .name("posrig-netns".to_string())
        .spawn(move || {
            enter(&inside)?;
            job()
        })
        .map_err(|error| format!("could not start a thread for {}: {error}", path.display()))?
        .join()
        .unwrap_or_else(|_| Err("the thread inside the network namespace panicked".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_live_under_run_netns_and_paths_stay_paths() {
        assert_eq!(namespace_path("lab1"), PathBuf::from("/run/netns/lab1"));
        assert_eq!(namespace_path("/proc/1/ns/net"), PathBuf::from("/proc/1/ns/net"));
    }

    #[test]
    fn a_missing_namespace_is_named_in_the_error() {
        let path = namespace_path("posrig-no-such-namespace");
        let error = run_inside(Some(&path), || Ok(())).expect_err("the namespace does not exist");
        assert!(error.contains("/run/netns/posrig-no-such-namespace"), "{error}");
        assert!(error.contains("ip netns list"), "{error}");
    }
}
