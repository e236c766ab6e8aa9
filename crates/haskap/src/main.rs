//! `haskap`: the command line of the Haskap city data platform.
//!
//! `haskap serve` runs the NGSI-LD broker (with the city dashboard, and with `--demo` the Tomakomai
//! demo dataset); `haskap import` loads a municipal open-data CSV into any NGSI-LD broker. This crate
//! is glue only: configuration, start-up and shutdown; everything else lives in the library crates.

mod import;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use haskap_api::{ApiConfig, AppState};
use haskap_store::{Store, StoreOptions};

/// mimalloc returns memory to the system more readily than glibc's allocator under many threads,
/// and allocates faster: both matter for a broker that keeps all entities in memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "haskap",
    version,
    about = "Haskap: the open city data platform of Tomakomai, an NGSI-LD context broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(Box<ServeArgs>),
    /// Import a municipal standard open dataset (CSV) into an NGSI-LD broker.
    Import(import::ImportArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HASKAP_LISTEN", default_value = "127.0.0.1:1026")]
    listen: SocketAddr,
    /// Directory of the durable store.
    #[arg(long, env = "HASKAP_DATA_DIR", default_value = "./haskap-data")]
    data_dir: PathBuf,
    /// Public base URL of this broker (for hosted @contexts); defaults to http://LISTEN.
    #[arg(long, env = "HASKAP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "HASKAP_LOG_JSON")]
    log_json: bool,
    /// Largest request body in bytes.
    #[arg(long, env = "HASKAP_BODY_LIMIT", default_value_t = 8 << 20)]
    body_limit: usize,
    /// Most entities in one batch operation.
    #[arg(long, env = "HASKAP_MAX_BATCH", default_value_t = 10_000)]
    max_batch: usize,
    /// Most attributes one entity may have.
    #[arg(long, env = "HASKAP_MAX_ATTRIBUTES", default_value_t = 1024)]
    max_attributes: usize,
    /// Deepest nesting of sub-attributes.
    #[arg(long, env = "HASKAP_MAX_DEPTH", default_value_t = 8)]
    max_depth: usize,
    /// Longest id in bytes (entity and subscription ids, relationship objects, datasetIds), at
    /// most 16384.
    #[arg(long, env = "HASKAP_MAX_ID_BYTES", default_value_t = 2048, value_parser = clap::value_parser!(u16).range(1..=16384))]
    max_id_bytes: u16,
    /// Longest entity type or attribute name in bytes, as sent and expanded, at most 16384.
    #[arg(long, env = "HASKAP_MAX_NAME_BYTES", default_value_t = 512, value_parser = clap::value_parser!(u16).range(1..=16384))]
    max_name_bytes: u16,
    /// Longest URL in bytes (@context URLs, jsonldContext, notification endpoints), at most 16384.
    #[arg(long, env = "HASKAP_MAX_URL_BYTES", default_value_t = 2048, value_parser = clap::value_parser!(u16).range(1..=16384))]
    max_url_bytes: u16,
    /// Default page size of queries.
    #[arg(long, env = "HASKAP_DEFAULT_PAGE", default_value_t = 20)]
    default_page: usize,
    /// Largest page size a query may ask for.
    #[arg(long, env = "HASKAP_MAX_PAGE", default_value_t = 1000)]
    max_page: usize,
    /// How long a notification is retried before it is given up, in seconds.
    #[arg(long, env = "HASKAP_NOTIFY_HORIZON_S", default_value_t = 300)]
    notify_horizon_s: u64,
    /// Timeout for fetching a remote @context, in milliseconds.
    #[arg(long, env = "HASKAP_CONTEXT_TIMEOUT_MS", default_value_t = 3000)]
    context_timeout_ms: u64,
    /// PEM file of certificates to trust for mqtts:// notification endpoints, besides the public
    /// roots (a city's own MQTT broker with its own CA).
    #[arg(long, env = "HASKAP_MQTT_CA_FILE")]
    mqtt_ca_file: Option<PathBuf>,
    /// How many changes a live stream (SSE) client may fall behind before it is dropped with a
    /// reconnect hint (it then resumes by Last-Event-ID); rounded up to a power of two.
    #[arg(long, env = "HASKAP_STREAM_BUFFER", default_value_t = haskap_api::stream::DEFAULT_BUFFER as u64,
          value_parser = clap::value_parser!(u64).range(1..=haskap_api::stream::REPLAY_EVENTS as u64))]
    stream_buffer: u64,
    /// Load the Tomakomai demo dataset (sample data) once, into an empty store.
    #[arg(long, env = "HASKAP_DEMO")]
    demo: bool,
    /// An interim zero-carbon target of the demo as YEAR=PERCENT below FY2013 (repeatable), e.g.
    /// 2030=46; net zero in 2050 is always drawn.
    #[arg(long = "zero-carbon-target", value_name = "YEAR=PERCENT")]
    zero_carbon_targets: Vec<haskap_city::demo::Milestone>,
    /// Raster tile URL template drawn under the dashboard's map (`https://…/{z}/{x}/{y}.png`).
    #[arg(long, env = "HASKAP_TILE_URL")]
    tile_url: Option<String>,
    /// Attribution text the tiles require.
    #[arg(long, env = "HASKAP_TILE_ATTRIBUTION")]
    tile_attribution: Option<String>,
    /// Serve the dashboard's files from this directory instead of the built-in copy (development).
    #[arg(long, env = "HASKAP_DASHBOARD_DIR")]
    dashboard_dir: Option<PathBuf>,
    /// Most client connections open at once (beyond it a new one is answered 503 and closed);
    /// lowered to fit the open-file limit, which is raised to its maximum at start-up.
    #[arg(long, env = "HASKAP_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a connection has to send a request's complete header once it is ready for one
    /// (after connecting or after the previous response): idle and slow connections are closed.
    #[arg(long, env = "HASKAP_HEADER_TIMEOUT_S", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_s: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, env = "HASKAP_BODY_TIMEOUT_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_s: u64,
    /// A host name requests may be addressed to (the Host header), repeatable. On a loopback
    /// address only the loopback names and the public URL's host are allowed by default (against
    /// DNS rebinding); on other addresses any name, unless some are given.
    #[arg(long = "allowed-host", env = "HASKAP_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// An origin allowed to call the API from a browser (CORS), repeatable; `*` allows any.
    /// CORS is off when none is given.
    #[arg(long = "cors-origin", env = "HASKAP_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Free disk space in MiB kept in reserve: below it writes are refused (503, /ready false)
    /// until space is freed.
    #[arg(long, env = "HASKAP_MIN_FREE_DISK_MB", default_value_t = 64)]
    min_free_disk_mb: u64,
    /// Most hosted @contexts one tenant may keep.
    #[arg(long, env = "HASKAP_MAX_HOSTED_CONTEXTS", default_value_t = 100)]
    max_hosted_contexts: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haskap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_json);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let served = rt.block_on(serve(*args));
            // Blocking tasks (a notification's retries) are not waited for.
            rt.shutdown_timeout(Duration::from_secs(2));
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => {
            init_logging(false);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(import::run(args))
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HASKAP_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let open_files = raise_open_file_limit();
    let store_options = StoreOptions { min_free_bytes: args.min_free_disk_mb << 20, ..StoreOptions::default() };
    let store = Store::open(&args.data_dir, store_options)
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let public_url = args.public_url.unwrap_or_else(|| format!("http://{}", args.listen));
    let limits = haskap_model::parse::Limits {
        max_attributes: args.max_attributes,
        max_sub_depth: args.max_depth,
        max_id_bytes: usize::from(args.max_id_bytes),
        max_name_bytes: usize::from(args.max_name_bytes),
        max_url_bytes: usize::from(args.max_url_bytes),
    };
    let config = ApiConfig {
        body_limit: args.body_limit,
        max_batch: args.max_batch,
        limits,
        default_page: args.default_page,
        max_page: args.max_page,
        allowed_hosts: haskap_api::guard::default_allowed_hosts(args.listen, &public_url, &args.allowed_hosts),
        public_url,
        body_timeout: Duration::from_secs(args.body_timeout_s),
        cors_origins: args.cors_origins,
        max_hosted_contexts: args.max_hosted_contexts,
        context_timeout: Duration::from_millis(args.context_timeout_ms),
        notify_horizon: Duration::from_secs(args.notify_horizon_s),
        mqtt_ca_file: args.mqtt_ca_file.clone(),
        stream_buffer: usize::try_from(args.stream_buffer).unwrap_or(haskap_api::stream::DEFAULT_BUFFER),
        version: serde_json::json!({
            "name": "haskap",
            "version": env!("CARGO_PKG_VERSION"),
            "ngsiLdApi": "1.8.1",
            "build": option_env!("HASKAP_BUILD").unwrap_or("dev"),
        }),
    };
    let state = AppState::new(store.clone(), config).context("initialising the API")?;
    // Room for the store, notifications and the stream besides client connections.
    let max_connections = args.max_connections.min(open_files.saturating_sub(512) as usize).max(16);
    let connection_limits =
        haskap_api::ConnectionLimits { max_connections, header_timeout: Duration::from_secs(args.header_timeout_s) };
    haskap_api::start_background(&state);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, data_dir = %args.data_dir.display(), max_connections, open_files, "haskap serves");
    if args.demo {
        tokio::spawn(load_demo(store.clone(), local, args.zero_carbon_targets));
    }
    let dashboard = haskap_city::dashboard::DashboardConfig {
        tile_url: args.tile_url,
        tile_attribution: args.tile_attribution,
        dir: args.dashboard_dir,
    };
    let app = haskap_api::router(state.clone()).merge(haskap_city::dashboard::router(dashboard));
    let app = haskap_api::guard::harden(app, &state);
    tokio::select! {
        served = haskap_api::serve(listener, app, connection_limits, shutdown_signal()) => served?,
        why = store_failure(&store) => {
            anyhow::bail!("the store cannot take writes any more ({why}); exiting so that a supervisor restarts haskap")
        }
    }
    store.shutdown();
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Completes when the store's write path cannot continue, with the reason.
async fn store_failure(store: &Store) -> String {
    let mut health = store.health_changes();
    loop {
        if let haskap_store::Health::Failed(why) = &*health.borrow_and_update() {
            return why.clone();
        }
        if health.changed().await.is_err() {
            return "the store closed".into();
        }
    }
}

