//! The `latchkey` command: serve, migrate, and administer.

use std::process::ExitCode;

use clap::Parser;
use latchkey::config::{Cli, Command, LogFormat, ServeArgs};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.common.log, cli.common.log_format);
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let common = cli.common;
    match cli.command {
        None => serve(&common, &ServeArgs::parse_from_env()).await,
        Some(Command::Serve(args)) => serve(&common, &args).await,
        Some(command) => latchkey::cli::run(&common, command).await,
    }
}

async fn serve(common: &latchkey::config::Common, args: &ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let state = latchkey::state::AppState::build(common, args).await?;
    let static_dir = args
        .static_dir
        .clone()
        .unwrap_or_else(latchkey::config::default_static_dir);
    let router = latchkey::app::build_router(state.clone(), static_dir, args.body_limit);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (LATCHKEY_LISTEN): {e}", args.listen))?;
    let upkeep = state.spawn_upkeep(args.cache_refresh);
    let senders = latchkey::webhooks::start(&state).await?;
    if args.metrics_listen != "off" {
        let addr: std::net::SocketAddr = args.metrics_listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "LATCHKEY_METRICS_LISTEN must be an address such as 127.0.0.1:9464, or off"
            )
        })?;
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
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr} (LATCHKEY_METRICS_LISTEN): {e}")
        })?;
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, latchkey::metrics::router(handle)).await {
                tracing::warn!(error = %err, "metrics listener stopped");
            }
        });
    }
    tracing::info!(
        listen = %args.listen,
        origin = %state.settings.origin,
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

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
