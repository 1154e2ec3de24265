//! `dwcp`: the command-line interface of DWCP. A thin layer: it parses the
//! command line and either runs a node (`dwcp up`) or speaks to a node's
//! admin API. Every command is described, with an example, in `docs/cli.md`.

mod access;
mod ask;
mod ask_llm;
mod bench;
mod bench_codec;
mod bench_crypto;
mod bench_flags;
mod bench_rollout;
mod bench_state;
mod cache;
mod cli;
mod client;
mod commands;
mod experiment;
mod flags;
mod r#gen;
mod keys;
mod nodes;
mod observe;
mod rollout;
mod settings;
mod signing;
mod snapshots;
mod up;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

// The request path allocates many small, short-lived objects (stores,
// resource tables, hyper buffers); glibc's malloc spent about 15% of a
// loaded node's CPU on them (perf, docs/performance.md), mimalloc less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Other crates in the build enable rustls's `ring` provider too; with
    // two and no default, rustls would refuse to pick.
    dwcp_crypto::tls::install_default_provider();
    let matches = cli::Cli::command().get_matches();
    let mut cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = settings::apply(&mut cli, &matches) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
