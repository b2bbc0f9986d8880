//! The `switchboard` binary: parse the command line, hand over.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use switchboard::cli;
use switchboard::config::{Config, SettingError};

#[derive(Parser)]
#[command(version, about = "Assigns customer conversations to support agents")]
struct Args {
    /// A TOML configuration file; SWITCHBOARD_* environment variables override it.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a worker until SIGTERM or SIGINT.
    Run,
    /// Publish a demo stream (agents, conversations arriving and closing) and print decisions.
    Demo(cli::demo::DemoArgs),
    /// Publish events from a file: one JSON event, or one per line (NDJSON), with confirms.
    Publish {
        /// The file to read (`-` for standard input).
        file: PathBuf,
    },
    /// Show what the dead-letter queue holds and why; with --replay, send it back to the work
    /// queue once the cause is fixed (applying an event twice decides nothing twice).
    DeadLetters(cli::dead_letters::DeadLettersArgs),
    /// Delete everything Redis holds of one project (a tenant that leaves); without --yes, only
    /// count it.
    Forget(cli::forget::ForgetArgs),
    /// Show a project's agents (status, open/limit, eligibility), waiting queue and settings;
    /// with --waiting or --conversation, why conversations wait.
    Inspect(cli::inspect::InspectArgs),
    /// Drive a worker through a synthetic day and report fairness, loads and waits (+ SVG chart).
    Simulate(cli::simulate::SimulateArgs),
    /// Write the JSON Schemas of every event and the AsyncAPI document.
    Schemas {
        /// Folder to write into.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
    },
}

/// Exit status of a setting that cannot work (as `sysexits`' usage errors and most CLIs do).
const SETTING_ERROR: u8 = 2;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // The settings come first: they say how many threads the runtime gets.
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(setting) => return setting_error(&setting),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads.into())
        .enable_all()
        .build()
        .expect("the Tokio runtime starts");
    match runtime.block_on(run(args, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // One line each, no debug dump: a setting names itself; anything else says what failed.
        Err(error) => match error.downcast_ref::<SettingError>() {
            Some(setting) => setting_error(setting),
            None => {
                eprintln!("switchboard: {error:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

fn setting_error(setting: &SettingError) -> std::process::ExitCode {
    eprintln!("{setting}");
    std::process::ExitCode::from(SETTING_ERROR)
}

async fn run(args: Args, config: Config) -> anyhow::Result<()> {
    let level = if matches!(args.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    switchboard::telemetry::init_logging(&config.log_format, level);
    match args.command {
        Command::Run => cli::run::run(config).await,
        Command::Demo(demo) => cli::demo::run(config, demo).await,
        Command::Publish { file } => cli::publish::run(config, &file).await,
        Command::DeadLetters(dead) => cli::dead_letters::run(config, dead).await,
        Command::Forget(forget) => cli::forget::run(config, forget).await,
        Command::Inspect(inspect) => cli::inspect::run(config, inspect).await,
        Command::Simulate(simulate) => cli::simulate::run(config, simulate).await,
        Command::Schemas { out } => cli::schemas::run(&out),
    }
}
