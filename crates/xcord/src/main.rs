//! `xcord serve | migrate | jobs | version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use xcord::{Application, Config, startup, telemetry};

/// A self-hostable, Discord-style chat backend.
#[derive(Debug, Parser)]
#[command(name = "xcord", version, about)]
struct Cli {
    /// Configuration file (default: ./xcord.toml when present).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default when no command is given).
    Serve {
        /// Roles to run, comma-separated: api, gateway, voice, jobs (default: all).
        #[arg(long, value_name = "LIST")]
        roles: Option<String>,
        /// Create a default server with this name once (seed 002's channels) and have
        /// every new user and guest join it; ignored when XCORD_DEFAULT_SERVER_ID is set.
        #[arg(long, value_name = "NAME")]
        default_server: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect and repair the job queue (docs/jobs.md).
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Print the version and exit.
    Version,
}

/// What `xcord jobs` does. Filters narrow every action.
#[derive(Debug, Subcommand)]
enum JobsAction {
    /// Lists jobs, newest first, with counts by state.
    List {
        #[command(flatten)]
        filter: JobsFilter,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Makes finished jobs (dead by default) wait again from now, with fresh attempts.
    Retry {
        #[command(flatten)]
        filter: JobsFilter,
    },
    /// Deletes finished jobs (done, dead, cancelled); waiting and running ones are kept.
    Purge {
        #[command(flatten)]
        filter: JobsFilter,
    },
}

#[derive(Debug, clap::Args)]
struct JobsFilter {
    /// Only jobs in this state: waiting, running, done, dead, cancelled.
    #[arg(long)]
    state: Option<String>,
    /// Only jobs of this kind, e.g. scheduled_message, auto_message.
    #[arg(long)]
    kind: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        roles: None,
        default_server: None,
    });
    if let Command::Version = command {
        println!("xcord {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xcord: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Command::Serve {
        default_server: Some(name),
        ..
    } = &command
    {
        config.default_server_name = Some(name.clone());
    }
    if let Command::Serve {
        roles: Some(list), ..
    } = &command
        && let Err(e) = config.set_roles(list)
    {
        eprintln!("xcord: {e:#}");
        return ExitCode::from(2);
    }
    // Only serving cares which roles run; `migrate` works whatever XCORD_ROLES says.
    if let Command::Serve { .. } = &command
        && let Err(e) = config.check_roles()
    {
        eprintln!("xcord: configuration error: {e:#}");
        return ExitCode::from(2);
    }
    if let Err(e) = telemetry::init(&config.log, config.log_format) {
        eprintln!("xcord: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xcord: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Migrate => migrate(&config).await,
            Command::Jobs { action } => jobs(&config, action).await,
            _ => serve(&config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "xcord stopped with an error");
            eprintln!("xcord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    let roles: Vec<&str> = config.roles.iter().map(|r| r.name()).collect();
    let backend = xcord_store::Backend::from_url(&config.effective_database_url())
        .map_or("unknown", |b| b.name());
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!(%addr, roles = roles.join(","), database = backend, "listening on {addr}");
    } else {
        // The ready line is part of the contract even when logging is turned down.
        println!("xcord listening on {addr}");
    }
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        trigger.cancel();
    });
    app.run_until_stopped(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = startup::connect_store(config).await?;
    store.migrate().await?;
    let applied = store.applied_migrations().await?;
    println!(
        "xcord: {} database is at migration {}",
        store.backend().name(),
        applied
            .last()
            .map_or_else(|| "none".to_owned(), ToString::to_string)
    );
    store.close().await;
    Ok(())
}

async fn jobs(config: &Config, action: JobsAction) -> anyhow::Result<()> {
    use xcord_store::{JobFilter, JobState};
    let to_filter = |f: JobsFilter, default_state: Option<JobState>| -> anyhow::Result<JobFilter> {
        let state = match f.state.as_deref() {
            Some(s) => Some(JobState::parse(s).ok_or_else(|| {
                anyhow::anyhow!("--state must be waiting, running, done, dead or cancelled")
            })?),
            None => default_state,
        };
        Ok(JobFilter {
            state,
            kind: f.kind,
            limit: None,
        })
    };
    let store = startup::connect_store(config).await?;
    store.migrate().await?;
    let now = xcord_types::Timestamp::now();
    match action {
        JobsAction::List { filter, limit } => {
            let mut f = to_filter(filter, None)?;
            f.limit = Some(limit);
            for c in store.job_counts().await? {
                println!("{:<10} {:<20} {}", c.state.as_str(), c.kind, c.count);
            }
            println!();
            println!(
                "{:<20} {:<18} {:<10} {:>8} {:<24} error",
                "id", "kind", "state", "attempts", "due"
            );
            for j in store.jobs(&f).await? {
                println!(
                    "{:<20} {:<18} {:<10} {:>8} {:<24} {}",
                    j.id,
                    j.kind,
                    j.state.as_str(),
                    j.attempts,
                    j.due_at.to_rfc3339(),
                    j.last_error.unwrap_or_default()
                );
            }
        }
        JobsAction::Retry { filter } => {
            let n = store
                .retry_jobs(&to_filter(filter, Some(JobState::Dead))?, now)
                .await?;
            println!("xcord: {n} jobs will run again");
        }
        JobsAction::Purge { filter } => {
            let n = store.purge_jobs(&to_filter(filter, None)?).await?;
            println!("xcord: {n} finished jobs deleted");
        }
    }
    store.close().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
