//! Publishes N synthetic values as fast as HostPulse's pipeline allows (time-span buffer,
//! encoding, outbox, producer, acknowledgement) to a broker and prints the rate as JSON:
//!
//!   cargo run --release -p hostpulse-agent --example throughput -- 127.0.0.1:9092 topic 100000
//!
//! With `latency HZ SECONDS` after the topic instead of N, it samples at HZ for SECONDS with a
//! 100 ms span and prints the latency from sample to acknowledgement (p50, p99, max).
//! Used by `bench/compare.sh`.

use std::time::Duration;

use hostpulse_agent::burst;
use hostpulse_agent::outbox::Outbox;
use hostpulse_agent::publisher::{KafkaPublisher, KafkaSettings};
use hostpulse_core::settings::{OutboxLimits, Security, SecurityProtocol};
use hostpulse_core::stream::{StreamId, StreamWriter};
use hostpulse_core::wire::StreamProperties;

enum Mode {
    Burst(u64),
    Latency(u32, u32),
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (broker, topic, mode) = match &args[..] {
        [b, t, n] => (b, t, Mode::Burst(n.parse().expect("VALUES is a number"))),
        [b, t, l, hz, secs] if l == "latency" => {
            (b, t, Mode::Latency(hz.parse().expect("HZ is a number"), secs.parse().expect("SECONDS is a number")))
        }
        _ => {
            eprintln!("usage: throughput BROKER TOPIC VALUES | throughput BROKER TOPIC latency HZ SECONDS");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let settings = KafkaSettings {
            broker: broker.clone(),
            topic: topic.clone(),
            partitions: 1,
            security: Security { protocol: SecurityProtocol::Plaintext, sasl: None, ssl_ca_location: None },
            sasl_password: None,
            verify_hostname: true,
        };
        let publisher = KafkaPublisher::connect(&settings).await.expect("connect");
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&Outbox::path_in(dir.path(), "throughput"), OutboxLimits::default()).unwrap();
        let mut writer = StreamWriter::new(
            StreamId::parse("throughput").unwrap(),
            StreamProperties { name: Some("HostPulse throughput".into()), ..Default::default() },
            hostpulse_agent::agent::synthetic_definitions(),
        );
        let span = Duration::from_millis(100);
        match mode {
            Mode::Burst(values) => {
                let b = burst::publish(&publisher, &mut outbox, &mut writer, values, span).await.expect("burst");
                println!(
                    r#"{{"values": {}, "records": {}, "seconds": {}, "values_per_second": {}}}"#,
                    b.values,
                    b.records,
                    b.elapsed.as_secs_f64(),
                    b.values_per_second()
                );
            }
            Mode::Latency(hz, seconds) => {
                let interval = Duration::from_secs(1) / hz;
                let l = burst::latencies(&publisher, &mut outbox, &mut writer, interval, u64::from(hz * seconds), span)
                    .await
                    .expect("latency run");
                let ms =
                    |q: f64| l[((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1].as_secs_f64() * 1000.0;
                println!(
                    r#"{{"rate_hz": {hz}, "span_ms": 100, "records": {}, "p50_ms": {}, "p99_ms": {}, "max_ms": {}}}"#,
                    l.len(),
                    ms(0.5),
                    ms(0.99),
                    ms(1.0)
                );
            }
        }
    });
}
