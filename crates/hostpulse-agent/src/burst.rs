//! A burst of synthetic values published as fast as the pipeline allows, through the same steps
//! as the agent: rows stamped now, grouped by the time-span buffer, encoded, written to the
//! outbox, handed to the producer, removed when acknowledged. For throughput benchmarks
//! (`cargo bench`, `bench/compare.sh`), never used by the agent itself.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hostpulse_core::buffer::{BufferConfig, TimespanBuffer};
use hostpulse_core::sample::{CPU_LOAD, Row};
use hostpulse_core::stream::StreamWriter;
use hostpulse_core::wire::{Record, StreamEndType};

use crate::agent::MAX_IN_FLIGHT;
use crate::outbox::Outbox;
use crate::publisher::{PublishError, Publisher};
use crate::sampler::{SEQUENCE, now_ns};

/// What a burst did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Values published and acknowledged.
    pub values: u64,
    /// Records they went out in.
    pub records: u64,
    /// From the first value to the last acknowledgement.
    pub elapsed: Duration,
}

impl Burst {
    /// Acknowledged values per second.
    pub fn values_per_second(&self) -> f64 {
        self.values as f64 / self.elapsed.as_secs_f64()
    }
}

/// Publishes `values` rows (`CPU_Load` and `Sequence`) as fast as possible with a time-span
/// buffer of `span`, ends the stream, and waits for every acknowledgement.
pub async fn publish(
    publisher: &dyn Publisher,
    outbox: &mut Outbox,
    writer: &mut StreamWriter,
    values: u64,
    span: Duration,
) -> Result<Burst, String> {
    let start = Instant::now();
    // At full speed the span holds more rows than a Kafka message may carry: cap the record.
    let packet_size = Some(hostpulse_core::settings::MAX_PACKET_SIZE as usize);
    let mut buffer = TimespanBuffer::new(BufferConfig { time_span: Some(span), packet_size, ..Default::default() });
    let mut in_flight = FuturesUnordered::new();
    let mut records = 0u64;
    let mut send = async |record: Record, in_flight: &mut FuturesUnordered<_>| -> Result<(), String> {
        let seq = outbox.append(&record, now_ns() / 1_000_000).map_err(|e| e.to_string())?.seq;
        records += 1;
        loop {
            match publisher.send(&record) {
                Ok(delivery) => {
                    in_flight.push(async move { (seq, delivery.await) });
                    break;
                }
                Err(PublishError::QueueFull) => settle(in_flight.next().await, outbox)?,
                Err(e) => return Err(e.to_string()),
            }
        }
        while in_flight.len() >= MAX_IN_FLIGHT {
            settle(in_flight.next().await, outbox)?;
        }
        Ok(())
    };
    for i in 0..values {
        let row = Row::new(now_ns()).with_value(CPU_LOAD, (i % 1000) as f64 / 10.0).with_value(SEQUENCE, i as f64);
        if let Some(rows) = buffer.push(row, start.elapsed()) {
            for record in writer.data(&rows, now_ns()) {
                send(record, &mut in_flight).await?;
            }
        }
    }
    let rest = buffer.flush().unwrap_or_default();
    for record in writer.close(&rest, StreamEndType::Closed, now_ns()) {
        send(record, &mut in_flight).await?;
    }
    while let Some(done) = in_flight.next().await {
        settle(Some(done), outbox)?;
    }
    Ok(Burst { values, records, elapsed: start.elapsed() })
}

fn settle(done: Option<(i64, Result<(), crate::publisher::DeliveryError>)>, outbox: &mut Outbox) -> Result<(), String> {
    match done {
        Some((seq, Ok(()))) => outbox.remove(seq).map(drop).map_err(|e| e.to_string()),
        Some((_, Err(e))) => Err(e.to_string()),
        None => Ok(()),
    }
}

