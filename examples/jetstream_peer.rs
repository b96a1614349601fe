//! The peer in `tests/load/ingest.sh`: durable publishes into a `nats-server` JetStream stream
//! (file storage), each batch of `BATCH` messages published and then every acknowledgement
//! awaited, from `CONNECTIONS` concurrent publishers for `SECONDS`. Prints one line:
//!
//! `PEER <events/s> <p50 batch ms> <p99 batch ms> <events>`
//!
//!   jetstream_peer NATS_URL BATCH CONNECTIONS SECONDS PAYLOAD_FILE
//!
//! The payload is the same event the appliance is sent, so both store the same bytes.

#![allow(clippy::print_stdout)] // Its output is the one line the load script reads.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, batch, connections, seconds, payload] = args.as_slice() else {
        anyhow::bail!("usage: jetstream_peer NATS_URL BATCH CONNECTIONS SECONDS PAYLOAD_FILE");
    };
    let batch: usize = batch.parse().context("BATCH")?;
    let connections: usize = connections.parse().context("CONNECTIONS")?;
    let run_for = Duration::from_secs(seconds.parse().context("SECONDS")?);
    let payload = bytes::Bytes::from(std::fs::read(payload).context("PAYLOAD_FILE")?);

    let client = async_nats::connect(url.as_str()).await?;
    let context = jetstream::new(client);
    let _ = context.delete_stream("INGEST_PEER").await;
    context
        .create_stream(stream::Config {
            name: "INGEST_PEER".into(),
            subjects: vec!["cdc.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;

    let started = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..connections {
        let context = context.clone();
        let payload = payload.clone();
        publishers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < run_for {
                let sent = Instant::now();
                let mut acks = Vec::with_capacity(batch);
                for _ in 0..batch {
                    acks.push(
                        context
                            .publish("cdc.MESHCENTRAL_EVENT", payload.clone())
                            .await?,
                    );
                }
                for ack in acks {
                    ack.await?;
                }
                latencies.push(sent.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for publisher in publishers {
        latencies.extend(publisher.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let events = latencies.len() * batch;
    println!(
        "PEER {:.0} {:.2} {:.2} {}",
        events as f64 / elapsed,
        percentile(0.5),
        percentile(0.99),
        events
    );
    Ok(())
}
