//! Building and running the appliance. `Application::build` does everything that can fail at start
//! (data-dir lock, certificate, listeners, stores) and returns the bound addresses, so `main` and
//! the tests run the very same code; `run_until_stopped` serves until the shutdown future resolves,
//! then drains connections and closes the stores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use openframe_storage::{Clock, Storage};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::config::Config;
use crate::datadir::DataDirLock;
use crate::events::Events;
use crate::gateway::Gateway;
use crate::gateway::api_keys::ApiKeys;
use crate::gateway::tools::ToolRegistry;
use crate::identity::Identity;
use crate::identity::http::PeerAddr;
use crate::inventory::Inventory;
use crate::management::Management;
use crate::management::agents::Agents;
use crate::management::nats::Nats;
use crate::management::presence::Presence;
use crate::metrics::{CountedDocuments, Metrics};
use crate::stream::Stream;
use crate::stream::mappings::Mappings;
use crate::tags::Tags;
use crate::tls::CertificateFiles;
use crate::webhooks::Webhooks;

/// What every handler may need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub storage: Storage,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins, so readiness turns 503 and load balancers stop sending.
    pub stopping: Arc<AtomicBool>,
    pub config: Arc<Config>,
    /// Every tenant's OAuth2/OIDC provider.
    pub identity: Arc<Identity>,
    /// The edge: token verification, API keys, tools.
    pub gateway: Arc<Gateway>,
    /// Organizations, machines and tool connections (enrichment's source).
    pub inventory: Arc<Inventory>,
    /// The event pipeline: ingest, and the worker spawned by `run_until_stopped`.
    pub stream: Arc<Stream>,
    /// NATS (embedded or external); `None` with `nats.mode = "off"`.
    pub nats: Option<Arc<Nats>>,
    /// Agents: credentials, presence, the `/ws/nats` sessions.
    pub management: Arc<Management>,
    /// Tag definitions (devices carry theirs on the machine).
    pub tags: Arc<Tags>,
    /// Generic application events.
    pub events: Arc<Events>,
    /// The technicians' audit trail.
    pub audit: Arc<Audit>,
    /// Integrators' webhooks: subscriptions, and the tasks spawned by `run_until_stopped` that
    /// deliver unified events to them.
    pub webhooks: Arc<Webhooks>,
    /// In-app notifications (and their mail), pushed live.
    pub notifications: Arc<crate::notify::Notifications>,
    /// Detection's findings grouped for technicians.
    pub incidents: Arc<crate::detect::incidents::Incidents>,
    /// Each tenant's detection thresholds.
    pub detection_settings: Arc<crate::detect::settings::DetectionSettings>,
    /// The optional assistant (off by default).
    pub assistant: Arc<crate::assist::Assistant>,
}

/// A built appliance: listeners bound, stores open, not yet serving.
pub struct Application {
    state: AppState,
    https: TcpListener,
    admin: TcpListener,
    /// The optional plain-HTTP listener that redirects to HTTPS.
    redirect: Option<TcpListener>,
    tls: TlsAcceptor,
    /// Held until the stores are closed, so no second process opens them meanwhile.
    lock: DataDirLock,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("https", &self.https.local_addr().ok())
            .field("admin", &self.admin.local_addr().ok())
            .field("data_dir", &self.lock.path())
            .finish_non_exhaustive()
    }
}

