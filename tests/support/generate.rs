//! Many distinct plugins without many builds: the `fixture-generated` library copied as
//! `libgen_NNNN.so` is plugin and component `gen-NNNN`.

use std::path::Path;

use crate::build::library;

/// The name of generated plugin `index` (and of its one component).
pub fn generated_name(index: usize) -> String {
    format!("gen-{index:04}")
}

/// Writes `count` generated plugins into `dir` (created if missing), each a copy of the
/// built `fixture-generated` library: distinct files, distinct names.
pub fn generate_plugins(dir: &Path, count: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let source = library("fixture-generated");
    for index in 0..count {
        let file = format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            generated_name(index).replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        );
        std::fs::copy(&source, dir.join(file))?;
    }
    Ok(())
}