/// Publishes `count` samples one `interval` apart with a time-span buffer of `span`, as the agent
/// does, and returns for every data record the time from its first (longest waiting) sample to
/// the broker's acknowledgement, sorted.
pub async fn latencies(
    publisher: &dyn Publisher,
    outbox: &mut Outbox,
    writer: &mut StreamWriter,
    interval: Duration,
    count: u64,
    span: Duration,
) -> Result<Vec<Duration>, String> {
    let origin = tokio::time::Instant::now();
    let mut buffer = TimespanBuffer::new(BufferConfig { time_span: Some(span), ..Default::default() });
    let mut taken_at = std::collections::HashMap::new();
    let mut in_flight: FuturesUnordered<Timed> = FuturesUnordered::new();
    let mut latencies = Vec::new();
    let mut next_tick = origin + interval;
    let mut taken = 0;
    loop {
        let deadline = buffer.deadline().map(|d| origin + d);
        if taken == count && deadline.is_none() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_tick), if taken < count => {
                let row = Row::new(now_ns()).with_value(CPU_LOAD, (taken % 1000) as f64 / 10.0);
                taken_at.insert(row.timestamp_ns, tokio::time::Instant::now());
                if let Some(rows) = buffer.push(row, origin.elapsed()) {
                    send_timed(rows, &mut taken_at, writer, outbox, publisher, &mut in_flight)?;
                }
                taken += 1;
                next_tick += interval;
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                if let Some(rows) = buffer.poll(origin.elapsed()) {
                    send_timed(rows, &mut taken_at, writer, outbox, publisher, &mut in_flight)?;
                }
            }
            Some((seq, since, result)) = in_flight.next(), if !in_flight.is_empty() => {
                result.map_err(|e| e.to_string())?;
                outbox.remove(seq).map_err(|e| e.to_string())?;
                if let Some(t) = since {
                    latencies.push(t.elapsed());
                }
            }
        }
    }
    latencies.sort();
    Ok(latencies)
}

/// A delivery report with its outbox position and, for data, when its first sample was taken.
type Timed = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (i64, Option<tokio::time::Instant>, Result<(), crate::publisher::DeliveryError>),
            > + Send,
    >,
>;

fn send_timed(
    rows: Vec<Row>,
    taken_at: &mut std::collections::HashMap<i64, tokio::time::Instant>,
    writer: &mut StreamWriter,
    outbox: &mut Outbox,
    publisher: &dyn Publisher,
    in_flight: &mut FuturesUnordered<Timed>,
) -> Result<(), String> {
    let first = taken_at.remove(&rows[0].timestamp_ns);
    for row in &rows[1..] {
        taken_at.remove(&row.timestamp_ns);
    }
    for record in writer.data(&rows, now_ns()) {
        let seq = outbox.append(&record, now_ns() / 1_000_000).map_err(|e| e.to_string())?.seq;
        let since = (record.model == hostpulse_core::wire::ModelKey::ParameterData).then_some(first).flatten();
        let delivery = publisher.send(&record).map_err(|e| e.to_string())?;
        in_flight.push(Box::pin(async move { (seq, since, delivery.await) }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publisher::Delivery;
    use hostpulse_core::settings::OutboxLimits;
    use hostpulse_core::stream::StreamId;
    use hostpulse_core::wire::{ModelKey, StreamProperties};
    use std::sync::{Arc, Mutex};

    /// Acknowledges every record after 5 ms and remembers it.
    #[derive(Default)]
    struct Quick(Arc<Mutex<Vec<Record>>>);

    impl Publisher for Quick {
        fn send(&self, record: &Record) -> Result<Delivery, PublishError> {
            self.0.lock().unwrap().push(record.clone());
            Ok(Box::pin(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            }))
        }
    }

    fn writer() -> StreamWriter {
        StreamWriter::new(
            StreamId::parse("b").unwrap(),
            StreamProperties::default(),
            crate::agent::synthetic_definitions(),
        )
    }

    #[tokio::test]
    async fn a_burst_publishes_every_value_once_and_leaves_the_outbox_empty() {
        let quick = Quick::default();
        let mut outbox = Outbox::in_memory(OutboxLimits::default());
        let b = publish(&quick, &mut outbox, &mut writer(), 5000, Duration::from_millis(100)).await.unwrap();
        let sent = quick.0.lock().unwrap();
        let seqs: Vec<String> = sent
            .iter()
            .filter(|r| r.model == ModelKey::ParameterData)
            .flat_map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
                v["V"]["NumericValues"]["Sequence"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(seqs, (0..5000).map(|i| format!("{i}.0")).collect::<Vec<_>>());
        assert_eq!(b.records, sent.len() as u64);
        assert_eq!(sent.last().unwrap().model, ModelKey::StreamEnd);
        assert!(outbox.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn latency_runs_from_the_first_sample_of_a_record_to_its_acknowledgement() {
        let quick = Quick::default();
        let mut outbox = Outbox::in_memory(OutboxLimits::default());
        let (interval, span) = (Duration::from_millis(50), Duration::from_millis(100));
        let l = latencies(&quick, &mut outbox, &mut writer(), interval, 20, span).await.unwrap();
        assert!(!l.is_empty());
        // A record leaves one span after its first sample and is acknowledged 5 ms later.
        for d in &l {
            assert!((Duration::from_millis(100)..=Duration::from_millis(106)).contains(d), "{l:?}");
        }
        assert!(outbox.is_empty());
    }
}
