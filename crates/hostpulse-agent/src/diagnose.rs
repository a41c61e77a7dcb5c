//! The connection check shared by `hostpulse check` and the app's "Test connection": every step
//! from settings to a broker that accepts our login and has the topic, each with its result.
//! Stops at the first failing step.

use hostpulse_core::settings::Checked;
use serde::Serialize;

use crate::portal::{Portal, PortalOptions, QuixTarget};
use crate::publisher::{KafkaPublisher, KafkaSettings};
use crate::token::{self, SecretStore, TOKEN_ENV};

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What was checked ("token", "workspace", ...).
    pub name: String,
    /// Whether it worked.
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
}

/// Runs the steps for `checked` (the settings the agent runs with: file, environment and flags):
/// direct mode tries the broker, Quix mode the token, the Portal and then the broker. The last
/// step is the first failure, if any.
pub async fn run(
    checked: &Checked,
    store: std::sync::Arc<dyn SecretStore>,
    data_dir: std::path::PathBuf,
    options: PortalOptions,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut step = |name: &str, r: Result<String, String>| {
        let ok = r.is_ok();
        steps.push(Step { name: name.into(), ok, detail: r.unwrap_or_else(|e| e) });
        ok
    };
    let c = checked;
    step("format", Ok(format!("{} ({})", c.format.id(), c.format.describe())));
    if let Some(broker) = &c.broker {
        let kafka = KafkaSettings::direct(c, broker);
        step("mode", Ok(format!("direct broker {}, topic `{}`", kafka.broker, c.topic)));
        let r = KafkaPublisher::connect(&kafka).await;
        step(
            "broker login and topic",
            r.map(|p| format!("connected; topic `{}` is on the broker", p.topic())).map_err(|e| e.to_string()),
        );
        return steps;
    }
    step("mode", Ok(format!("Quix, Portal {}", c.portal_url)));
    let token = match token::resolve_blocking(store).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            step(
                "token",
                Err(format!(
                    "no streaming token: store one (`hostpulse token set` or the app's settings) or set {TOKEN_ENV}"
                )),
            );
            return steps;
        }
        Err(e) => {
            step("token", Err(e.to_string()));
            return steps;
        }
    };
    let source = token.1;
    if !step("token", Ok(format!("from {source}"))) {
        return steps;
    }
    let portal = match Portal::new(&c.portal_url, token.0, source, options) {
        Ok(p) => p,
        Err(e) => {
            step("portal", Err(e.to_string()));
            return steps;
        }
    };
    let workspace = match &c.workspace_id {
        Some(ws) => ws.clone(),
        None => match portal.discover_workspace().await {
            Ok(ws) => ws,
            Err(e) => {
                step("workspace", Err(e.to_string()));
                return steps;
            }
        },
    };
    step("workspace", Ok(workspace.clone()));
    let kafka = match portal.broker_settings(&workspace, &data_dir, c.tls_verify_hostname).await {
        Ok(k) => k,
        Err(e) => {
            step("broker settings", Err(e.to_string()));
            return steps;
        }
    };
    let get = |k: &str| kafka.get(k).cloned().unwrap_or_default();
    step(
        "broker settings",
        Ok(format!("{} via {} {}", get("bootstrap.servers"), get("security.protocol"), get("sasl.mechanism"))
            .trim()
            .to_owned()),
    );
    let topic_id = match portal.ensure_topic(&workspace, &c.topic).await {
        Ok(t) => t,
        Err(e) => {
            step("topic", Err(e.to_string()));
            return steps;
        }
    };
    step("topic", Ok(format!("`{}` is Ready as Kafka topic `{topic_id}`", c.topic)));
    let target = QuixTarget { workspace_id: workspace, topic_id, kafka };
    let r = KafkaPublisher::connect_quix(&target).await;
    step(
        "broker login",
        r.map(|p| format!("connected; topic `{}` is on the broker", p.topic())).map_err(|e| e.to_string()),
    );
    steps
}
