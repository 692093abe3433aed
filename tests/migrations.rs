//! The services share one PostgreSQL database and its `_sqlx_migrations` table, each applying
//! its own migrations and ignoring the others': two crates using one version number would make
//! whichever runs second refuse to start ("previously applied but has been modified").

use std::collections::BTreeMap;

#[test]
fn every_migration_version_belongs_to_one_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut owners: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let crates = std::fs::read_dir(root).unwrap_or_else(|error| panic!("{error}"));
    for entry in crates.flatten() {
        let migrations = entry.path().join("migrations");
        let Ok(files) = std::fs::read_dir(&migrations) else { continue };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some((version, _)) = name.split_once('_') else { continue };
            let Ok(version) = version.parse::<u64>() else { continue };
            let owner = entry.file_name().to_string_lossy().into_owned();
            owners.entry(version).or_default().push(format!("{owner}/{name}"));
        }
    }
    assert!(owners.len() >= 10, "found only {owners:?}");
    let shared: Vec<_> = owners.values().filter(|files| files.len() > 1).collect();
    assert!(shared.is_empty(), "versions used by more than one file: {shared:?}");
}
