//! The refresher: fetches each set on its `refresh`, validates the whole
//! list, and hands a changed one to the engine (which applies it by
//! difference and saves it). A set that fails to fetch or parse keeps its
//! last good copy; it is tried again sooner (from 30 s, doubling up to its
//! refresh) and the failure is reported.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::{
    cache::{self, Cached},
    fetch::{self, Fetched},
    parse,
};
use crate::{
    config::SetSpec,
    control::{
        proto::{Request, Response, SetUpdate},
        server::{Call, forward},
    },
    daemon::runtime::unix_now,
};

const RETRY_FIRST: Duration = Duration::from_secs(30);

struct Tracked {
    spec: SetSpec,
    held: Option<Cached>,
    due: Instant,
    failures: u32,
}

impl Tracked {
    fn retry_in(&self) -> Duration {
        RETRY_FIRST
            .saturating_mul(1 << self.failures.saturating_sub(1).min(16))
            .min(self.spec.refresh)
    }
}

/// Runs until the daemon's loop goes away. `specs` follows the config's
/// `[[set]]`s; `now` asks for a refresh (of one set, or of all: None).
pub async fn run(
    mut specs: watch::Receiver<Vec<SetSpec>>,
    mut now: mpsc::Receiver<Option<String>>,
    state_dir: PathBuf,
    calls: mpsc::Sender<Call>,
) {
    let http = match fetch::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "sets: no HTTP client; sets keep their saved copies");
            return;
        }
    };
    let mut sets: BTreeMap<String, Tracked> = BTreeMap::new();
    loop {
        // Follow the config: new sets are fetched at once, gone ones dropped.
        let wanted = specs.borrow_and_update().clone();
        sets.retain(|name, _| wanted.iter().any(|s| &s.name == name));
        for spec in wanted {
            let source = spec.source.to_string();
            match sets.get_mut(&spec.name) {
                Some(t) if t.spec == spec => {}
                Some(t) => {
                    t.spec = spec;
                    t.due = Instant::now();
                }
                None => {
                    let (held, _) = cache::load(&state_dir, &spec.name, &source);
                    sets.insert(
                        spec.name.clone(),
                        Tracked {
                            spec,
                            held,
                            due: Instant::now(),
                            failures: 0,
                        },
                    );
                }
            }
        }
        let next = sets.values().map(|t| t.due).min();
        tokio::select! {
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let due: Vec<String> = sets
                    .iter()
                    .filter(|(_, t)| t.due <= Instant::now())
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in due {
                    if let Some(t) = sets.get_mut(&name)
                        && !refresh(t, &http, &calls).await
                    {
                        return;
                    }
                }
            }
            asked = now.recv() => {
                let Some(which) = asked else { return };
                for (name, t) in &mut sets {
                    if which.as_deref().is_none_or(|w| w == name) {
                        t.due = Instant::now();
                    }
                }
            }
            changed = specs.changed() => if changed.is_err() { return },
        }
    }
}

/// One refresh of `t`; false when the engine is gone.
async fn refresh(t: &mut Tracked, http: &reqwest::Client, calls: &mpsc::Sender<Call>) -> bool {
    let name = t.spec.name.clone();
    let fetched_unix = unix_now();
    let update = match fetch::fetch(http, &t.spec, t.held.as_ref()).await {
        Ok(Fetched::Unchanged) => SetUpdate::Unchanged { name, fetched_unix },
        Ok(Fetched::Body {
            text,
            etag,
            last_modified,
        }) => match parsed(&t.spec, &text) {
            Ok(nets) => SetUpdate::Loaded {
                name,
                cached: Cached {
                    source: t.spec.source.to_string(),
                    etag,
                    last_modified,
                    fetched_unix,
                    nets,
                },
            },
            Err(error) => SetUpdate::Failed { name, error },
        },
        Err(e) => SetUpdate::Failed {
            name,
            error: e.to_string(),
        },
    };
    let loaded = match &update {
        SetUpdate::Loaded { cached, .. } => Some(cached.clone()),
        _ => None,
    };
    let failed = matches!(update, SetUpdate::Failed { .. });
    if calls.is_closed() {
        return false;
    }
    let ok = matches!(
        forward(calls, Request::Set { update }).await,
        Response::Ok(_)
    );
    if ok && !failed {
        if let Some(c) = loaded {
            t.held = Some(c);
        } else if let Some(h) = &mut t.held {
            h.fetched_unix = fetched_unix;
        }
        t.failures = 0;
        t.due = Instant::now() + t.spec.refresh;
    } else {
        t.failures = t.failures.saturating_add(1);
        t.due = Instant::now() + t.retry_in();
    }
    true
}

/// The whole list checked, or the first problem with its line.
fn parsed(spec: &SetSpec, text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    let format = match spec.format.as_deref() {
        Some(f) => Some(
            f.parse::<parse::Format>()
                .map_err(|e| format!("format {f:?}: {e}"))?,
        ),
        None => None,
    };
    parse::parse(text, format, spec.services.as_deref())
        .map(|p| p.nets)
        .map_err(|e| format!("{}: {e}", spec.source))
}
