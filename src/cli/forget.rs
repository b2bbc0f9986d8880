//! `switchboard forget PROJECT`: deletes everything Redis holds of one project (a tenant that
//! leaves the platform), after saying what it would delete.

use crate::config::Config;
use crate::contract::Id;
use crate::store::{Store, StoreOptions};

/// What `switchboard forget` deletes, and whether it is meant.
#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// The project id.
    pub project: String,
    /// Delete. Without it, only say how many keys would go.
    #[arg(long)]
    pub yes: bool,
}

/// Counts the project's keys, and with `--yes` deletes them. Fails if keys are still there
/// afterwards: events of the project were applied meanwhile (the platform still sends them),
/// and what they wrote would otherwise stay unnoticed.
pub async fn run(config: Config, args: ForgetArgs) -> anyhow::Result<()> {
    let project = Id::parse(&args.project).map_err(|e| anyhow::anyhow!("project id {e}"))?;
    let store = Store::connect(&config.redis_nodes(), StoreOptions::from_config(&config)).await?;
    if !args.yes {
        let held = store.project_keys(&project).await?.len();
        println!(
            "project {project}: {held} key(s); run again with --yes to delete them (stop the \
             platform's events for it first)"
        );
        return Ok(());
    }
    let deleted = store.forget_project(&project).await?;
    let left = store.project_keys(&project).await?.len();
    if left > 0 {
        anyhow::bail!(
            "project {project}: deleted {deleted} key(s), but {left} were written meanwhile: \
             events of the project are still being applied; stop them and run again"
        );
    }
    println!("project {project}: deleted {deleted} key(s)");
    Ok(())
}
