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
    Serve(ServeArgs),
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
            rt.block_on(serve(args))?;
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
    let store = Store::open(&args.data_dir, StoreOptions::default())
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let limits = haskap_model::parse::Limits { max_attributes: args.max_attributes, max_sub_depth: args.max_depth };
    let config = ApiConfig {
        body_limit: args.body_limit,
        max_batch: args.max_batch,
        limits,
        default_page: args.default_page,
        max_page: args.max_page,
        public_url: args.public_url.unwrap_or_else(|| format!("http://{}", args.listen)),
        context_timeout: Duration::from_millis(args.context_timeout_ms),
        notify_horizon: Duration::from_secs(args.notify_horizon_s),
        mqtt_ca_file: args.mqtt_ca_file.clone(),
        version: serde_json::json!({
            "name": "haskap",
            "version": env!("CARGO_PKG_VERSION"),
            "ngsiLdApi": "1.8.1",
            "build": option_env!("HASKAP_BUILD").unwrap_or("dev"),
        }),
    };
    let state = AppState::new(store.clone(), config).context("initialising the API")?;
    haskap_api::start_background(&state);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, data_dir = %args.data_dir.display(), "haskap serves");
    if args.demo {
        tokio::spawn(load_demo(store.clone(), local, args.zero_carbon_targets));
    }
    let dashboard = haskap_city::dashboard::DashboardConfig {
        tile_url: args.tile_url,
        tile_attribution: args.tile_attribution,
        dir: args.dashboard_dir,
    };
    let app = haskap_api::router(state).merge(haskap_city::dashboard::router(dashboard));
    haskap_api::serve(listener, app, shutdown_signal()).await?;
    store.shutdown();
    tracing::info!("stopped cleanly");
    Ok(())
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
