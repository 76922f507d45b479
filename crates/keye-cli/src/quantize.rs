//! `keye quantize`: write a checkpoint as one self-contained GGUF file.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, bail};
use keye::{HubOptions, WeightFormat};
use keye_model::WeightFormats;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  keye quantize ./Keye-VL-1_5-8B --to q4_k -o keye-vl-1.5-8b-q4_k.gguf\n  \
    keye run --model keye-vl-1.5-8b-q4_k.gguf --image photo.jpg \"What is in this picture?\""
)]
pub struct QuantizeArgs {
    /// Checkpoint folder, GGUF file or Hugging Face hub id to convert.
    pub model: String,
    /// Format of the language model's linear weights (q/k/v/o, gate/up/down, lm_head):
    /// q8_0, q4_0, q4_k (GGML blocks), bf16 or stored.
    #[arg(long, value_name = "FORMAT")]
    pub to: WeightFormat,
    /// Format of the vision tower's and projector's linear weights. Matrices whose rows are not
    /// whole blocks fall back to q8_0 when they fit it, else stay as stored (the SigLIP MLP's
    /// fc2, 4304 columns).
    #[arg(long, value_name = "FORMAT", default_value = "stored")]
    pub vision_to: WeightFormat,
    /// The GGUF file to write.
    #[arg(short, long, value_name = "FILE.gguf")]
    pub output: PathBuf,
    /// Hub revision (branch, tag or commit) for hub ids.
    #[arg(long)]
    pub revision: Option<String>,
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    if args.output.is_dir() {
        bail!(
            "{} is a folder; -o takes the GGUF file to write",
            args.output.display()
        );
    }
    let mut hub = HubOptions::from_env();
    hub.revision = args.revision.clone();
    let formats = WeightFormats {
        text: args.to,
        vision: args.vision_to,
        // Only how the weights are stored is written; precision is chosen when running.
        ..WeightFormats::default()
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "writing {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(args.output.display().to_string());
        bar
    });
    let summary = keye::write_gguf(
        &args.model,
        &hub,
        formats,
        &args.output,
        &mut |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        },
    )?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let dtypes: Vec<String> = summary
        .dtypes
        .iter()
        .map(|(dtype, count)| format!("{count} {dtype}"))
        .collect();
    let size = match summary.data_bytes as f64 {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b => format!("{:.1} MB", b / 1e6),
    };
    println!(
        "wrote {} ({} tensors: {}; {size} of tensor data)",
        summary.path.display(),
        summary.tensors,
        dtypes.join(", "),
    );
    Ok(())
}
