//! `dwcp bench`: measurements against named peers.

use crate::cli::BenchCommand;

/// Runs a benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Coldstart(_) | BenchCommand::Http(_) | BenchCommand::NativeHello { .. } => {
            anyhow::bail!("benchmarks are not built yet")
        }
    }
}
