//! `keye chat`: a multi-turn conversation in the terminal.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use keye::{Flow, Request, TokenEvent};
use keye_chat::{Content, ImagePart, Message, Part};

use crate::args::{GenerationArgs, ImageArgs, ModelArgs, VideoArgs, progress_bars};
use crate::printer::Printer;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System prompt (default: the chat template's).
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub video: VideoArgs,
}

const HELP: &str =
    "commands: /image PATH, /video PATH (attach to your next message), /reset, /exit";

pub fn run(args: &ChatArgs) -> Result<()> {
    let keye = args.model.load()?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("keye chat with {} — {HELP}", keye.model_dir().display());
    }
    let fresh = || -> Vec<Message> {
        args.system
            .iter()
            .map(|s| Message::system(s.clone()))
            .collect()
    };
    let mut history = fresh();
    let mut attached: Vec<Part> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next().transpose()? else {
            break;
        };
        let line = line.trim();
        match line
            .split_once(' ')
            .map_or((line, ""), |(c, rest)| (c, rest.trim()))
        {
            ("", _) => continue,
            ("/exit" | "/quit", _) => break,
            ("/reset", _) => {
                history = fresh();
                attached.clear();
                eprintln!("(conversation cleared)");
                continue;
            }
            ("/image", path) if !path.is_empty() => {
                attached.push(Part::Image(ImagePart {
                    source: path.to_owned(),
                    options: args.image.options(),
                }));
                eprintln!("(image attached to your next message)");
                continue;
            }
            ("/video", path) if !path.is_empty() => {
                attached.push(args.video.part(path));
                eprintln!("(video attached to your next message)");
                continue;
            }
            (command, _) if command.starts_with('/') => {
                eprintln!("{HELP}");
                continue;
            }
            _ => {}
        }
        let mut parts = std::mem::take(&mut attached);
        parts.push(Part::Text(line.to_owned()));
        history.push(Message::user(Content::Parts(parts)));
        let mut request = Request::new(history.clone());
        request.thinking = args.generation.thinking();
        request.generation = args.generation.options();
        request.progress = progress_bars();
        let mut printer = Printer::new(args.generation.hide_thinking);
        let result = keye.generate(&request, &mut |event: &TokenEvent| {
            if printer.print(&event.text).is_err() {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        match result {
            Ok(completion) => {
                printer.finish()?;
                if interactive {
                    eprintln!("{}", crate::run::summary(&completion));
                }
                // Later turns see the answer without its thinking, as Qwen3-style templates do.
                let answer = keye_chat::split_reasoning(&completion.text).answer;
                history.push(Message::assistant(answer.trim()));
            }
            Err(error) => {
                // The failed turn is dropped so the conversation can go on.
                history.pop();
                eprintln!("error: {error}");
            }
        }
    }
    Ok(())
}
