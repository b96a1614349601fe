//! The event log on an external Kafka cluster (feature `kafka`), through the pure-Rust `rskafka`.
//!
//! Layout in the cluster:
//! - Each stream `(tenant, topic)` is a Kafka topic `{prefix}{tenant}.{topic}` with one partition,
//!   so the stream's offsets are Kafka's own: consecutive, never reused, kept by the broker after
//!   deletions. Tenant ids have no dots, so the name parses back unambiguously.
//! - With `openframe_tenant` set, that tenant's streams are OpenFrame's own topic names without a
//!   prefix (`meshcentral.mongodb.events`, ...): an existing OpenFrame Kafka + Debezium deployment
//!   feeds the appliance as that tenant. Only partition 0 of such a topic is read.
//! - Consumer offsets live in the topic `{prefix}_offsets` (a name no stream can have: tenant ids
//!   start with a letter or digit), one record per commit, keyed `tenant/topic/group`. `rskafka`
//!   has no consumer-group API, and this keeps the positions in the cluster with the data. The
//!   adapter compacts that topic itself (rewrites the latest offsets, deletes the older records),
//!   so it does not depend on the broker's `cleanup.policy`.
//!
//! Contract differences from the embedded log, both from Kafka itself:
//! - Header names are unique within a record (Kafka clients keep headers in a map); a batch that
//!   repeats one is refused. Headers come back in name order.
//! - The end a new [`EventLog::watch`] starts at is the one this process last saw; records that
//!   other producers append are noticed by a poll every [`POLL_INTERVAL`].
//!
//! The broker is reached lazily: opening never fails for an unreachable cluster. Calls then fail
//! with [`LogError::Unavailable`] after the configured timeout, and [`Engine::check`] (readiness)
//! says what is wrong, until the cluster answers again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rskafka::BackoffConfig;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use tokio::sync::{OnceCell, watch};

use crate::error::{EngineFailure, LogError};
use crate::log::{
    Appended, EventLog, LogRecord, NewRecord, RetentionPolicy, RetentionReport, StreamBounds,
    validate_batch,
};
use crate::model::{Clock, GroupId, Offset, TenantId, Topic, UnixMillis};
use crate::{Engine, KafkaSasl, KafkaSettings, SaslMechanism};

const ENGINE: &str = "kafka";
/// How often watched streams are polled for records other producers appended.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How many bytes one fetch asks for at most: more than one record of the largest size.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// How long a fetch may wait for data. Only ranges below the high watermark are fetched, so it
/// never waits in practice; some brokers (tansu 0.6) answer a wait of 0 with no data at all.
const FETCH_WAIT_MS: i32 = 50;
/// How long the topic list is reused before asking the cluster again.
const TOPIC_LIST_TTL: Duration = Duration::from_secs(1);

type StreamKey = (TenantId, Topic);
type GroupKey = (TenantId, Topic, GroupId);

/// What this process knows of a stream's extent; `bytes` is exact for `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    start: u64,
    end: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Stream {
    end: watch::Sender<Offset>,
    extent: Option<Extent>,
}

