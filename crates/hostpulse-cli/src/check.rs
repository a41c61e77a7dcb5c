//! `hostpulse check`: prints each step of the shared connection check; non-zero exit when a
//! step fails.

use anyhow::{Context, Result, bail};
use hostpulse_agent::diagnose::{self, Inputs};
use hostpulse_agent::paths;
use hostpulse_agent::portal::PortalOptions;
use hostpulse_agent::token::KeyringStore;

use hostpulse_agent::publisher::KafkaSettings;

use crate::Loaded;

pub async fn run(loaded: Loaded) -> Result<()> {
    let c = &loaded.checked;
    println!("ok    settings: {} (valid)", loaded.path.display());
    let store = KeyringStore::new();
    let steps = diagnose::run(Inputs {
        checked: c,
        store: std::sync::Arc::new(store),
        direct: c.broker.as_deref().map(|b| KafkaSettings::direct(c, b)),
        data_dir: paths::data_dir().context("no data directory for this user (is HOME set?)")?,
        options: PortalOptions::default(),
    })
    .await;
    for s in &steps {
        println!("{}  {}: {}", if s.ok { "ok  " } else { "FAIL" }, s.name, s.detail);
    }
    match steps.iter().find(|s| !s.ok) {
        Some(s) => bail!("check failed at: {}", s.name),
        None => Ok(()),
    }
}
