//! `flowcast-ingest`: sensor readings into Kafka.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("flowcast-ingest: not implemented yet")
}
