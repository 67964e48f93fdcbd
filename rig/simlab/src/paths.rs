//! Where the lab finds its programs and fixtures.

use std::path::PathBuf;

/// The workspace root (the folder with `fixtures/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A file under `fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    workspace_root().join("fixtures").join(relative)
}

/// The path of one of the workspace's programs (`acqhost`, `posterm`): in `POSRIG_BIN_DIR` when
/// set, otherwise next to the running executable's target folder (`target/<profile>/`).
pub fn program(name: &str) -> Result<PathBuf, String> {
    let dir = match std::env::var_os("POSRIG_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot locate the running program: {e}"))?;
            let parent = exe.parent().ok_or("the running program has no folder")?;
            if parent.ends_with("deps") {
                parent.parent().unwrap_or(parent).to_path_buf()
            } else {
                parent.to_path_buf()
            }
        }
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is not built: run `cargo build --workspace --bins` (or `cargo xtask test`) first",
            path.display()
        ))
    }
}
