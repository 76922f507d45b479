//! `keye run`: one request, streamed to the terminal.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use keye::{Completion, Flow, Request, TokenEvent};
use keye_chat::{Content, ImagePart, Message, MessagesFile, Part};

use crate::args::{GenerationArgs, ImageArgs, ModelArgs, VideoArgs, progress_bars};
use crate::printer::Printer;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The question. Read from standard input when absent and stdin is not a terminal.
    pub prompt: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image to ask about: a path, file://, http(s):// or data: URL (repeatable).
    #[arg(long = "image", short = 'i')]
    pub images: Vec<String>,
    /// Video to ask about: a file (mp4, mkv, webm, mov, avi, …), file:// or http(s):// URL, or a
    /// folder of frame images (repeatable).
    #[arg(long = "video", short = 'v')]
    pub videos: Vec<String>,
    /// A whole conversation as JSON (the fixtures' messages.json format); media paths are
    /// relative to the file.
    #[arg(long, conflicts_with_all = ["prompt", "images", "videos", "system"])]
    pub messages: Option<PathBuf>,
    /// System prompt (default: the chat template's).
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub video: VideoArgs,
    /// `text` streams the answer; `json` prints one JSON object with text, token ids, usage
    /// and timings.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Write the request's intermediate tensors (names as the reference fixtures) to this
    /// safetensors file.
    #[arg(long, value_name = "FILE.safetensors")]
    pub dump: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let mut request = match &args.messages {
        Some(path) => Request::new(MessagesFile::load(path)?.into_resolved()),
        None => Request::new(single_turn(args)?),
    };
    request.thinking = args.generation.thinking();
    request.generation = args.generation.options();
    request.trace = args.dump.is_some();
    request.progress = progress_bars();

    let keye = args.model.load()?;
    let completion = match args.output {
        OutputFormat::Text => {
            let mut printer = Printer::new(args.generation.hide_thinking);
            let mut failure = None;
            let completion = keye.generate(&request, &mut |event: &TokenEvent| match printer
                .print(&event.text)
            {
                Ok(()) => Flow::Continue,
                Err(e) => {
                    failure = Some(e);
                    Flow::Stop
                }
            })?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            printer.finish()?;
            if std::io::stderr().is_terminal() {
                eprintln!("{}", summary(&completion));
            }
            completion
        }
        OutputFormat::Json => {
            let completion = keye.generate(&request, &mut |_: &TokenEvent| Flow::Continue)?;
            println!("{}", json_output(&completion));
            completion
        }
    };
    if let Some(path) = &args.dump {
        let trace = completion
            .trace
            .as_ref()
            .context("the request produced no trace")?;
        trace.write_safetensors(path)?;
    }
    Ok(())
}

fn single_turn(args: &RunArgs) -> Result<Vec<Message>> {
    let prompt = match &args.prompt {
        Some(p) => p.clone(),
        None if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text.trim_end().to_owned()
        }
        None => bail!("give a prompt, e.g. keye run --image photo.jpg \"Describe this image.\""),
    };
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.clone()));
    }
    let mut parts: Vec<Part> = args
        .images
        .iter()
        .map(|source| {
            Part::Image(ImagePart {
                source: source.clone(),
                options: args.image.options(),
            })
        })
        .collect();
    parts.extend(args.videos.iter().map(|source| args.video.part(source)));
    parts.push(Part::Text(prompt));
    messages.push(Message::user(Content::Parts(parts)));
    Ok(messages)
}

pub fn summary(c: &Completion) -> String {
    let t = &c.timings;
    let decode_rate = if c.usage.completion_tokens > 1 && !t.decode.is_zero() {
        (c.usage.completion_tokens - 1) as f64 / t.decode.as_secs_f64()
    } else {
        0.0
    };
    let drafts = if c.drafts.drafted > 0 {
        format!(
            "; {} of {} drafted tokens accepted",
            c.drafts.accepted, c.drafts.drafted
        )
    } else {
        String::new()
    };
    format!(
        "[{} prompt tokens, {} generated ({}); first token {:.2} s, {:.2} tokens/s{drafts}]",
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
        c.finish_reason.as_str(),
        t.first_token().as_secs_f64(),
        decode_rate
    )
}

fn json_output(c: &Completion) -> serde_json::Value {
    let split = keye_chat::split_reasoning(&c.text);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    serde_json::json!({
        "text": c.text,
        "thinking": split.reasoning,
        "answer": split.answer,
        "token_ids": c.token_ids,
        "finish_reason": c.finish_reason.as_str(),
        "usage": {
            "prompt_tokens": c.usage.prompt_tokens,
            "completion_tokens": c.usage.completion_tokens,
        },
        "timings": {
            "preprocess_ms": ms(c.timings.preprocess),
            "vision_ms": ms(c.timings.vision),
            "prefill_ms": ms(c.timings.prefill),
            "decode_ms": ms(c.timings.decode),
            "first_token_ms": ms(c.timings.first_token()),
        },
        "drafts": {
            "drafted_tokens": c.drafts.drafted,
            "accepted_tokens": c.drafts.accepted,
            "verify_passes": c.drafts.verify_passes,
        },
    })
}
