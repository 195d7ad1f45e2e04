//! The `latchkey` command: serve, migrate, and administer.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use latchkey::config::{one_line_error, Cli, Command, Common, LogFormat, ServeArgs};
use tracing_subscriber::EnvFilter;

/// mimalloc: the request path allocates and frees many small buffers (JSON,
/// headers, SQL arguments) across threads, where glibc's allocator spent
/// about 8 % of the server's CPU under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_failure(err),
    };
    if cli.command.is_none() {
        match ServeArgs::try_parse_from_env() {
            Ok(args) => cli.command = Some(Command::Serve(Box::new(args))),
            Err(err) => return clap_failure(err),
        }
    }
    let filter = match EnvFilter::try_new(&cli.common.log) {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!("latchkey: LATCHKEY_LOG is not a valid log filter (example: info,latchkey=debug): {err}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(filter, cli.common.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("latchkey: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("latchkey: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version are printed as clap makes them; a wrong flag or
/// `LATCHKEY_*` value is one line naming the setting, like every start-up check.
fn clap_failure(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        _ => {
            eprintln!("latchkey: {}", one_line_error(&err, &Cli::command()));
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let common = cli.common;
    match cli.command {
        None => anyhow::bail!("no command"),
        Some(Command::Serve(args)) => serve(&common, &args).await,
        Some(command) => latchkey::cli::run(&common, command).await,
    }
}

async fn serve(common: &Common, args: &ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Settings first, then the listeners (a port in use stops start-up before
    // any data is written), then the database and keys.
    args.validate(common).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("LATCHKEY_LISTEN: cannot listen on {}: {e}", args.listen))?;
    let metrics_listener = match args.metrics_addr().map_err(anyhow::Error::msg)? {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("LATCHKEY_METRICS_LISTEN: cannot listen on {addr}: {e}")
        })?),
        None => None,
    };
    let state = latchkey::state::AppState::build(common, args).await?;
    let router = latchkey::app::build_router(state.clone(), args.static_dir(), args.body_limit);
    let upkeep = state.spawn_upkeep(args.cache_refresh);
    let senders = latchkey::webhooks::start(&state).await?;
    if let Some(listener) = metrics_listener {
        let handle = latchkey::metrics::install()
            .ok_or_else(|| anyhow::anyhow!("cannot install the metrics recorder"))?;
        // Histograms buffer samples until rendered: fold them in regularly even
        // when nobody scrapes, so memory stays flat.
        let upkeep_handle = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep_handle.run_upkeep();
            }
        });
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, latchkey::metrics::router(handle)).await {
                tracing::warn!(error = %err, "metrics listener stopped");
            }
        });
    }
    tracing::info!(
        listen = %args.listen,
        origin = %state.settings.origin,
        base_path = %state.settings.base_path,
        version = env!("CARGO_PKG_VERSION"),
        startup_ms = started.elapsed().as_millis() as u64,
        "latchkey is ready"
    );
    latchkey::app::serve(
        listener,
        router,
        args.connection_limits(),
        shutdown_signal(),
    )
    .await?;
    upkeep.abort();
    senders.iter().for_each(tokio::task::JoinHandle::abort);
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn init_tracing(filter: EnvFilter, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
