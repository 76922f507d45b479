//! Terminal output of a streamed answer: thinking dimmed (or hidden), the answer plain.

use std::io::{IsTerminal, Write};

use keye_chat::{ChunkKind, ReasoningChunk, ReasoningSplitter};

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

pub struct Printer {
    splitter: Option<ReasoningSplitter>,
    hide_thinking: bool,
    styled: bool,
    last_kind: Option<ChunkKind>,
}

impl Printer {
    pub fn new(hide_thinking: bool) -> Self {
        Self {
            splitter: Some(ReasoningSplitter::new()),
            hide_thinking,
            styled: std::io::stdout().is_terminal(),
            last_kind: None,
        }
    }

    pub fn print(&mut self, delta: &str) -> std::io::Result<()> {
        let segments = match self.splitter.as_mut() {
            Some(splitter) => splitter.push(delta),
            None => Vec::new(),
        };
        self.write(segments)
    }

    pub fn finish(&mut self) -> std::io::Result<()> {
        let segments = self.splitter.take().and_then(ReasoningSplitter::finish);
        self.write(segments.into_iter().collect())?;
        let mut out = std::io::stdout().lock();
        if self.styled && self.last_kind == Some(ChunkKind::Thinking) {
            write!(out, "{RESET}")?;
        }
        writeln!(out)?;
        out.flush()
    }

    fn write(&mut self, segments: Vec<ReasoningChunk>) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        for segment in segments {
            if segment.kind == ChunkKind::Thinking && self.hide_thinking {
                continue;
            }
            if self.last_kind != Some(segment.kind) {
                if self.styled {
                    match segment.kind {
                        ChunkKind::Thinking => write!(out, "{DIM}")?,
                        ChunkKind::Answer => write!(out, "{RESET}")?,
                    }
                }
                if self.last_kind == Some(ChunkKind::Thinking) && !self.hide_thinking {
                    writeln!(out)?;
                }
                self.last_kind = Some(segment.kind);
            }
            write!(out, "{}", segment.text)?;
        }
        out.flush()
    }
}
