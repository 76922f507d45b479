//! `keye`: run, chat with, serve, evaluate and benchmark Keye-VL models. A thin layer over the `keye` library.

mod args;
mod bench;
mod chat;
mod media;
mod printer;
mod quantize;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "keye", version, about = "Run Keye-VL vision-language models in Rust", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Answer one question (with images) and exit.
    Run(run::RunArgs),
    /// Multi-turn chat in the terminal (`/image PATH`, `/reset`, `/exit`).
    Chat(chat::ChatArgs),
    /// Show what the model will see of an image or video (frames, sizes, tokens) without loading weights.
    Media(media::MediaArgs),
    /// Serve an OpenAI-compatible API and a web chat page.
    Serve(keye_server::ServeArgs),
    /// Run and score VLMEvalKit-compatible benchmarks, locally or against an OpenAI-compatible endpoint.
    Eval {
        #[command(subcommand)]
        command: keye_eval::cli::EvalCommand,
    },
    /// Measure load, vision, prefill and decode speed on a full-size random-weight checkpoint.
    Bench(bench::BenchArgs),
    /// Write a checkpoint as one self-contained GGUF file, its weights quantized (q8_0, q4_0, q4_k) or not.
    Quantize(quantize::QuantizeArgs),
}

fn main() -> ExitCode {
    keep_freed_memory_mapped();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Media(args) => media::run(&args),
        Command::Serve(args) => keye_server::serve(args).map_err(anyhow::Error::from),
        Command::Eval { command } => eval(command),
        Command::Bench(args) => bench::run(&args),
        Command::Quantize(args) => quantize::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

fn eval(command: keye_eval::cli::EvalCommand) -> anyhow::Result<()> {
    let summary = keye_eval::cli::execute(command, &keye_eval::LocalEngine)?;
    if !summary.is_success() {
        anyhow::bail!("some datasets could not be evaluated (see above)");
    }
    Ok(())
}

/// The error and its causes, skipping causes whose text the message already includes.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Every layer allocates activation buffers of tens of megabytes and frees them again. glibc
/// serves blocks above 32 MiB with fresh mappings and hands freed heap tops back to the kernel,
/// so each layer paid a page fault and the kernel's zeroing for every page it wrote: a tenth of
/// a vision encode. Served from the heap and never trimmed, freed buffers are reused as they are
/// (the process keeps its peak activation memory). A `GLIBC_TUNABLES` setting of the user wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory_mapped() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    // SAFETY: `mallopt` only changes allocator parameters; nothing has been allocated by other
    // threads yet. -1 disables trimming (mallopt(3)).
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory_mapped() {}