/// Raises the soft limit of open files to the hard limit (every connection is one); returns the
/// limit in force.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Loads the demo dataset through this broker's own NGSI-LD API, once: a store that has held it
/// before (even if the city changed or deleted entities since) is left alone.
async fn load_demo(store: Store, local: SocketAddr, milestones: Vec<haskap_city::demo::Milestone>) {
    const MARK: &str = "demo-loaded";
    if store.scan_meta(MARK).is_ok_and(|m| !m.is_empty()) {
        tracing::info!("demo dataset already loaded once; left as it is");
        return;
    }
    let ip = if local.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { local.ip() };
    let base = format!("http://{}", SocketAddr::new(ip, local.port()));
    for part in haskap_city::demo::dataset(&milestones) {
        let broker =
            haskap_city::broker::Broker::new(&base, Some(part.tenant), haskap_model::builtin::CITY_CONTEXT_URL);
        match broker.sync(&part.entities, |_| {}).await {
            Ok(n) => {
                tracing::info!(tenant = part.tenant, created = n.created, updated = n.updated, "demo dataset loaded")
            }
            Err(e) => return tracing::error!(tenant = part.tenant, "loading the demo dataset failed: {e}"),
        }
    }
    if let Err(e) = store.put_meta(MARK, b"1") {
        tracing::error!("recording that the demo dataset is loaded failed: {e}");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
