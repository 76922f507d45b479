//! Terminal output of a streamed answer: thinking dimmed (or hidden), the answer plain.

use std::io::{IsTerminal, Write};

use keye_chat::{ReasoningSplitter, SegmentKind};

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

pub struct Printer {
    splitter: ReasoningSplitter,
    hide_thinking: bool,
    styled: bool,
    last_kind: Option<SegmentKind>,
}

impl Printer {
    pub fn new(hide_thinking: bool) -> Self {
        Self {
            splitter: ReasoningSplitter::new(),
            hide_thinking,
            styled: std::io::stdout().is_terminal(),
            last_kind: None,
        }
    }

    pub fn print(&mut self, delta: &str) -> std::io::Result<()> {
        let segments = self.splitter.push(delta);
        self.write(segments)
    }

    pub fn finish(&mut self) -> std::io::Result<()> {
        let segments = self.splitter.finish();
        self.write(segments)?;
        let mut out = std::io::stdout().lock();
        if self.styled && self.last_kind == Some(SegmentKind::Thinking) {
            write!(out, "{RESET}")?;
        }
        writeln!(out)?;
        out.flush()
    }

    fn write(&mut self, segments: Vec<keye_chat::Segment>) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        for segment in segments {
            if segment.kind == SegmentKind::Thinking && self.hide_thinking {
                continue;
            }
            if self.last_kind != Some(segment.kind) {
                if self.styled {
                    match segment.kind {
                        SegmentKind::Thinking => write!(out, "{DIM}")?,
                        SegmentKind::Answer => write!(out, "{RESET}")?,
                    }
                }
                if self.last_kind == Some(SegmentKind::Thinking) && !self.hide_thinking {
                    writeln!(out)?;
                }
                self.last_kind = Some(segment.kind);
            }
            write!(out, "{}", segment.text)?;
        }
        out.flush()
    }
}