impl Application {
    pub async fn build(mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let data_dir = config.storage.data_dir.clone();
        let lock = DataDirLock::acquire(&data_dir)?;
        // Before any store opens (and migrates files an older release wrote).
        crate::upgrade::backup_before_migrating(&config).await?;

        let files = CertificateFiles::resolve(&config.tls, &data_dir);
        let tls_config = tokio::task::spawn_blocking(move || {
            crate::tls::server_config(&files, time::OffsetDateTime::now_utc())
        })
        .await
        .context("the certificate task failed")??;

        let https = bind(config.server.listen, "server.listen", "--listen").await?;
        let admin = bind(
            config.server.admin_listen,
            "server.admin_listen",
            "--admin-listen",
        )
        .await?;

        let redirect = match config
            .gateway
            .redirect_listen()
            .map_err(|message| anyhow::anyhow!(message))?
        {
            Some(address) => {
                Some(bind(address, "gateway.http_redirect_listen", "the config").await?)
            }
            None => None,
        };
        config.resolve_public_url(https.local_addr()?);

        let mut storage = Storage::open(&config.storage_config(), clock.clone())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let metrics = Metrics::new();
        storage.documents = CountedDocuments::wrap(storage.documents, &metrics);
        let identity = Identity::open(
            storage.tenants.clone(),
            storage.documents.clone(),
            &data_dir,
            &config,
            clock,
        );
        let identity = match identity {
            Ok(mut identity) => {
                identity.events = metrics.identity_events.clone();
                Arc::new(identity)
            }
            Err(error) => {
                let _ = storage.close().await;
                return Err(error.context("cannot start identity"));
            }
        };

        let gateway = match build_gateway(&storage, &identity, &config).await {
            Ok(gateway) => Arc::new(gateway),
            Err(error) => {
                let _ = storage.close().await;
                return Err(error.context("cannot start the gateway"));
            }
        };

        let inventory = Arc::new(Inventory::new(
            storage.documents.clone(),
            storage.analytics.clone(),
            identity.clock.clone(),
        ));
        let mappings =
            match Mappings::new(storage.documents.clone(), &config.stream.mapping_overrides) {
                Ok(mappings) => Arc::new(mappings),
                Err(problem) => {
                    let _ = storage.close().await;
                    return Err(anyhow::anyhow!("invalid configuration: {problem}"));
                }
            };
        let stream = Arc::new(Stream::new(
            storage.clone(),
            inventory.clone(),
            mappings,
            config.stream.clone(),
            identity.clock.clone(),
            metrics.clone(),
        ));

        let nats = match Nats::prepare(&config.nats, &data_dir) {
            Ok(nats) => nats.map(Arc::new),
            Err(error) => {
                let _ = storage.close().await;
                return Err(error.context("cannot prepare NATS"));
            }
        };

        let agents = match Agents::load(
            storage.tenants.clone(),
            storage.documents.clone(),
            inventory.clone(),
            identity.clone(),
        )
        .await
        {
            Ok(agents) => Arc::new(agents),
            Err(error) => {
                let _ = storage.close().await;
                return Err(anyhow::anyhow!("cannot load agent credentials: {error}"));
            }
        };
        let rmm = Arc::new(crate::management::rmm::Rmm::new(
            storage.documents.clone(),
            inventory.clone(),
            stream.clone(),
            identity.master_key(),
            identity.clock.clone(),
        ));
        let management = Arc::new(Management {
            agents,
            presence: Arc::new(Presence::new(
                inventory.clone(),
                stream.clone(),
                identity.clock.clone(),
                std::time::Duration::from_secs(config.agents.offline_after_seconds),
            )),
            sessions: Arc::default(),
            nats_enabled: nats.is_some(),
            hub: std::sync::OnceLock::new(),
            client: std::sync::OnceLock::new(),
            schedules: Arc::new(crate::management::schedules::Schedules::new(
                storage.documents.clone(),
                inventory.clone(),
                rmm.clone(),
                identity.clock.clone(),
            )),
            fleet: crate::management::fleet::FleetHosts::new(
                gateway.clone(),
                std::time::Duration::from_secs(config.gateway.tool_timeout_seconds.min(15)),
            ),
            tool_agents: Arc::new(crate::management::tool_agents::ToolAgents::new(
                storage.documents.clone(),
                inventory.clone(),
                rmm.clone(),
                identity.master_key(),
                identity.clock.clone(),
            )),
            rmm,
            clock: identity.clock.clone(),
        });

        let catalogs = Tags::new(
            storage.documents.clone(),
            inventory.clone(),
            identity.clock.clone(),
        )
        .and_then(|tags| {
            Events::new(storage.documents.clone(), identity.clock.clone())
                .map(|events| (Arc::new(tags), Arc::new(events)))
        });
        let (tags, events) = match catalogs {
            Ok(catalogs) => catalogs,
            Err(error) => {
                let _ = storage.close().await;
                return Err(error.context("cannot open the tag and event catalogs"));
            }
        };

        let audit = match Audit::new(
            storage.documents.clone(),
            identity.clock.clone(),
            &config.audit,
        ) {
            Ok((audit, forwarder)) => {
                if let Some(forwarder) = forwarder {
                    tokio::spawn(forwarder.run());
                }
                if let Some(sink) = audit.syslog_sink() {
                    identity.set_security_sink(sink);
                }
                Arc::new(audit)
            }
            Err(error) => {
                let _ = storage.close().await;
                return Err(error.context("cannot start the audit trail"));
            }
        };

        let webhooks = match Webhooks::new(
            storage.clone(),
            identity.master_key(),
            identity.clock.clone(),
            config.webhooks.clone(),
            metrics.clone(),
        ) {
            Ok(webhooks) => Arc::new(webhooks),
            Err(error) => {
                let _ = storage.close().await;
                return Err(error.context("cannot start webhooks"));
            }
        };

        let documents = storage.documents.clone();
        let clock = identity.clock.clone();
        let intelligence = (|| {
            let notifications = Arc::new(crate::notify::Notifications::new(
                documents.clone(),
                identity.clone(),
                clock.clone(),
            )?);
            let incidents = Arc::new(crate::detect::incidents::Incidents::new(
                documents.clone(),
                notifications.clone(),
                clock.clone(),
            )?);
            let detection_settings = Arc::new(crate::detect::settings::DetectionSettings::new(
                config.detection.clone(),
                documents.clone(),
            )?);
            let assistant = Arc::new(crate::assist::Assistant::new(
                &config.assistant,
                documents.clone(),
                clock.clone(),
            )?);
            anyhow::Ok((notifications, incidents, detection_settings, assistant))
        })();
        let (notifications, incidents, detection_settings, assistant) = match intelligence {
            Ok(parts) => parts,
            Err(error) => {
                let _ = storage.close().await;
                return Err(error.context("cannot start notifications, incidents or the assistant"));
            }
        };

        Ok(Application {
            state: AppState {
                audit,
                webhooks,
                notifications,
                incidents,
                detection_settings,
                assistant,
                tags,
                events,
                storage,
                inventory,
                stream,
                nats,
                management,
                metrics,
                stopping: Arc::new(AtomicBool::new(false)),
                config: Arc::new(config),
                identity,
                gateway,
            },
            https,
            admin,
            redirect,
            tls: TlsAcceptor::from(tls_config),
            lock,
        })
    }

