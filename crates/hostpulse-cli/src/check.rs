//! `hostpulse check`: every step from settings to a broker that accepts our login and has the
//! topic, each printed with its result; stops at the first failure and exits non-zero.

use anyhow::{Result, bail};
use hostpulse_agent::portal::Portal;
use hostpulse_agent::publisher::KafkaPublisher;
use hostpulse_agent::token::KeyringStore;

use crate::{Loaded, kafka_settings, quix_connector, require_token};

fn ok(step: &str, detail: impl std::fmt::Display) {
    println!("ok    {step}: {detail}");
}

fn fail(step: &str, e: impl std::fmt::Display) -> Result<()> {
    println!("FAIL  {step}: {e}");
    bail!("check failed at: {step}")
}

pub async fn run(loaded: Loaded) -> Result<()> {
    let c = &loaded.checked;
    ok("settings", format!("{} (valid)", loaded.path.display()));
    if let Some(broker) = &c.broker {
        ok("mode", format!("direct broker {broker}, topic `{}`", c.topic));
        return match KafkaPublisher::connect(&kafka_settings(c, broker)).await {
            Ok(p) => {
                ok("broker login and topic", format!("connected; topic `{}` is on the broker", p.topic()));
                Ok(())
            }
            Err(e) => fail("broker login and topic", e),
        };
    }
    ok("mode", format!("Quix, Portal {}", c.portal_url));
    let store = KeyringStore::new();
    let (token, source) = match require_token(&store) {
        Ok(t) => t,
        Err(e) => return fail("token", e),
    };
    ok("token", format!("from {source}"));
    let connector = quix_connector(c)?;
    let portal = match Portal::new(&connector.portal_url, token, source, connector.options.clone()) {
        Ok(p) => p,
        Err(e) => return fail("portal", e),
    };
    let workspace = match &c.workspace_id {
        Some(ws) => ws.clone(),
        None => match portal.discover_workspace().await {
            Ok(ws) => ws,
            Err(e) => return fail("workspace", e),
        },
    };
    ok("workspace", &workspace);
    let kafka = match portal.broker_settings(&workspace, &connector.data_dir, c.tls_verify_hostname).await {
        Ok(k) => k,
        Err(e) => return fail("broker settings", e),
    };
    let describe = |k: &str| kafka.get(k).map(String::as_str).unwrap_or("-").to_owned();
    ok(
        "broker settings",
        format!(
            "{} via {} {}",
            describe("bootstrap.servers"),
            describe("security.protocol"),
            kafka.get("sasl.mechanism").map(String::as_str).unwrap_or("")
        ),
    );
    let topic_id = match portal.ensure_topic(&workspace, &c.topic).await {
        Ok(t) => t,
        Err(e) => return fail("topic", e),
    };
    ok("topic", format!("`{}` is Ready as Kafka topic `{topic_id}`", c.topic));
    let target = hostpulse_agent::portal::QuixTarget { workspace_id: workspace, topic_id, kafka };
    match KafkaPublisher::connect_quix(&target).await {
        Ok(p) => ok("broker login", format!("connected; topic `{}` is on the broker", p.topic())),
        Err(e) => return fail("broker login", e),
    }
    Ok(())
}