/// The event log on Kafka. See the module docs for the layout.
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    settings: KafkaSettings,
    clock: Arc<dyn Clock>,
    client: OnceCell<Client>,
    partitions: tokio::sync::Mutex<HashMap<String, Arc<PartitionClient>>>,
    streams: Mutex<HashMap<StreamKey, Stream>>,
    topics: Mutex<Option<(Instant, BTreeSet<String>)>>,
    /// The committed offsets, loaded from the offsets topic on first use. The lock also orders
    /// commits, so the offsets topic's last record for a key is the latest commit.
    offsets: tokio::sync::Mutex<Option<OffsetBook>>,
    closed: std::sync::atomic::AtomicBool,
    /// Set once the broker failed a DeleteRecords: retention then only moves the logical start.
    deletes_unsupported: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct OffsetBook {
    latest: BTreeMap<GroupKey, Offset>,
    /// Where retention moved each stream's start. Kept here rather than trusted to the broker:
    /// not every Kafka-protocol broker implements DeleteRecords (tansu 0.6 does not).
    starts: BTreeMap<StreamKey, u64>,
    /// Records in the offsets topic from its start; compacted when far above `latest.len()`.
    records: u64,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.settings.brokers)
            .field("topic_prefix", &self.inner.settings.topic_prefix)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Prepares the connector; the cluster is contacted on first use, not here.
    pub fn open(settings: KafkaSettings, clock: Arc<dyn Clock>) -> Self {
        let inner = Arc::new(Inner {
            settings,
            clock,
            client: OnceCell::new(),
            partitions: tokio::sync::Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            topics: Mutex::new(None),
            offsets: tokio::sync::Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
            deletes_unsupported: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(poll_watched(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// The Kafka topic that holds a stream.
    pub fn topic_name(&self, tenant: &TenantId, topic: &Topic) -> String {
        self.inner.topic_name(tenant, topic)
    }
}

impl Inner {
    fn failure(operation: &'static str, error: impl Into<crate::error::BoxError>) -> EngineFailure {
        EngineFailure::new(ENGINE, operation, error)
    }

    fn topic_name(&self, tenant: &TenantId, topic: &Topic) -> String {
        if self.settings.openframe_tenant.as_ref() == Some(tenant) {
            topic.as_str().to_owned()
        } else {
            format!("{}{}.{}", self.settings.topic_prefix, tenant, topic)
        }
    }

    fn offsets_topic(&self) -> String {
        format!("{}_offsets", self.settings.topic_prefix)
    }

    fn ensure_open(&self, operation: &'static str) -> Result<(), EngineFailure> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Self::failure(operation, "the Kafka connector is closed"));
        }
        Ok(())
    }

    async fn client(&self, operation: &'static str) -> Result<&Client, EngineFailure> {
        self.ensure_open(operation)?;
        let settings = &self.settings;
        let connect = self.client.get_or_try_init(|| async {
            let brokers: Vec<String> = settings
                .brokers
                .split(',')
                .map(|broker| broker.trim().to_owned())
                .filter(|broker| !broker.is_empty())
                .collect();
            let mut builder = ClientBuilder::new(brokers)
                .client_id("openframe-appliance")
                .max_message_size(2 * FETCH_BYTES as usize)
                .backoff_config(backoff(settings.timeout));
            if let Some(sasl) = &settings.sasl {
                builder = builder.sasl_config(sasl_config(sasl)?);
            }
            builder.build().await.map_err(|error| {
                let text = error.to_string().to_ascii_lowercase();
                let hint = if text.contains("sasl") || text.contains("authenticat") {
                    "; check [storage.kafka] sasl_mechanism, username and password_file"
                } else {
                    ""
                };
                format!(
                    "cannot reach the Kafka brokers {}: {error}{hint}",
                    settings.brokers
                )
            })
        });
        // A little longer than the retries' own deadline, so their last error is what is said.
        let patience = settings.timeout + Duration::from_millis(500);
        match tokio::time::timeout(patience, connect).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(why)) => Err(Self::failure(operation, why)),
            Err(_) => Err(Self::failure(
                operation,
                format!(
                    "no answer from the Kafka brokers {} within {} ms",
                    settings.brokers,
                    settings.timeout.as_millis()
                ),
            )),
        }
    }

    /// The partition client of an existing topic; `None` if the topic does not exist.
    async fn partition(
        &self,
        name: &str,
        operation: &'static str,
    ) -> Result<Option<Arc<PartitionClient>>, EngineFailure> {
        if let Some(found) = self.partitions.lock().await.get(name) {
            return Ok(Some(found.clone()));
        }
        // Ask the topic list first: a metadata request for a missing topic makes many brokers
        // create it (auto.create.topics.enable), and reading must not create anything.
        if !self.topic_names(false).await?.contains(name)
            && !self.topic_names(true).await?.contains(name)
        {
            return Ok(None);
        }
        let client = self.client(operation).await?;
        let created = client
            .partition_client(name, 0, UnknownTopicHandling::Error)
            .await;
        match created {
            Ok(partition) => {
                let partition = Arc::new(partition);
                self.partitions
                    .lock()
                    .await
                    .insert(name.to_owned(), partition.clone());
                Ok(Some(partition))
            }
            Err(error) if is_protocol(&error, ProtocolError::UnknownTopicOrPartition) => Ok(None),
            Err(error) => Err(Self::failure(operation, error)),
        }
    }

    /// The partition client of a topic, creating the topic (one partition) if it is missing.
    async fn partition_or_create(
        &self,
        name: &str,
        operation: &'static str,
    ) -> Result<Arc<PartitionClient>, EngineFailure> {
        if let Some(found) = self.partition(name, operation).await? {
            return Ok(found);
        }
        let client = self.client(operation).await?;
        let controller = client
            .controller_client()
            .map_err(|error| Self::failure(operation, error))?;
        let timeout_ms = i32::try_from(self.settings.timeout.as_millis()).unwrap_or(i32::MAX);
        match controller
            .create_topic(name, 1, self.settings.replication_factor, timeout_ms)
            .await
        {
            Ok(()) => {}
            Err(error) if is_protocol(&error, ProtocolError::TopicAlreadyExists) => {}
            Err(error) => {
                return Err(Self::failure(
                    operation,
                    format!("cannot create topic {name}: {error}"),
                ));
            }
        }
        if let Ok(mut topics) = self.topics.lock()
            && let Some((_, names)) = topics.as_mut()
        {
            names.insert(name.to_owned());
        }
        // A new topic's leader may take a moment to be known: retry briefly.
        let deadline = Instant::now() + self.settings.timeout;
        loop {
            match client
                .partition_client(name, 0, UnknownTopicHandling::Error)
                .await
            {
                Ok(partition) => {
                    let partition = Arc::new(partition);
                    self.partitions
                        .lock()
                        .await
                        .insert(name.to_owned(), partition.clone());
                    return Ok(partition);
                }
                Err(error)
                    if is_protocol(&error, ProtocolError::UnknownTopicOrPartition)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(Self::failure(operation, error)),
            }
        }
    }

    /// The topic names in the cluster, reused for [`TOPIC_LIST_TTL`] unless `fresh`.
    async fn topic_names(&self, fresh: bool) -> Result<BTreeSet<String>, EngineFailure> {
        if !fresh
            && let Ok(topics) = self.topics.lock()
            && let Some((at, names)) = topics.as_ref()
            && at.elapsed() < TOPIC_LIST_TTL
        {
            return Ok(names.clone());
        }
        let client = self.client("list topics").await?;
        let names: BTreeSet<String> = client
            .list_topics()
            .await
            .map_err(|error| Self::failure("list topics", error))?
            .into_iter()
            .map(|topic| topic.name)
            .collect();
        if let Ok(mut topics) = self.topics.lock() {
            *topics = Some((Instant::now(), names.clone()));
        }
        Ok(names)
    }

    /// `[low, high)` of a topic's partition 0, or `None` if the topic does not exist.
    async fn watermarks(
        &self,
        name: &str,
        operation: &'static str,
    ) -> Result<Option<(Arc<PartitionClient>, u64, u64)>, EngineFailure> {
        let Some(partition) = self.partition(name, operation).await? else {
            return Ok(None);
        };
        let low = partition
            .get_offset(OffsetAt::Earliest)
            .await
            .map_err(|error| Self::failure(operation, error))?;
        let low = to_offset(low);
        let high = self.high_watermark(&partition, low, operation).await?;
        Ok(Some((partition, low, high)))
    }

    /// The offset the next record will get. Kafka's ListOffsets(latest) says so; tansu 0.6 says
    /// the last batch's first offset + 1 instead, so the last batch is read to find its end.
    /// Either way the answer is the larger of the two.
    async fn high_watermark(
        &self,
        partition: &PartitionClient,
        low: u64,
        operation: &'static str,
    ) -> Result<u64, EngineFailure> {
        let reported = partition
            .get_offset(OffsetAt::Latest)
            .await
            .map_err(|error| Self::failure(operation, error))?;
        let reported = to_offset(reported);
        if reported <= low {
            return Ok(reported);
        }
        let (batch, _) = partition
            .fetch_records(to_kafka(reported - 1), 1..FETCH_BYTES, FETCH_WAIT_MS)
            .await
            .map_err(|error| Self::failure(operation, error))?;
        let last = batch.iter().map(|found| to_offset(found.offset)).max();
        Ok(last.map_or(reported, |last| reported.max(last + 1)))
    }

    /// Records of a partition from `from` up to `until` (at most the high watermark), at most
    /// `max` of them, without gaps.
    ///
    /// Kafka answers a fetch with the batch that holds the offset asked for; tansu 0.6 answers
    /// with the batches that start at or after it. So when the first record that comes back is
    /// past the one wanted, the fetch is asked again from further back, rather than skipping
    /// records. Only a gap that persists back to the partition's start (compacted or
    /// transactional topics) is stepped over.
    async fn fetch(
        &self,
        partition: &PartitionClient,
        from: u64,
        until: u64,
        max: usize,
        operation: &'static str,
    ) -> Result<Vec<(u64, Record)>, EngineFailure> {
        const MAX_STEP_BACK: u64 = 1 << 16;
        let mut records = Vec::new();
        let mut next = from;
        let mut back: u64 = 0;
        let mut low: Option<u64> = None;
        while next < until && records.len() < max {
            let floor = match low {
                Some(low) => low,
                None if back == 0 => 0,
                None => {
                    let earliest = partition
                        .get_offset(OffsetAt::Earliest)
                        .await
                        .map_err(|error| Self::failure(operation, error))?;
                    *low.insert(to_offset(earliest))
                }
            };
            if next < floor {
                // Deleted under us: continue from the oldest kept record.
                next = floor;
                continue;
            }
            let ask = next.saturating_sub(back).max(floor);
            let fetched = partition
                .fetch_records(to_kafka(ask), 1..FETCH_BYTES, FETCH_WAIT_MS)
                .await;
            let batch = match fetched {
                Ok((batch, _)) => batch,
                Err(error) if is_protocol(&error, ProtocolError::OffsetOutOfRange) => {
                    let earliest = partition
                        .get_offset(OffsetAt::Earliest)
                        .await
                        .map_err(|error| Self::failure(operation, error))?;
                    let earliest = to_offset(earliest);
                    if low == Some(earliest) && ask >= earliest {
                        return Err(Self::failure(operation, error));
                    }
                    low = Some(earliest);
                    continue;
                }
                Err(error) => return Err(Self::failure(operation, error)),
            };
            let first_wanted = batch
                .iter()
                .map(|found| to_offset(found.offset))
                .filter(|offset| *offset >= next)
                .min();
            match first_wanted {
                Some(first) if first > next && ask > floor && back < MAX_STEP_BACK => {
                    back = (back * 2).max(1);
                    continue;
                }
                None if ask > floor && back < MAX_STEP_BACK => {
                    back = (back * 2).max(1);
                    continue;
                }
                None => {
                    // Nothing at or after `next` exists below `until`: a gap to the end.
                    break;
                }
                Some(_) => {}
            }
            back = 0;
            let mut batch = batch;
            batch.sort_by_key(|found| found.offset);
            for found in batch {
                let offset = to_offset(found.offset);
                if offset < next || offset >= until {
                    continue;
                }
                next = offset + 1;
                records.push((offset, found.record));
                if records.len() == max {
                    break;
                }
            }
        }
        Ok(records)
    }

    /// Hands every record of `[from, until)` to `visit`, in order, fetching in chunks.
    async fn scan(
        &self,
        partition: &PartitionClient,
        from: u64,
        until: u64,
        operation: &'static str,
        mut visit: impl FnMut(u64, &Record),
    ) -> Result<(), EngineFailure> {
        let mut next = from;
        while next < until {
            let records = self
                .fetch(partition, next, until, 10_000, operation)
                .await?;
            let Some((last, _)) = records.last() else {
                break;
            };
            next = last + 1;
            for (offset, record) in &records {
                visit(*offset, record);
            }
        }
        Ok(())
    }

    fn stream_sender(&self, tenant: &TenantId, topic: &Topic) -> watch::Receiver<Offset> {
        let Ok(mut streams) = self.streams.lock() else {
            return watch::channel(Offset(0)).1;
        };
        streams
            .entry((tenant.clone(), topic.clone()))
            .or_insert_with(|| Stream {
                end: watch::channel(Offset(0)).0,
                extent: None,
            })
            .end
            .subscribe()
    }

    /// Records that the stream ends at `end` now; wakes watchers if it moved.
    fn saw_end(&self, tenant: &TenantId, topic: &Topic, end: u64) {
        if let Ok(mut streams) = self.streams.lock() {
            let stream = streams
                .entry((tenant.clone(), topic.clone()))
                .or_insert_with(|| Stream {
                    end: watch::channel(Offset(0)).0,
                    extent: None,
                });
            stream.end.send_if_modified(|current| {
                let moved = current.0 < end;
                if moved {
                    *current = Offset(end);
                }
                moved
            });
        }
    }

    fn extent(&self, key: &StreamKey) -> Option<Extent> {
        self.streams
            .lock()
            .ok()
            .and_then(|streams| streams.get(key).and_then(|stream| stream.extent))
    }

    fn set_extent(&self, key: &StreamKey, extent: Option<Extent>) {
        if let Ok(mut streams) = self.streams.lock() {
            streams
                .entry(key.clone())
                .or_insert_with(|| Stream {
                    end: watch::channel(Offset(0)).0,
                    extent: None,
                })
                .extent = extent;
        }
    }

    /// The stream's bounds with exact bytes: counted once, then kept up to date incrementally.
    async fn bounds_of(&self, tenant: &TenantId, topic: &Topic) -> Result<StreamBounds, LogError> {
        let Some((partition, low, high)) = self.range_of(tenant, topic, "read bounds").await?
        else {
            return Ok(StreamBounds::default());
        };
        let key = (tenant.clone(), topic.clone());
        let known = self.extent(&key).filter(|extent| extent.start == low);
        let (from, mut bytes) = match known {
            Some(extent) if extent.end <= high => (extent.end, extent.bytes),
            _ => (low, 0),
        };
        self.scan(&partition, from, high, "read bounds", |_, record| {
            bytes += record_len(record);
        })
        .await?;
        self.set_extent(
            &key,
            Some(Extent {
                start: low,
                end: high,
                bytes,
            }),
        );
        self.saw_end(tenant, topic, high);
        Ok(StreamBounds {
            start: Offset(low),
            end: Offset(high),
            bytes,
        })
    }

    async fn offset_book(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<OffsetBook>>, EngineFailure> {
        let mut book = self.offsets.lock().await;
        if book.is_none() {
            *book = Some(self.load_offsets().await?);
        }
        Ok(book)
    }

    async fn load_offsets(&self) -> Result<OffsetBook, EngineFailure> {
        let mut book = OffsetBook::default();
        let Some((partition, low, high)) = self
            .watermarks(&self.offsets_topic(), "load offsets")
            .await?
        else {
            return Ok(book);
        };
        self.scan(&partition, low, high, "load offsets", |_, record| {
            book.records += 1;
            match parse_entry(record) {
                Some(Entry::Commit(key, offset)) => {
                    book.latest.insert(key, offset);
                }
                Some(Entry::Start(key, start)) => {
                    book.starts.insert(key, start);
                }
                None => {}
            }
        })
        .await?;
        Ok(book)
    }

    async fn produce(
        &self,
        partition: &PartitionClient,
        records: Vec<Record>,
        operation: &'static str,
    ) -> Result<Vec<i64>, LogError> {
        match partition.produce(records, Compression::NoCompression).await {
            Ok(offsets) => Ok(offsets),
            Err(error)
                if is_protocol(&error, ProtocolError::MessageTooLarge)
                    || is_protocol(&error, ProtocolError::RecordListTooLarge) =>
            {
                Err(LogError::InvalidRecord(format!(
                    "the Kafka broker refused the batch as too large; raise the topic's max.message.bytes or send smaller batches ({error})"
                )))
            }
            Err(error) => Err(Self::failure(operation, error).into()),
        }
    }

    /// Appends `record` to the offsets topic, then applies it to the loaded book with `apply`:
    /// the book only ever holds what is durable in the cluster. Compacts the topic when it has
    /// grown well past what the book holds.
    async fn record_in_book(
        &self,
        record: Record,
        operation: &'static str,
        apply: impl FnOnce(&mut OffsetBook),
    ) -> Result<(), LogError> {
        let mut guard = self.offset_book().await?;
        let Some(book) = guard.as_mut() else {
            return Err(Self::failure(operation, "the offsets were not loaded").into());
        };
        let partition = self
            .partition_or_create(&self.offsets_topic(), operation)
            .await?;
        self.produce(&partition, vec![record], operation).await?;
        apply(book);
        book.records += 1;
        let live = (book.latest.len() + book.starts.len()) as u64;
        let deletes = !self
            .deletes_unsupported
            .load(std::sync::atomic::Ordering::Relaxed);
        if deletes && book.records > 1_000 + 4 * live {
            self.compact_offsets(book).await?;
        }
        Ok(())
    }

    /// Rewrites the latest offsets and deletes the older records of the offsets topic.
    async fn compact_offsets(&self, book: &mut OffsetBook) -> Result<(), LogError> {
        let partition = self
            .partition_or_create(&self.offsets_topic(), "compact offsets")
            .await?;
        let now = self.clock.now_ms();
        let records: Vec<Record> = book
            .latest
            .iter()
            .map(|(key, offset)| commit_record(key, *offset, now))
            .chain(
                book.starts
                    .iter()
                    .map(|(key, start)| start_record(key, *start, now)),
            )
            .collect();
        let Some(&first) = self
            .produce(&partition, records, "compact offsets")
            .await?
            .first()
        else {
            return Ok(());
        };
        if self.delete_before(&partition, to_offset(first)).await {
            book.records = (book.latest.len() + book.starts.len()) as u64;
        }
        Ok(())
    }

    /// Asks the broker to delete a partition's records before `offset`, to free space. Best
    /// effort: the log's contract never depends on it. False if the broker did not.
    async fn delete_before(&self, partition: &PartitionClient, offset: u64) -> bool {
        use std::sync::atomic::Ordering;
        if self.deletes_unsupported.load(Ordering::Relaxed) {
            return false;
        }
        let wait = self.settings.timeout.min(Duration::from_secs(2));
        let timeout_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        match tokio::time::timeout(wait, partition.delete_records(to_kafka(offset), timeout_ms))
            .await
        {
            Ok(Ok(())) => true,
            failed => {
                let why = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {} ms", wait.as_millis()),
                };
                self.deletes_unsupported.store(true, Ordering::Relaxed);
                tracing::warn!(
                    error = %why,
                    topic = partition.topic(),
                    "the Kafka broker did not delete records; retention now only hides them \
                     (set the topics' retention.ms or retention.bytes on the broker to free space)"
                );
                false
            }
        }
    }

    /// The oldest offset of a stream that retention kept (0 if it never ran).
    async fn retained_from(&self, key: &StreamKey) -> Result<u64, EngineFailure> {
        let guard = self.offset_book().await?;
        Ok(guard
            .as_ref()
            .and_then(|book| book.starts.get(key).copied())
            .unwrap_or(0))
    }

    /// A stream's partition and its readable range `[start, high)`: the broker's watermarks,
    /// with the start moved up to where retention put it.
    async fn range_of(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        operation: &'static str,
    ) -> Result<Option<(Arc<PartitionClient>, u64, u64)>, EngineFailure> {
        let name = self.topic_name(tenant, topic);
        let Some((partition, low, high)) = self.watermarks(&name, operation).await? else {
            return Ok(None);
        };
        let retained = self.retained_from(&(tenant.clone(), topic.clone())).await?;
        Ok(Some((partition, low.max(retained).min(high), high)))
    }
}

/// Keeps the watchers of streams current with records other producers append.
async fn poll_watched(inner: Weak<Inner>) {
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let watched: Vec<StreamKey> = match inner.streams.lock() {
            Ok(streams) => streams
                .iter()
                .filter(|(_, stream)| stream.end.receiver_count() > 0)
                .map(|(key, _)| key.clone())
                .collect(),
            Err(_) => return,
        };
        if watched.is_empty() || inner.client.get().is_none() {
            continue;
        }
        for (tenant, topic) in watched {
            let name = inner.topic_name(&tenant, &topic);
            let Ok(Some(partition)) = inner.partition(&name, "poll").await else {
                continue;
            };
            if let Ok(high) = partition.get_offset(OffsetAt::Latest).await {
                inner.saw_end(&tenant, &topic, to_offset(high));
            }
        }
    }
}