    /// The bound HTTPS address (the real port when configured with port 0).
    pub fn https_addr(&self) -> SocketAddr {
        self.https
            .local_addr()
            .unwrap_or(self.state.config.server.listen)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.state.config.server.admin_listen)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.lock.path().to_owned()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish
    /// (up to `server.shutdown_grace_seconds`), closes every store and releases the data dir.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            state,
            https,
            admin,
            redirect,
            tls,
            lock,
        } = self;
        let stop = CancellationToken::new();
        let admin_stop = CancellationToken::new();

        let admin_addr = admin
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        // `openframe backup` proves it may read the data dir by presenting this token.
        let backup_token = match crate::admin::BackupToken::create(lock.path()) {
            Ok(token) => token,
            Err(error) => {
                let _ = state.storage.close().await;
                return Err(error.context("cannot write the admin token"));
            }
        };
        let admin_router = crate::admin::router(state.clone(), &backup_token);
        let admin_token = admin_stop.clone();
        let admin_task = tokio::spawn(async move {
            axum::serve(admin, admin_router)
                .with_graceful_shutdown(async move { admin_token.cancelled().await })
                .await
        });

        let public_router = crate::gateway::router(state.clone());
        let grace = Duration::from_secs(state.config.server.shutdown_grace_seconds);
        let header_timeout = Duration::from_secs(state.config.gateway.header_read_timeout_seconds);
        let handshake_timeout =
            Duration::from_secs(state.config.server.tls_handshake_timeout_seconds);
        let graceful = GracefulShutdown::new();
        tracing::info!(
            https = %https.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
            admin = %admin_addr,
            public_url = %state.config.public_url(),
            "openframe is serving"
        );
        // Expired codes, tokens and sessions are deleted hourly, so the stores stay bounded.
        let sweeper_identity = state.identity.clone();
        let sweeper_stop = stop.clone();
        let sweeper = tokio::spawn(async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    () = sweeper_stop.cancelled() => break,
                    _ = every_hour.tick() => match sweeper_identity.sweep_expired().await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "swept expired identity records"),
                        Err(error) => tracing::warn!(%error, "sweeping expired identity records failed"),
                    },
                }
            }
        });
        // API-key statistics are written in batches; the per-address limiter forgets idle
        // addresses, so neither grows without bound.
        let flusher_state = state.clone();
        let flush_stop = CancellationToken::new();
        let flusher_stop = flush_stop.clone();
        let flusher = tokio::spawn(async move {
            let seconds = flusher_state.config.gateway.api_key_stats_flush_seconds;
            let mut flush_every = tokio::time::interval(Duration::from_secs(seconds));
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                let (stopping, minute) = tokio::select! {
                    () = flusher_stop.cancelled() => (true, false),
                    _ = flush_every.tick() => (false, false),
                    _ = every_minute.tick() => (false, true),
                };
                let keys = &flusher_state.gateway.api_keys;
                if let Err(error) = keys.flush().await {
                    tracing::warn!(%error, "writing API-key statistics failed; they are kept for the next try");
                }
                if minute {
                    // Keys changed by another process (the CLI), and suspended tenants' keys.
                    if let Err(error) = keys.reload_if_older(Duration::from_secs(50)).await {
                        tracing::warn!(%error, "reading API keys failed");
                    }
                    if let Some(limiter) = &flusher_state.gateway.per_address {
                        limiter.limiter().retain_recent();
                    }
                }
                if stopping {
                    break;
                }
            }
        });
        // The event pipeline runs until the last request is drained, then checkpoints.
        let stream_stop = CancellationToken::new();
        let stream_worker = state.stream.spawn_worker(stream_stop.clone());
        // Webhooks read what the pipeline writes to `unified.events`; stopped before it.
        let webhooks_stop = CancellationToken::new();
        let webhooks_task = state.webhooks.spawn(webhooks_stop.clone());
        // Anomaly detection reads `unified.events` too, and writes its alerts into the pipeline:
        // stopped with the webhooks, before the pipeline.
        let detection_task = state.config.detection.enabled.then(|| {
            crate::detect::runner::Runner::new(
                state.storage.clone(),
                state.stream.clone(),
                state.identity.clock.clone(),
                state.detection_settings.clone(),
                state.incidents.clone(),
                Duration::from_secs(state.config.detection.interval_seconds),
            )
            .spawn(webhooks_stop.clone())
        });
        // NATS outlives everything that uses it: stopped last.
        let nats_stop = CancellationToken::new();
        let cdc_stop = CancellationToken::new();
        let (nats_supervisor, cdc_consumer) = match &state.nats {
            Some(nats) => {
                let supervisor = nats.spawn_supervisor(nats_stop.clone());
                let (nats, stream, tenants) = (
                    nats.clone(),
                    state.stream.clone(),
                    state.storage.tenants.clone(),
                );
                let default_tenant = state.config.stream.nats_tenant.clone();
                let stop = cdc_stop.clone();
                let (management, inventory, documents) = (
                    state.management.clone(),
                    state.inventory.clone(),
                    state.storage.documents.clone(),
                );
                // One connection for CDC ingest and for the agents' heartbeats and reports.
                let consumer = tokio::spawn(async move {
                    let client = tokio::select! {
                        () = stop.cancelled() => return,
                        client = nats.connect() => client,
                    };
                    match nats.connect_agents().await {
                        Ok(hub) => {
                            let _ = management.hub.set(hub);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot connect the agents' NATS hub")
                        }
                    }
                    match client {
                        Ok(client) => {
                            tokio::join!(
                                crate::stream::cdc::run(
                                    stream,
                                    client.clone(),
                                    tenants,
                                    default_tenant,
                                    stop.clone()
                                ),
                                crate::management::run(
                                    management, inventory, documents, client, stop
                                ),
                            );
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot connect to NATS; agents and CDC over NATS are off")
                        }
                    }
                });
                (Some(supervisor), Some(consumer))
            }
            None => (None, None),
        };
        // Presence: machines the store holds ONLINE are watched from the start.
        let tenants: Vec<_> = match state.storage.tenants.tenants().await {
            Ok(tenants) => tenants.into_iter().map(|tenant| tenant.id).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list tenants for presence");
                Vec::new()
            }
        };
        state.management.presence.watch_online(&tenants).await;
        let presence_task = state.management.presence.spawn(cdc_stop.clone());
        if let Err(error) = state.management.rmm.watch_unfinished(&tenants).await {
            tracing::warn!(%error, "cannot read unfinished script executions");
        }
        if let Err(error) = state.management.schedules.watch(&tenants).await {
            tracing::warn!(%error, "cannot read script schedules");
        }
        // The watchdog, the schedules' clock, DEVICE_ONLINE schedules, and expired token verdicts.
        let health_task =
            crate::gateway::health::spawn(state.clone(), Duration::from_secs(2), cdc_stop.clone());
        // Scheduled backups ([backup]); one in progress at shutdown is finished before the
        // stores close.
        let backup_task = crate::backup::spawn_schedule(state.clone(), cdc_stop.clone());
        let watchdog_task = {
            let (management, stop) = (state.management.clone(), cdc_stop.clone());
            let (gateway, clock) = (state.gateway.clone(), state.identity.clock.clone());
            let (online_tx, mut online_rx) = tokio::sync::mpsc::unbounded_channel();
            management.presence.on_online(online_tx);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut ticks: u64 = 0;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        Some((tenant, machine)) = online_rx.recv() => {
                            let nats = management.client.get();
                            if let Err(error) = management.schedules.machine_online(&tenant, &machine, nats).await {
                                tracing::warn!(%tenant, machine_id = %machine, %error, "DEVICE_ONLINE schedules could not run");
                            }
                        }
                        _ = tick.tick() => {
                            ticks += 1;
                            management.schedules.tick(management.client.get()).await;
                            if ticks.is_multiple_of(30) {
                                gateway.tokens.forget_expired(clock.now_ms());
                            }
                            if ticks.is_multiple_of(5) {
                                let failed = management.rmm.watchdog().await;
                                if failed > 0 {
                                    tracing::warn!(failed, "executions failed: their agents never answered");
                                }
                            }
                        }
                    }
                }
            })
        };
        let redirect_task = redirect.map(|listener| {
            tracing::info!(http = %crate::gateway::edge::describe(&listener), "redirecting plain HTTP to HTTPS");
            tokio::spawn(crate::gateway::edge::serve_redirects(
                listener,
                state.config.public_url(),
                admin_stop.clone(),
            ))
        });
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            signal_stop.cancel();
        });

        // Under systemd (`Type=notify`) the unit is started from here: requests are accepted.
        crate::systemd::notify(&format!(
            "READY=1\nSTATUS=serving {}",
            state.config.public_url()
        ));
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = https.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Running out of file descriptors must not end the server: wait and retry.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            // Handlers that throttle by client address find it as a request extension.
            let router = public_router.clone();
            let service = TowerToHyperService::new(tower::service_fn(
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(PeerAddr(peer));
                    tower::ServiceExt::oneshot(router.clone(), request)
                },
            ));
            let watcher = graceful.watcher();
            let metrics = state.metrics.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                metrics.open_connections.inc();
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // A client that trickles its headers (slowloris) is cut off.
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                metrics.open_connections.dec();
            });
        }

        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        crate::systemd::notify("STOPPING=1\nSTATUS=finishing in-flight requests");
        state.stopping.store(true, Ordering::SeqCst);
        // Agents' NATS sessions are long-lived: end them now; they reconnect to whoever serves next.
        state.management.sessions.close_all();
        drop(https);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "connections still open after the grace period; closing them"
            );
        }
        let _ = sweeper.await;
        // The last statistics, counted up to the last drained request, are written before the
        // stores close.
        flush_stop.cancel();
        let _ = flusher.await;
        cdc_stop.cancel();
        if let Some(consumer) = cdc_consumer {
            let _ = consumer.await;
        }
        let _ = presence_task.await;
        let _ = watchdog_task.await;
        let _ = health_task.await;
        if let Some(task) = backup_task {
            let _ = task.await;
        }
        webhooks_stop.cancel();
        if let Err(error) = webhooks_task.await {
            tracing::warn!(%error, "the webhook task failed");
        }
        if let Some(task) = detection_task
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "the anomaly detection task failed");
        }
        stream_stop.cancel();
        if let Err(error) = stream_worker.await {
            tracing::warn!(%error, "the event pipeline task failed");
        }
        nats_stop.cancel();
        if let Some(supervisor) = nats_supervisor {
            let _ = supervisor.await;
        }
        admin_stop.cancel();
        if let Some(task) = redirect_task {
            let _ = task.await;
        }
        match admin_task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "admin listener ended with an error"),
            Err(error) => tracing::warn!(%error, "admin listener task failed"),
        }
        backup_token.remove();
        state.storage.close().await.context("closing the stores")?;
        drop(lock);
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

async fn build_gateway(
    storage: &Storage,
    identity: &Arc<Identity>,
    config: &Config,
) -> anyhow::Result<Gateway> {
    let api_keys = ApiKeys::new(
        storage.tenants.clone(),
        storage.documents.clone(),
        identity.clock.clone(),
        &identity.master_key(),
        &config.gateway,
    )?;
    let loaded = api_keys
        .load()
        .await
        .map_err(|error| anyhow::anyhow!("loading API keys: {error}"))?;
    tracing::debug!(api_keys = loaded, "API keys loaded");
    let tools = ToolRegistry::new(
        storage.documents.clone(),
        identity.clock.clone(),
        identity.master_key(),
    )?;
    Gateway::new(config, api_keys, tools)
}

async fn bind(address: SocketAddr, key: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|error| {
        let hint = match error.kind() {
            std::io::ErrorKind::AddrInUse => "another program is using it".to_owned(),
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need CAP_NET_BIND_SERVICE".to_owned(),
            _ => error.to_string(),
        };
        anyhow::anyhow!("cannot listen on {address} ({key}): {hint}; choose another address with {flag} or in the config")
    })
}
