//! The last good copy of each set, in `STATE_DIR/sets/NAME.json`: a restart
//! with no network enforces it, and the next fetch asks only for a change
//! (`If-None-Match`, `If-Modified-Since`).

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::daemon::runtime::{StateError, write_durably};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The source it was fetched from: a copy of another source is not
    /// this set's (the config changed).
    pub source: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Unix time of the last successful fetch (a change or a 304).
    pub fetched_unix: u64,
    pub nets: Vec<IpNet>,
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sets")
}

fn path(state_dir: &Path, name: &str) -> PathBuf {
    dir(state_dir).join(format!("{name}.json"))
}

/// The saved copy of `name` from `source`, if any; a file that does not
/// parse is set aside (the next fetch replaces it) and named in the warning.
pub fn load(state_dir: &Path, name: &str, source: &str) -> (Option<Cached>, Option<String>) {
    let p = path(state_dir, name);
    let Ok(bytes) = std::fs::read(&p) else {
        return (None, None);
    };
    match serde_json::from_slice::<Cached>(&bytes) {
        Ok(c) if c.source == source => (Some(c), None),
        Ok(_) => (None, None),
        Err(e) => {
            let _ = std::fs::rename(&p, p.with_extension("json.invalid"));
            (
                None,
                Some(format!(
                    "{} is not valid ({e}); set aside, the next fetch replaces it",
                    p.display()
                )),
            )
        }
    }
}

pub fn save(state_dir: &Path, name: &str, cached: &Cached) -> Result<(), StateError> {
    let p = path(state_dir, name);
    let bytes = serde_json::to_vec(cached).map_err(|e| StateError::Write {
        path: p.clone(),
        source: std::io::Error::other(e),
    })?;
    write_durably(&dir(state_dir), &p, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_survives_and_belongs_to_its_source() {
        let state = std::env::temp_dir().join(format!("fg-setcache-{}", std::process::id()));
        let c = Cached {
            source: "https://example.net/drop.txt".to_owned(),
            etag: Some("\"abc\"".to_owned()),
            last_modified: None,
            fetched_unix: 1000,
            nets: vec!["198.51.100.0/24".parse().expect("net")],
        };
        save(&state, "drop", &c).expect("save");
        assert_eq!(load(&state, "drop", &c.source), (Some(c.clone()), None));
        assert_eq!(
            load(&state, "drop", "file:///other"),
            (None, None),
            "another source's copy"
        );
        std::fs::write(path(&state, "drop"), b"{").expect("write");
        let (none, warning) = load(&state, "drop", &c.source);
        assert!(none.is_none() && warning.is_some_and(|w| w.contains("set aside")));
        std::fs::remove_dir_all(&state).expect("cleanup");
    }
}