/// The client's SASL setup, with the password read from its file now.
fn sasl_config(sasl: &KafkaSasl) -> Result<SaslConfig, String> {
    let password = std::fs::read_to_string(&sasl.password_file).map_err(|error| {
        format!(
            "cannot read the Kafka password file {}: {error}",
            sasl.password_file.display()
        )
    })?;
    let credentials = Credentials::new(
        sasl.username.clone(),
        password.trim_end_matches(['\r', '\n']).to_owned(),
    );
    Ok(match sasl.mechanism {
        SaslMechanism::Plain => SaslConfig::Plain(credentials),
        SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
        SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
    })
}

fn backoff(timeout: Duration) -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.,
        deadline: Some(timeout),
    }
}

fn is_protocol(error: &KafkaError, wanted: ProtocolError) -> bool {
    match error {
        KafkaError::ServerError { protocol_error, .. } => *protocol_error == wanted,
        KafkaError::RetryFailed(rskafka::BackoffError::DeadlineExceded { source, .. }) => source
            .downcast_ref::<KafkaError>()
            .is_some_and(|inner| is_protocol(inner, wanted)),
        _ => false,
    }
}

fn to_offset(kafka: i64) -> u64 {
    u64::try_from(kafka).unwrap_or(0)
}

fn to_kafka(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

fn timestamp(millis: UnixMillis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

fn record_len(record: &Record) -> u64 {
    record.approximate_size() as u64
}

fn to_kafka_record(index: usize, record: NewRecord, now: UnixMillis) -> Result<Record, LogError> {
    let mut headers = BTreeMap::new();
    for (name, value) in record.headers {
        if headers.insert(name.clone(), value).is_some() {
            return Err(LogError::InvalidRecord(format!(
                "record {index} repeats the header {name:?}; Kafka keeps one value per header name"
            )));
        }
    }
    Ok(Record {
        key: record.key,
        value: Some(record.value),
        headers,
        timestamp: timestamp(now),
    })
}

fn from_kafka_record(offset: u64, record: Record) -> LogRecord {
    LogRecord {
        offset: Offset(offset),
        appended_at: record.timestamp.timestamp_millis(),
        record: NewRecord {
            key: record.key,
            headers: record.headers.into_iter().collect(),
            value: record.value.unwrap_or_default(),
        },
    }
}

fn commit_key(key: &GroupKey) -> Vec<u8> {
    format!("{}/{}/{}", key.0, key.1, key.2).into_bytes()
}

fn commit_record(key: &GroupKey, next: Offset, now: UnixMillis) -> Record {
    Record {
        key: Some(commit_key(key)),
        value: Some(next.0.to_string().into_bytes()),
        headers: BTreeMap::new(),
        timestamp: timestamp(now),
    }
}

fn start_record(key: &StreamKey, start: u64, now: UnixMillis) -> Record {
    Record {
        key: Some(format!("{}/{}", key.0, key.1).into_bytes()),
        value: Some(start.to_string().into_bytes()),
        headers: BTreeMap::new(),
        timestamp: timestamp(now),
    }
}

/// A record of the offsets topic: a group's commit (`tenant/topic/group`) or a stream's start
/// after retention (`tenant/topic`).
enum Entry {
    Commit(GroupKey, Offset),
    Start(StreamKey, u64),
}

fn parse_entry(record: &Record) -> Option<Entry> {
    let key = std::str::from_utf8(record.key.as_deref()?).ok()?;
    let number: u64 = std::str::from_utf8(record.value.as_deref()?)
        .ok()?
        .parse()
        .ok()?;
    let mut parts = key.splitn(3, '/');
    let tenant = TenantId::parse(parts.next()?).ok()?;
    let topic = Topic::parse(parts.next()?).ok()?;
    Some(match parts.next() {
        Some(group) => Entry::Commit((tenant, topic, GroupId::parse(group).ok()?), Offset(number)),
        None => Entry::Start((tenant, topic), number),
    })
}

#[async_trait]
impl Engine for KafkaLog {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    async fn check(&self) -> Result<(), EngineFailure> {
        // Readiness probes time out in seconds: answer within CHECK_TIMEOUT, whatever the
        // calls' own timeout.
        let wait = self.inner.settings.timeout.min(crate::CHECK_TIMEOUT);
        let probe = async {
            let client = self.inner.client("check").await?;
            client
                .list_topics()
                .await
                .map(drop)
                .map_err(|error| Inner::failure("check", error))
        };
        match tokio::time::timeout(wait, probe).await {
            Ok(result) => result,
            Err(_) => Err(Inner::failure(
                "check",
                format!(
                    "no answer from the Kafka brokers {} within {} ms",
                    self.inner.settings.brokers,
                    wait.as_millis()
                ),
            )),
        }
    }

    async fn close(&self) -> Result<(), EngineFailure> {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.partitions.lock().await.clear();
        Ok(())
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append_batch(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        records: Vec<NewRecord>,
    ) -> Result<Appended, LogError> {
        validate_batch(&records)?;
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let bytes: u64 = records.iter().map(|r| r.encoded_len() as u64).sum();
        let records = records
            .into_iter()
            .enumerate()
            .map(|(index, record)| to_kafka_record(index, record, now))
            .collect::<Result<Vec<_>, _>>()?;
        let count = records.len() as u64;
        let name = inner.topic_name(tenant, topic);
        let partition = inner.partition_or_create(&name, "append").await?;
        let offsets = inner.produce(&partition, records, "append").await?;
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return Err(Inner::failure("append", "the broker assigned no offsets").into());
        };
        let (first, last) = (to_offset(first), to_offset(last));
        if last + 1 - first != count {
            return Err(Inner::failure(
                "append",
                format!("the broker assigned offsets {first}..={last} to {count} records"),
            )
            .into());
        }
        let key = (tenant.clone(), topic.clone());
        let extent = inner.extent(&key).map(|extent| {
            if extent.end == first {
                Some(Extent {
                    end: last + 1,
                    bytes: extent.bytes + bytes,
                    ..extent
                })
            } else {
                None
            }
        });
        if let Some(extent) = extent {
            inner.set_extent(&key, extent);
        }
        inner.saw_end(tenant, topic, last + 1);
        Ok(Appended {
            first: Offset(first),
            last: Offset(last),
        })
    }

    async fn read(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        from: Offset,
        max_records: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let inner = &self.inner;
        let Some((partition, low, high)) = inner.range_of(tenant, topic, "read").await? else {
            return Ok(Vec::new());
        };
        inner.saw_end(tenant, topic, high);
        let from = from.0.max(low);
        if from >= high || max_records == 0 {
            return Ok(Vec::new());
        }
        let records = inner
            .fetch(&partition, from, high, max_records, "read")
            .await?;
        Ok(records
            .into_iter()
            .map(|(offset, record)| from_kafka_record(offset, record))
            .collect())
    }

    async fn bounds(&self, tenant: &TenantId, topic: &Topic) -> Result<StreamBounds, LogError> {
        self.inner.bounds_of(tenant, topic).await
    }

    async fn tenants_of(&self, topic: &Topic) -> Result<Vec<TenantId>, LogError> {
        let inner = &self.inner;
        let names = inner.topic_names(false).await?;
        let mut tenants = Vec::new();
        for name in &names {
            let Some(rest) = name.strip_prefix(&inner.settings.topic_prefix) else {
                continue;
            };
            if let Some((tenant, stream_topic)) = rest.split_once('.')
                && stream_topic == topic.as_str()
                && let Ok(tenant) = TenantId::parse(tenant)
                && inner.settings.openframe_tenant.as_ref() != Some(&tenant)
            {
                tenants.push(tenant);
            }
        }
        if let Some(tenant) = &inner.settings.openframe_tenant
            && names.contains(topic.as_str())
        {
            tenants.push(tenant.clone());
        }
        tenants.sort();
        tenants.dedup();
        Ok(tenants)
    }

    async fn commit_offset(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        group: &GroupId,
        next: Offset,
    ) -> Result<(), LogError> {
        let key = (tenant.clone(), topic.clone(), group.clone());
        let record = commit_record(&key, next, self.inner.clock.now_ms());
        self.inner
            .record_in_book(record, "commit offset", |book| {
                book.latest.insert(key, next);
            })
            .await
    }

    async fn committed_offset(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        group: &GroupId,
    ) -> Result<Option<Offset>, LogError> {
        let guard = self.inner.offset_book().await?;
        let key = (tenant.clone(), topic.clone(), group.clone());
        Ok(guard
            .as_ref()
            .and_then(|book| book.latest.get(&key).copied()))
    }

    /// The appliance's own (prefixed) streams; OpenFrame's unprefixed topics are not listed.
    async fn streams(&self) -> Result<Vec<(TenantId, Topic)>, LogError> {
        let inner = &self.inner;
        let mut streams = Vec::new();
        for name in inner.topic_names(true).await? {
            if let Some(rest) = name.strip_prefix(&inner.settings.topic_prefix)
                && let Some((tenant, topic)) = rest.split_once('.')
                && let (Ok(tenant), Ok(topic)) = (TenantId::parse(tenant), Topic::parse(topic))
            {
                streams.push((tenant, topic));
            }
        }
        streams.sort();
        Ok(streams)
    }

    async fn committed_offsets(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Vec<(GroupId, Offset)>, LogError> {
        let guard = self.inner.offset_book().await?;
        Ok(guard
            .as_ref()
            .map(|book| {
                book.latest
                    .iter()
                    .filter(|((t, s, _), _)| t == tenant && s == topic)
                    .map(|((_, _, group), next)| (group.clone(), *next))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn watch(&self, tenant: &TenantId, topic: &Topic) -> watch::Receiver<Offset> {
        self.inner.stream_sender(tenant, topic)
    }

    async fn enforce_retention(
        &self,
        topic: &Topic,
        policy: RetentionPolicy,
    ) -> Result<RetentionReport, LogError> {
        let inner = &self.inner;
        let mut report = RetentionReport::default();
        if policy == RetentionPolicy::default() {
            return Ok(report);
        }
        let cutoff = policy
            .max_age_ms
            .map(|age| inner.clock.now_ms().saturating_sub(age));
        for tenant in self.tenants_of(topic).await? {
            let bounds = inner.bounds_of(&tenant, topic).await?;
            let Some((partition, _, _)) =
                inner.range_of(&tenant, topic, "enforce retention").await?
            else {
                continue;
            };
            let (mut kept_bytes, mut cut) = (bounds.bytes, bounds.start.0);
            let (mut records_cut, mut bytes_cut) = (0, 0);
            'scan: while cut < bounds.end.0 {
                let records = inner
                    .fetch(&partition, cut, bounds.end.0, 1_000, "enforce retention")
                    .await?;
                if records.is_empty() {
                    break;
                }
                for (offset, record) in records {
                    let too_old =
                        cutoff.is_some_and(|cutoff| record.timestamp.timestamp_millis() < cutoff);
                    let too_big = policy.max_bytes.is_some_and(|max| kept_bytes > max);
                    if !(too_old || too_big) {
                        break 'scan;
                    }
                    let len = record_len(&record);
                    kept_bytes -= len;
                    bytes_cut += len;
                    records_cut += 1;
                    cut = offset + 1;
                }
            }
            if cut == bounds.start.0 {
                continue;
            }
            // The new start is durable in the offsets topic before it is reported.
            let key = (tenant.clone(), topic.clone());
            let record = start_record(&key, cut, inner.clock.now_ms());
            inner
                .record_in_book(record, "enforce retention", |book| {
                    book.starts.insert(key.clone(), cut);
                })
                .await?;
            report.records += records_cut;
            report.bytes += bytes_cut;
            inner.set_extent(
                &key,
                Some(Extent {
                    start: cut,
                    end: bounds.end.0,
                    bytes: kept_bytes,
                }),
            );
            inner.delete_before(&partition, cut).await;
        }
        Ok(report)
    }
}
