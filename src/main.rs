//! The `openframe` command line: parse, load the configuration, set up logging, run.

// Printing to stdout is this binary's interface (version, doctor, healthcheck); logs go to stderr.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use std::os::unix::fs::DirBuilderExt;

use openframe::backup::Report as _;
use openframe::config::{CliOverrides, Config, LogFormat};
use openframe::identity::admin;
use openframe::identity::{Identity, IdentityError, NewClient};
use openframe::ops::Verdict;
use openframe::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "openframe",
    version,
    about = "The OpenFrame Appliance: OpenFrame's MSP backend in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTPS (default :8443) and the admin endpoints (default 127.0.0.1:9090).
    Serve(ConfigArgs),
    /// Check that the appliance answers: exits 0 when the URL answers 2xx, 1 otherwise.
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9090/health/ready")]
        url: String,
        /// Trust this PEM certificate for an https URL (e.g. <data-dir>/tls/cert.pem).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        timeout_seconds: u64,
    },
    /// Check the machine and data dir for what `serve` needs.
    Doctor(ConfigArgs),
    /// The endpoint agent: registers this machine with an appliance and runs what it sends.
    Agent {
        #[command(subcommand)]
        command: openframe::agent::cli::AgentCommand,
    },
    /// Bootstrap a data dir: a tenant, its built-in client and an OWNER. Safe to run again.
    Init(InitArgs),
    /// Create, list or rotate the keys of tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Create users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Register OAuth clients (relying parties).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Let a tenant's people sign in with an upstream OpenID Connect provider.
    Sso {
        #[command(subcommand)]
        command: SsoCommand,
    },
    /// Manage integrators' API keys (`X-API-Key` on /external-api); the API has the same.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Customers (OpenFrame's organizations).
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Register the integrated tools the gateway proxies to (`/tools/{id}/…`).
    Tool {
        #[command(subcommand)]
        command: ToolCommand,
    },
    /// Rebuild the analytics tables and the search index from the log details and the
    /// inventory (after a damaged or deleted analytics.duckdb or search/). Stop the appliance first.
    Reindex {
        #[command(flatten)]
        tenancy: TenancyArgs,
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write a consistent backup of the stores of record, keys and certificate to one archive.
    /// Asks the appliance serving the data dir, or opens the stores itself when none runs.
    Backup(BackupArgs),
    /// Restore a backup into an absent or empty data dir, rebuilding analytics and search.
    /// The appliance must not be running on that data dir.
    Restore(RestoreArgs),
    /// Copy the embedded event log to Kafka, or tenancy and documents to MongoDB, as configured
    /// in [storage.kafka] / [storage.mongo], and verify every record. The appliance must not be
    /// running on the data dir; the embedded files are left as they were.
    MigrateStorage(MigrateStorageArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
struct MigrateStorageArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `kafka` (the event log) or `mongo` (tenancy and documents).
    #[arg(long)]
    to: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BackupArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The archive to write (a tar file); it must not exist.
    #[arg(long)]
    out: PathBuf,
    /// The running appliance's admin listener (default: from `server.admin_listen`).
    #[arg(long)]
    admin_url: Option<String>,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to restore: absent or empty (default: the configured data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The archive `openframe backup` wrote.
    #[arg(long)]
    from: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Create a key; the full key is printed once and never again.
    Create {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A scope the key holds (repeat); default: every read scope.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// When it stops working, RFC 3339 (e.g. 2027-01-31T00:00:00Z); default: never.
        #[arg(long)]
        expires_at: Option<String>,
        /// Its own limits (default: the gateway's).
        #[arg(long)]
        per_minute: Option<u64>,
        #[arg(long)]
        per_hour: Option<u64>,
        #[arg(long)]
        per_day: Option<u64>,
    },
    /// List a tenant's keys with their statistics.
    List {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
    },
    /// Delete a key (a running appliance stops accepting it within a minute).
    Delete {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
enum ToolCommand {
    /// Register a tool, or replace its registration.
    Set {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        /// The tool's id in paths, e.g. "fleetmdm-server" or "meshcentral-server".
        #[arg(long)]
        id: String,
        /// A display name (default: the id).
        #[arg(long, default_value = "")]
        name: String,
        /// OpenFrame's tool type, e.g. MESHCENTRAL or FLEET_MDM.
        #[arg(long = "type")]
        tool_type: String,
        /// Base URL of the tool's REST API.
        #[arg(long)]
        api_url: String,
        /// Base URL of its WebSocket endpoint (ws:// or wss://).
        #[arg(long)]
        ws_url: Option<String>,
        /// A file holding the credential the proxy injects (kept out of shell history).
        #[arg(long)]
        credential_file: Option<PathBuf>,
        /// Inject the credential as this header; without it, as `Authorization: Bearer`.
        #[arg(long)]
        credential_header: Option<String>,
        /// A path prefix administrators may reach through the proxy ("/" for all); repeat.
        #[arg(long = "allow", required = true)]
        allowed_paths: Vec<String>,
        /// A path prefix agents may reach through /tools/agent/…; repeat (default: none).
        #[arg(long = "agent-allow")]
        agent_allowed_paths: Vec<String>,
        /// PEM CA certificates for a tool with a private certificate.
        #[arg(long, default_value = "")]
        ca_file: String,
        /// Do not verify the tool's TLS certificate (prefer --ca-file).
        #[arg(long)]
        insecure_skip_tls_verify: bool,
        /// What the health check requests.
        #[arg(long, default_value = "/")]
        health_path: String,
        /// How often the appliance checks the tool's health by itself (0: never).
        #[arg(long, default_value_t = openframe::gateway::tools::DEFAULT_HEALTH_CHECK_SECONDS)]
        health_check_seconds: u64,
    },
    /// List a tenant's tools (never their credentials).
    List {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum SsoCommand {
    /// Add or replace an upstream provider; prints the redirect URI to register there.
    Set {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        /// The provider's short name in URLs, e.g. "google" or "corp".
        #[arg(long)]
        provider: String,
        /// The button text on the sign-in page (default: the provider name).
        #[arg(long, default_value = "")]
        display_name: String,
        /// The upstream issuer URL (its discovery document is at ISSUER/.well-known/openid-configuration).
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        client_id: String,
        /// A file holding the client secret the upstream issued (kept out of shell history).
        #[arg(long)]
        client_secret_file: PathBuf,
        /// An email domain whose people may sign in this way; repeat for several.
        #[arg(long = "allowed-domain", required = true)]
        allowed_domains: Vec<String>,
        /// Create unknown people (as ADMIN) on their first sign-in.
        #[arg(long)]
        auto_provision: bool,
        /// PEM CA certificates to trust for an internal provider.
        #[arg(long, default_value = "")]
        ca_file: String,
    },
}

/// Where the data is, and how to print the answer. These commands open only the tenancy store,
/// so they work whether or not `serve` is running on the same data dir.
#[derive(Debug, Args)]
struct TenancyArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    tenancy: TenancyArgs,
    /// The tenant id: 2-63 characters of a-z, 0-9 and '-'.
    #[arg(long)]
    tenant: String,
    /// The tenant's display name (default: the id).
    #[arg(long)]
    tenant_name: Option<String>,
    #[arg(long)]
    admin_email: String,
    /// Omit to have one generated and printed once.
    #[arg(long)]
    admin_password: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    Create {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
    },
    List {
        #[command(flatten)]
        tenancy: TenancyArgs,
    },
    /// Add a signing key: published now, signing after `identity.key_rotation_lead_seconds`.
    RotateKeys {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
    },
    /// Print the tenant's agent registration secret (the installer's --initial-key), made on
    /// first need; --rotate replaces it (the old one is refused for new machines at once).
    AgentSecret {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create (or rename) a customer organization that agents register into.
    Create {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Its organizationId (default: a new UUID).
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Set a user's password (account recovery); ends every session and token of the user.
    SetPassword {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
    },
    Create {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        /// OWNER or ADMIN.
        #[arg(long, default_value = "ADMIN")]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    Create {
        #[command(flatten)]
        tenancy: TenancyArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Exact redirect URI; repeat for several.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may return; repeat for several.
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// A public client (no secret, PKCE required), e.g. a single-page or native app.
        #[arg(long)]
        public: bool,
        /// authorization_code, refresh_token or client_credentials; repeat for several.
        /// Default: authorization_code and refresh_token.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// openid, profile, email or offline_access; repeat for several. Default: all of them.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// A TOML config file (see config.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, openframe::config::ConfigError> {
        let flags = CliOverrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            admin_listen: self.admin_listen,
            log_format: self.log_format,
        };
        Config::load(self.config.as_deref(), std::env::vars(), &flags)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // One line that says what and where; the chain is joined with ": ".
            eprintln!("openframe: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent { command } => openframe::agent::cli::run(command),
        Command::Version => {
            println!("openframe {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let config = args.load()?;
            openframe::telemetry::init(&config.log);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(args) => {
            let config = args.load()?;
            let findings = openframe::ops::doctor(&config, time::OffsetDateTime::now_utc());
            for finding in &findings {
                let label = match finding.verdict {
                    Verdict::Ok => "ok  ",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "FAIL",
                };
                println!("{label}  {}: {}", finding.check, finding.detail);
            }
            let failed = findings
                .iter()
                .any(|finding| finding.verdict == Verdict::Fail);
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Init(args) => with_identity(&args.tenancy, async |identity| {
            let outcome = admin::init(
                identity,
                &args.tenant,
                args.tenant_name.as_deref(),
                &args.admin_email,
                args.admin_password.as_deref(),
            )
            .await?;
            let mut text = format!(
                "tenant {} ({}): {}\nowner {}: {}\nsign in at {}",
                outcome.tenant.id,
                outcome.tenant.name,
                if outcome.tenant_created {
                    "created"
                } else {
                    "already there"
                },
                outcome.admin_email,
                if outcome.admin_created {
                    "created"
                } else {
                    "already there (password unchanged)"
                },
                outcome.sign_in_url,
            );
            if let Some(password) = &outcome.generated_password {
                text.push_str(&format!("\ngenerated password (shown once): {password}"));
            }
            Ok(Printed::new(&outcome, text))
        }),
        Command::Tenant { command } => match command {
            TenantCommand::Create { tenancy, id, name } => {
                with_identity(&tenancy, async |identity| {
                    let tenant = admin::create_tenant(identity, &id, &name).await?;
                    let text = format!("created tenant {}; issuer {}", tenant.id, tenant.issuer);
                    Ok(Printed::new(&tenant, text))
                })
            }
            TenantCommand::List { tenancy } => with_identity(&tenancy, async |identity| {
                let tenants = admin::list_tenants(identity).await?;
                let text = tenants
                    .iter()
                    .map(|t| format!("{}\t{}\t{}\t{}", t.id, t.status, t.name, t.issuer))
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(Printed::new(&tenants, text))
            }),
            TenantCommand::AgentSecret {
                tenancy,
                tenant,
                rotate,
            } => with_identity(&tenancy, async |identity| {
                let tenant = identity.active_tenant(&tenant).await?.id;
                let secrets = openframe::management::agents::RegistrationSecrets::new(
                    identity.store.documents().clone(),
                    identity.master_key(),
                    identity.clock.clone(),
                );
                let secret = if rotate {
                    secrets.rotate(&tenant).await.map(|(made, _)| made)
                } else {
                    secrets.current(&tenant).await
                }
                .map_err(|error| IdentityError::Unexpected(anyhow::anyhow!("{error}")))?;
                let text = format!(
                    "registration secret of {tenant}: {}\ninstall an agent with: openframe agent install --server <URL> --initial-key {} --org <organizationId>",
                    secret.secret, secret.secret
                );
                Ok(Printed::new(&secret, text))
            }),
            TenantCommand::RotateKeys { tenancy, tenant } => {
                with_identity(&tenancy, async |identity| {
                    let rotation = admin::rotate_keys(identity, &tenant).await?;
                    let text = format!(
                        "new key {} is published now and signs from {} (Unix ms); the previous key stays published until its tokens expire",
                        rotation.new_kid, rotation.signs_from
                    );
                    Ok(Printed::new(&rotation, text))
                })
            }
        },
        Command::User {
            command:
                UserCommand::SetPassword {
                    tenancy,
                    tenant,
                    email,
                    password,
                },
        } => with_identity(&tenancy, async |identity| {
            let user = admin::set_password(identity, &tenant, &email, &password).await?;
            let text = format!(
                "set the password of {} in tenant {}; their sessions and tokens are revoked",
                user.email, user.tenant_id
            );
            Ok(Printed::new(&user, text))
        }),
        Command::User {
            command:
                UserCommand::Create {
                    tenancy,
                    tenant,
                    email,
                    password,
                    role,
                },
        } => with_identity(&tenancy, async |identity| {
            let user = admin::create_user(identity, &tenant, &email, &password, &role).await?;
            let text = format!(
                "created user {} ({}) in tenant {}",
                user.email, user.id, user.tenant_id
            );
            Ok(Printed::new(&user, text))
        }),
        Command::Client {
            command:
                ClientCommand::Create {
                    tenancy,
                    tenant,
                    name,
                    redirect_uris,
                    post_logout_redirect_uris,
                    public,
                    grants,
                    scopes,
                },
        } => with_identity(&tenancy, async |identity| {
            let new = NewClient {
                name,
                public,
                redirect_uris,
                post_logout_redirect_uris,
                grant_types: grants,
                scopes,
            };
            let client = admin::create_client(identity, &tenant, new).await?;
            let mut text = format!("client_id: {}", client.client_id);
            if let Some(secret) = &client.client_secret {
                text.push_str(&format!("\nclient_secret (shown once): {secret}"));
            }
            Ok(Printed::new(&client, text))
        }),
        Command::Sso {
            command:
                SsoCommand::Set {
                    tenancy,
                    tenant,
                    provider,
                    display_name,
                    issuer,
                    client_id,
                    client_secret_file,
                    allowed_domains,
                    auto_provision,
                    ca_file,
                },
        } => {
            let client_secret = std::fs::read_to_string(&client_secret_file)
                .map_err(|error| {
                    anyhow::anyhow!("cannot read {}: {error}", client_secret_file.display())
                })?
                .trim()
                .to_owned();
            let new = openframe::identity::sso::NewSso {
                provider,
                display_name,
                issuer,
                client_id,
                client_secret,
                allowed_domains,
                auto_provision_users: auto_provision,
                ca_file,
            };
            with_identity(&tenancy, async |identity| {
                let summary = admin::set_sso(identity, &tenant, new).await?;
                let text = format!(
                    "tenant {} signs in with {} ({}); register this redirect URI there: {}",
                    summary.tenant_id, summary.provider, summary.issuer, summary.redirect_uri
                );
                Ok(Printed::new(&summary, text))
            })
        }
        Command::Tool { command } => tool_command(command),
        Command::Apikey { command } => apikey_command(command),
        Command::Reindex { tenancy, tenant } => reindex_command(&tenancy, tenant.as_deref()),
        Command::Backup(args) => backup_command(&args),
        Command::Restore(args) => restore_command(&args),
        Command::MigrateStorage(args) => migrate_storage_command(&args),
        Command::Org {
            command:
                OrgCommand::Create {
                    tenancy,
                    tenant,
                    name,
                    id,
                },
        } => with_identity(&tenancy, async |identity| {
            let tenant = identity.active_tenant(&tenant).await?.id;
            let mut organization = openframe::inventory::Organization::named(
                match id {
                    Some(id) => id,
                    None => openframe::identity::crypto::random_uuid()?,
                },
                name.trim(),
            );
            organization.created_at = Some(identity.clock.now_ms());
            organization.updated_at = organization.created_at;
            openframe::inventory::store_organization(
                identity.store.documents().as_ref(),
                &tenant,
                &organization,
            )
            .await
            .map_err(|error| match error {
                openframe::inventory::InventoryError::Invalid(invalid) => {
                    IdentityError::Invalid(invalid)
                }
                other => IdentityError::Unexpected(anyhow::anyhow!("{other}")),
            })?;
            let text = format!(
                "organization {} ({}) saved in {tenant}",
                organization.organization_id, organization.name
            );
            Ok(Printed::new(&organization, text))
        }),
        Command::Healthcheck {
            url,
            ca_cert,
            timeout_seconds,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let answer = runtime.block_on(openframe::ops::healthcheck(
                &url,
                ca_cert.as_deref(),
                Duration::from_secs(timeout_seconds),
            ))?;
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `openframe reindex`: holds the data-dir lock (so `serve` is not running), opens every store and
/// rebuilds the derived ones, with a progress bar on a terminal.
fn reindex_command(args: &TenancyArgs, only: Option<&str>) -> anyhow::Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let flags = CliOverrides {
        data_dir: args.data_dir.clone(),
        ..CliOverrides::default()
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    // Records that cannot be read back are named in the log, on stderr.
    openframe::telemetry::init(&config.log);
    let data_dir = config.storage.data_dir.clone();
    if !data_dir.is_dir() {
        anyhow::bail!(
            "there is no data dir at {}: nothing to reindex (give --data-dir)",
            data_dir.display()
        );
    }
    let lock = openframe::datadir::DataDirLock::acquire(&data_dir)
        .map_err(|error| anyhow::anyhow!("{error}; stop the appliance before reindexing"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        openframe::upgrade::backup_before_migrating(&config).await?;
        let clock: Arc<dyn openframe_storage::Clock> =
            Arc::new(openframe_storage::model::SystemClock);
        let storage = openframe_storage::Storage::open(&config.storage_config(), clock.clone())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let inventory = openframe::inventory::Inventory::new(
            storage.documents.clone(),
            storage.analytics.clone(),
            clock,
        );
        let known = storage.tenants.tenants().await;
        let tenants = match (known, only) {
            (Err(error), _) => Err(anyhow::anyhow!("reading tenants: {error}")),
            (Ok(known), Some(only)) => known
                .into_iter()
                .find(|tenant| tenant.id.as_str() == only)
                .map(|tenant| vec![tenant.id])
                .ok_or_else(|| anyhow::anyhow!("there is no tenant {only:?}")),
            (Ok(known), None) => Ok(known.into_iter().map(|tenant| tenant.id).collect()),
        };
        let terminal = std::io::stderr().is_terminal();
        let result = match tenants {
            Ok(tenants) => {
                openframe::stream::reindex::reindex(&storage, &inventory, &tenants, |progress| {
                    let line = format!(
                        "reindexing {} {} {} of ~{} entries",
                        progress.tenant,
                        progress_bar(progress.done, progress.expected),
                        progress.done,
                        progress.expected
                    );
                    let mut stderr = std::io::stderr();
                    if terminal {
                        let _ = write!(stderr, "\r{line}");
                    } else {
                        let _ = writeln!(stderr, "{line}");
                    }
                })
                .await
            }
            Err(error) => Err(error),
        };
        if terminal {
            eprintln!();
        }
        let closed = storage.close().await;
        let rebuilt = result?;
        closed.map_err(|error| anyhow::anyhow!("closing the stores: {error}"))?;
        Ok::<_, anyhow::Error>(rebuilt)
    });
    drop(lock);
    let rebuilt = outcome?;
    if args.json {
        let report: Vec<serde_json::Value> = rebuilt
            .iter()
            .map(|tenant| {
                serde_json::json!({
                    "tenant": tenant.tenant.as_str(),
                    "entries": tenant.entries,
                    "devices": tenant.devices,
                    "unreadable": tenant.unreadable,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for tenant in &rebuilt {
            println!(
                "{}: {} log entries and {} devices reindexed{}",
                tenant.tenant,
                tenant.entries,
                tenant.devices,
                if tenant.unreadable > 0 {
                    format!(", {} unreadable (see the log)", tenant.unreadable)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `[#####               ]  25%`: how far `done` is towards `total`.
fn progress_bar(done: u64, total: u64) -> String {
    let share = (done * 100)
        .checked_div(total)
        .map_or(100, |share| share.min(100));
    let bar: String = (0..20)
        .map(|step| if step * 5 < share { '#' } else { ' ' })
        .collect();
    format!("[{bar}] {share:>3}%")
}

/// Prints a backup's or a restore's progress on stderr: one line per step, and on a terminal a bar
/// redrawn in place while a large file is copied.
struct Console {
    prefix: &'static str,
    terminal: bool,
    bar_shown: bool,
}

impl Console {
    fn new(prefix: &'static str) -> Console {
        use std::io::IsTerminal as _;
        Console {
            prefix,
            terminal: std::io::stderr().is_terminal(),
            bar_shown: false,
        }
    }
}

impl openframe::backup::Report for Console {
    fn line(&mut self, line: &str) {
        if std::mem::take(&mut self.bar_shown) {
            eprint!("\r\x1b[K");
        }
        eprintln!("{}: {line}", self.prefix);
    }

    fn items(&mut self, name: &str, done: u64, total: u64) {
        if self.terminal {
            self.bar_shown = true;
            eprint!(
                "\r\x1b[K{}: {name} {} {done} of {total}",
                self.prefix,
                progress_bar(done, total)
            );
        }
    }

    fn bytes(&mut self, name: &str, done: u64, total: u64) {
        if self.terminal {
            self.bar_shown = true;
            eprint!(
                "\r\x1b[K{}: {name} {} {} of {}",
                self.prefix,
                progress_bar(done, total),
                openframe::backup::human_bytes(done),
                openframe::backup::human_bytes(total)
            );
        }
    }
}

/// `openframe backup`: through the running appliance when the data dir is locked, else directly.
fn backup_command(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let flags = CliOverrides {
        data_dir: args.data_dir.clone(),
        ..CliOverrides::default()
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    let data_dir = config.storage.data_dir.clone();
    let partial = openframe::backup::prepare_out(&args.out)?;
    let started = std::time::Instant::now();
    let mut progress = Console::new("backup");
    let runtime = tokio::runtime::Runtime::new()?;
    let written = match openframe::datadir::lock_holder(&data_dir) {
        Some(_) => {
            let token_path = data_dir.join(openframe::backup::TOKEN_FILE);
            let token = std::fs::read_to_string(&token_path).map_err(|error| {
                anyhow::anyhow!(
                    "the appliance is running, and its admin token {} cannot be read ({error}); run the backup as the user that runs openframe",
                    token_path.display()
                )
            })?;
            let admin_url = args.admin_url.clone().unwrap_or_else(|| {
                let mut address = config.server.admin_listen;
                if address.ip().is_unspecified() {
                    address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{address}")
            });
            runtime.block_on(openframe::backup::backup_remote(
                &admin_url,
                token.trim(),
                &partial,
                &mut progress,
            ))
        }
        None => {
            openframe::telemetry::init(&config.log);
            progress.line("nothing serves the data dir; reading the stores directly");
            runtime.block_on(openframe::backup::backup_local(
                &config,
                &partial,
                &mut progress,
            ))
        }
    };
    let manifest = openframe::backup::finish_archive(&partial, &args.out, written)?;
    let bytes = std::fs::metadata(&args.out).map_or(0, |metadata| metadata.len());
    println!(
        "backup written to {}: {} files, {} tenants, {} in {:.1} s",
        args.out.display(),
        manifest.files.len(),
        manifest.tenants.len(),
        openframe::backup::human_bytes(bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `openframe migrate-storage`: the data dir's stores of record into the external engines.
fn migrate_storage_command(args: &MigrateStorageArgs) -> anyhow::Result<ExitCode> {
    use openframe::migrate_storage::Target;
    let flags = CliOverrides {
        data_dir: args.data_dir.clone(),
        ..CliOverrides::default()
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    let target = Target::parse(&args.to)?;
    openframe::telemetry::init(&config.log);
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let migrated = runtime.block_on(openframe::migrate_storage::migrate(
        &config,
        target,
        &mut Console::new("migrate-storage"),
    ))?;
    if args.json {
        println!("{}", serde_json::to_string(&migrated)?);
    } else {
        let (what, setting) = match target {
            Target::Mongo => (
                format!(
                    "{} tenants and {} documents",
                    migrated.tenants, migrated.documents
                ),
                "[storage] documents = \"mongo\"",
            ),
            Target::Kafka => (
                format!(
                    "{} records in {} streams and {} committed offsets",
                    migrated.records, migrated.streams, migrated.committed_offsets
                ),
                "[storage] events = \"kafka\"",
            ),
        };
        println!(
            "copied and verified {what} in {:.1} s; set {setting} and start the appliance",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `openframe restore`: into an absent or empty data dir nothing serves.
fn restore_command(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let flags = CliOverrides {
        data_dir: args.data_dir.clone(),
        ..CliOverrides::default()
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    openframe::telemetry::init(&config.log);
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let manifest = runtime.block_on(openframe::backup::restore(
        &args.from,
        &config,
        &mut Console::new("restore"),
    ))?;
    println!(
        "restored {} tenants from {} (openframe {}, {}) into {} in {:.1} s",
        manifest.tenants.len(),
        args.from.display(),
        manifest.appliance_version,
        manifest.created_at,
        config.storage.data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn apikey_command(command: ApikeyCommand) -> anyhow::Result<ExitCode> {
    use openframe::gateway::api_keys::{ApiKeys, KeySettings, RateLimits};
    let keys = async |identity: &Identity| -> Result<ApiKeys, IdentityError> {
        let keys = ApiKeys::new(
            identity.tenants.clone(),
            identity.store.documents().clone(),
            identity.clock.clone(),
            &identity.master_key(),
            &openframe::config::GatewaySection::default(),
        )?;
        keys.load().await?;
        Ok(keys)
    };
    let describe = |record: &openframe::gateway::api_keys::ApiKeyRecord| {
        serde_json::json!({
            "id": record.id,
            "name": record.name,
            "enabled": record.enabled,
            "scopes": record.scopes,
            "expiresAt": record.expires_at,
            "rateLimits": record.rate_limits,
        })
    };
    match command {
        ApikeyCommand::Create {
            tenancy,
            tenant,
            name,
            description,
            scopes,
            expires_at,
            per_minute,
            per_hour,
            per_day,
        } => {
            let expires_at = expires_at
                .map(|text| {
                    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                        .map(|at| i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
                        .map_err(|_| anyhow::anyhow!("--expires-at {text:?} is not an RFC 3339 time such as 2027-01-31T00:00:00Z"))
                })
                .transpose()?;
            let settings = KeySettings {
                name,
                description,
                scopes: (!scopes.is_empty()).then_some(scopes),
                expires_at,
                rate_limits: RateLimits {
                    per_minute,
                    per_hour,
                    per_day,
                },
                enabled: true,
            };
            with_identity(&tenancy, async |identity| {
                let tenant = identity.active_tenant(&tenant).await?.id;
                let (record, full) = keys(identity)
                    .await?
                    .create(&tenant, "cli", settings)
                    .await?;
                let mut json = describe(&record);
                json["fullKey"] = full.clone().into();
                let text = format!(
                    "API key {} created; the key (shown once): {full}",
                    record.id
                );
                Ok(Printed::new(&json, text))
            })
        }
        ApikeyCommand::List { tenancy, tenant } => with_identity(&tenancy, async |identity| {
            let tenant = identity.active_tenant(&tenant).await?.id;
            let listed = keys(identity).await?.list(&tenant).await?;
            let text = listed
                .iter()
                .map(|(record, stats)| {
                    format!(
                        "{}\t{}\t{}\t{} requests",
                        record.id,
                        record.name,
                        if record.enabled {
                            "enabled"
                        } else {
                            "disabled"
                        },
                        stats.total_requests
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            let json: Vec<serde_json::Value> = listed
                .iter()
                .map(|(record, stats)| {
                    let mut json = describe(record);
                    json["stats"] = serde_json::to_value(stats).unwrap_or_default();
                    json
                })
                .collect();
            Ok(Printed::new(&json, text))
        }),
        ApikeyCommand::Delete {
            tenancy,
            tenant,
            id,
        } => with_identity(&tenancy, async |identity| {
            let tenant = identity.active_tenant(&tenant).await?.id;
            keys(identity).await?.delete(&tenant, &id).await?;
            Ok(Printed::new(
                &serde_json::json!({"deleted": id}),
                format!("API key {id} deleted"),
            ))
        }),
    }
}

fn tool_command(command: ToolCommand) -> anyhow::Result<ExitCode> {
    use openframe::gateway::tools::{CredentialKind, NewTool, ToolRegistry};
    let registry = |identity: &Identity| {
        ToolRegistry::new(
            identity.store.documents().clone(),
            identity.clock.clone(),
            identity.master_key(),
        )
        .map_err(IdentityError::from)
    };
    let summary = |tool: &openframe::gateway::tools::ToolRecord| {
        serde_json::json!({
            "id": tool.id,
            "name": tool.name,
            "toolType": tool.tool_type,
            "apiUrl": tool.api_url,
            "wsUrl": tool.ws_url,
            "allowedPaths": tool.allowed_paths,
            "agentAllowedPaths": tool.agent_allowed_paths,
            "tlsVerify": tool.tls_verify,
            "hasCredentials": tool.credential.is_some(),
        })
    };
    match command {
        ToolCommand::Set {
            tenancy,
            tenant,
            id,
            name,
            tool_type,
            api_url,
            ws_url,
            credential_file,
            credential_header,
            allowed_paths,
            agent_allowed_paths,
            ca_file,
            insecure_skip_tls_verify,
            health_path,
            health_check_seconds,
        } => {
            let credential = match credential_file {
                None => None,
                Some(path) => {
                    let secret = std::fs::read_to_string(&path)
                        .map_err(|error| {
                            anyhow::anyhow!("cannot read {}: {error}", path.display())
                        })?
                        .trim()
                        .to_owned();
                    Some(match credential_header {
                        Some(header) => (CredentialKind::Header, header, secret),
                        None => (CredentialKind::BearerToken, String::new(), secret),
                    })
                }
            };
            let new = NewTool {
                name: if name.is_empty() { id.clone() } else { name },
                id,
                tool_type,
                api_url,
                ws_url,
                credential,
                keep_credential: false,
                allowed_paths,
                agent_allowed_paths,
                ca_file,
                tls_verify: !insecure_skip_tls_verify,
                health_path,
                health_check_seconds,
            };
            with_identity(&tenancy, async |identity| {
                let tenant = identity.active_tenant(&tenant).await?.id;
                let tool = registry(identity)?.set(&tenant, new).await?;
                let text = format!(
                    "tool {} of tenant {} proxied at /tools/{}/ to {}",
                    tool.id,
                    tenant.as_str(),
                    tool.id,
                    tool.api_url
                );
                Ok(Printed::new(&summary(&tool), text))
            })
        }
        ToolCommand::List { tenancy, tenant } => with_identity(&tenancy, async |identity| {
            let tenant = identity.active_tenant(&tenant).await?.id;
            let tools = registry(identity)?.list(&tenant).await?;
            let text = tools
                .iter()
                .map(|tool| format!("{}\t{}\t{}", tool.id, tool.tool_type, tool.api_url))
                .collect::<Vec<_>>()
                .join("\n");
            let json: Vec<serde_json::Value> = tools.iter().map(summary).collect();
            Ok(Printed::new(&json, text))
        }),
    }
}

/// A command's result, as JSON and as text.
struct Printed {
    json: serde_json::Value,
    text: String,
}

impl Printed {
    fn new(value: &impl serde::Serialize, text: String) -> Printed {
        Printed {
            json: serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            text,
        }
    }
}

/// Opens the tenancy store and the identity service for one command, runs it, prints the answer.
fn with_identity(
    args: &TenancyArgs,
    command: impl AsyncFnOnce(&Identity) -> Result<Printed, IdentityError>,
) -> anyhow::Result<ExitCode> {
    let flags = CliOverrides {
        data_dir: args.data_dir.clone(),
        ..CliOverrides::default()
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    let data_dir = config.storage.data_dir.clone();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)
        .map_err(|error| {
            anyhow::anyhow!("cannot create the data dir {}: {error}", data_dir.display())
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let clock: Arc<dyn openframe_storage::Clock> =
            Arc::new(openframe_storage::model::SystemClock);
        openframe::upgrade::refuse_pending_tenancy_migration(&config.storage_config())?;
        let tenancy =
            openframe_storage::Storage::open_tenancy(&config.storage_config(), clock.clone())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        let identity = Identity::open(
            tenancy.tenants.clone(),
            tenancy.documents.clone(),
            &data_dir,
            &config,
            clock,
        );
        let result = match identity {
            Ok(identity) => command(&identity).await.map_err(anyhow::Error::from),
            Err(error) => Err(error),
        };
        let _ = tenancy.close().await;
        let printed = result?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&printed.json)?);
        } else {
            println!("{}", printed.text);
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let application =
        Application::build(config, Arc::new(openframe_storage::model::SystemClock)).await?;
    tracing::info!(data_dir = %application.data_dir().display(), "stores open");
    let data_dir = application.data_dir();
    if let Some(outcome) =
        admin::bootstrap_if_empty(&application.state().identity, &data_dir).await?
    {
        let file = data_dir.join(admin::INITIAL_PASSWORD_FILE);
        // The password goes to the terminal of whoever started us, never into the log.
        tracing::info!(
            tenant = %outcome.tenant.id,
            owner = %outcome.admin_email,
            sign_in = %outcome.sign_in_url,
            password_file = %file.display(),
            "first start: created the default tenant and its owner; the one-time password is in the password file"
        );
        if std::io::IsTerminal::is_terminal(&std::io::stdout())
            && let Some(password) = &outcome.generated_password
        {
            println!(
                "\nOpenFrame is ready. Sign in at {} as {} with the one-time password:\n\n    {password}\n\n(also in {}; delete that file once you have signed in)\n",
                outcome.sign_in_url,
                outcome.admin_email,
                file.display()
            );
        }
    }
    application.run_until_stopped(shutdown_signal()).await
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C). The handlers are installed when this
/// is called, not when the future is first polled: "openframe is serving" is logged before
/// that, and a stop sent right after it must not meet the default action (killed, no clean
/// shutdown).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (mut terminate, mut interrupt) = match handlers {
            (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}
