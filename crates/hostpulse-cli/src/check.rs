//! `hostpulse check`: prints each step of the connection check the app's "Test connection" runs
//! too (same function, same checked settings); non-zero exit when a step fails.

use std::sync::Arc;

use anyhow::{Result, bail};
use hostpulse_agent::assembly::Launch;
use hostpulse_agent::diagnose;
use hostpulse_agent::portal::PortalOptions;
use hostpulse_agent::token::KeyringStore;

pub async fn run(launch: Launch) -> Result<()> {
    println!("ok    settings: {} (valid)", launch.settings_path.display());
    let steps = diagnose::run(
        &launch.checked,
        Arc::new(KeyringStore::new()),
        launch.data_dir.clone(),
        PortalOptions::default(),
    )
    .await;
    for s in &steps {
        println!("{}  {}: {}", if s.ok { "ok  " } else { "FAIL" }, s.name, s.detail);
    }
    match steps.iter().find(|s| !s.ok) {
        Some(s) => bail!("check failed at: {}", s.name),
        None => Ok(()),
    }
}
