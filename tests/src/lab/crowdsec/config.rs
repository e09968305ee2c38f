//! The LAPI's config: the package's config edited for the lab, and the check
//! that `cscli` reads it back as meant.

use std::{net::SocketAddr, path::Path};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::yaml::{yaml_remove, yaml_set};
use super::{CSCLI, Lapi, PACKAGE_CONFIG};
use crate::lab::sh;

impl Lapi {
    /// Makes sure the written config says what it must (the line editing of
    /// the package's config worked): `cscli config show -o json`.
    pub(super) fn check_config(&self, db: &Path, credentials: &Path) -> Result<()> {
        let config = self.config.to_string_lossy();
        let out = sh(CSCLI, &["-c", &config, "config", "show", "-o", "json"])?;
        let v: Value = serde_json::from_str(&out).context("parsing `cscli config show`")?;
        let listen = self.listen.to_string();
        let checks: [(&str, Value); 5] = [
            ("/DbConfig/DbPath", db.to_string_lossy().into()),
            ("/API/Server/ListenURI", listen.into()),
            ("/API/Server/OnlineClient", Value::Null),
            (
                "/API/Client/CredentialsFilePath",
                credentials.to_string_lossy().into(),
            ),
            ("/Prometheus/Enabled", false.into()),
        ];
        for (pointer, want) in checks {
            let got = v.pointer(pointer).unwrap_or(&Value::Null);
            if *got != want {
                let text = std::fs::read_to_string(&self.config).unwrap_or_default();
                bail!(
                    "the lab's crowdsec config has {pointer} = {got}, not {want}; \
                     {PACKAGE_CONFIG} may have a layout this editor does not know\n{text}"
                );
            }
        }
        Ok(())
    }
}

/// The package's config with the lab's paths, address and settings.
pub(super) fn lab_config(
    package: &str,
    root: &Path,
    data: &Path,
    db: &Path,
    credentials: &Path,
    listen: SocketAddr,
) -> Result<String> {
    let path = |p: &Path| quote(&format!("{}", p.display()));
    let dir_path = |p: &Path| quote(&format!("{}/", p.display()));
    let sets = [
        ("common.daemonize", "false".to_owned()),
        // stdout and stderr go to the log file (so do early fatal errors).
        ("common.log_media", quote("stdout")),
        ("common.log_dir", dir_path(root)),
        ("common.working_dir", path(root)),
        ("config_paths.data_dir", dir_path(data)),
        ("db_config.type", quote("sqlite")),
        ("db_config.db_path", path(db)),
        ("db_config.use_wal", "true".to_owned()),
        ("api.client.credentials_path", path(credentials)),
        ("api.server.listen_uri", quote(&listen.to_string())),
        // Several LAPIs may share a namespace: no fixed metrics port.
        ("prometheus.enabled", "false".to_owned()),
    ];
    let mut text = yaml_remove(package, "api.server.online_client");
    for (key, value) in sets {
        text = yaml_set(&text, key, &value);
    }
    Ok(text)
}

/// A double-quoted YAML scalar.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
