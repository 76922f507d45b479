/// Whether a piece of generated text is reasoning or the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    Thinking,
    Answer,
}

/// A run of generated text of one kind, tags removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasoningChunk {
    pub kind: ChunkKind,
    pub text: String,
}

/// The reasoning spans Keye models write: `<think>…</think>`, and Keye-VL-1.5's auto-mode
/// `<analysis>…</analysis>` in which it picks a mode before thinking or answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Span {
    Think,
    Analysis,
}

impl Span {
    const ALL: [Span; 2] = [Span::Think, Span::Analysis];

    fn open(self) -> &'static str {
        match self {
            Span::Think => "<think>",
            Span::Analysis => "<analysis>",
        }
    }

    fn close(self) -> &'static str {
        match self {
            Span::Think => "</think>",
            Span::Analysis => "</analysis>",
        }
    }
}

/// Streaming separation of reasoning from the answer, fed with text deltas that may cut a tag
/// anywhere. Text inside a reasoning span is [`ChunkKind::Thinking`], everything else
/// [`ChunkKind::Answer`]; the tags themselves are dropped and nothing else is trimmed (as vLLM's
/// Qwen3 reasoning parser does, the answer keeps the `\n\n` after `</think>`). Spans may occur
/// anywhere and more than once; a closing tag outside its span is ordinary answer text. Text that
/// could be the start of a tag is held back until it is decided.
#[derive(Clone, Debug, Default)]
pub struct ReasoningSplitter {
    inside: Option<Span>,
    /// Undecided tail: a proper prefix of a tag that may continue in the next delta.
    pending: String,
}

impl ReasoningSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the text seen so far ends inside a reasoning span.
    pub fn in_reasoning(&self) -> bool {
        self.inside.is_some()
    }

    /// Feeds one delta; returns the decided text, at most one chunk per kind change.
    pub fn push(&mut self, delta: &str) -> Vec<ReasoningChunk> {
        let mut chunks = Vec::new();
        let mut buffer = std::mem::take(&mut self.pending);
        buffer.push_str(delta);
        let mut rest = buffer.as_str();
        loop {
            let kind = self.kind();
            match self.find_tag(rest) {
                Some((position, tag_len, next)) => {
                    push_chunk(&mut chunks, kind, &rest[..position]);
                    rest = &rest[position + tag_len..];
                    self.inside = next;
                }
                None => {
                    let held = self.undecided_suffix(rest);
                    let decided = rest.len() - held;
                    push_chunk(&mut chunks, kind, &rest[..decided]);
                    self.pending = rest[decided..].to_owned();
                    return chunks;
                }
            }
        }
    }

    /// Ends the stream: held-back text is released as what it is, ordinary text.
    pub fn finish(self) -> Option<ReasoningChunk> {
        if self.pending.is_empty() {
            return None;
        }
        Some(ReasoningChunk {
            kind: self.kind(),
            text: self.pending,
        })
    }

    fn kind(&self) -> ChunkKind {
        match self.inside {
            Some(_) => ChunkKind::Thinking,
            None => ChunkKind::Answer,
        }
    }

    /// Tags that change the state from here, with the state they lead to.
    fn active_tags(&self) -> impl Iterator<Item = (&'static str, Option<Span>)> {
        let (opening, closing) = match self.inside {
            None => (&Span::ALL[..], None),
            Some(span) => (&[][..], Some((span.close(), None))),
        };
        opening
            .iter()
            .map(|span| (span.open(), Some(*span)))
            .chain(closing)
    }

    /// The earliest active tag in `text`: its position, length and the state after it.
    fn find_tag(&self, text: &str) -> Option<(usize, usize, Option<Span>)> {
        self.active_tags()
            .filter_map(|(tag, next)| text.find(tag).map(|position| (position, tag.len(), next)))
            .min_by_key(|(position, _, _)| *position)
    }

    /// Length of the longest suffix of `text` that is a proper prefix of an active tag.
    fn undecided_suffix(&self, text: &str) -> usize {
        self.active_tags()
            .map(|(tag, _)| {
                (1..tag.len().min(text.len() + 1))
                    .rev()
                    .find(|&len| text.ends_with(&tag[..len]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }
}

fn push_chunk(chunks: &mut Vec<ReasoningChunk>, kind: ChunkKind, text: &str) {
    if text.is_empty() {
        return;
    }
    match chunks.last_mut() {
        Some(last) if last.kind == kind => last.text.push_str(text),
        _ => chunks.push(ReasoningChunk {
            kind,
            text: text.to_owned(),
        }),
    }
}

/// A finished generation split into reasoning and answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitReasoning {
    /// All reasoning spans, concatenated; empty when the model did not reason.
    pub reasoning: String,
    pub answer: String,
}

/// Non-streaming [`ReasoningSplitter`]: same rules, whole text at once.
pub fn split_reasoning(text: &str) -> SplitReasoning {
    let mut splitter = ReasoningSplitter::new();
    let mut split = SplitReasoning::default();
    let chunks = splitter.push(text);
    for chunk in chunks.into_iter().chain(splitter.finish()) {
        match chunk.kind {
            ChunkKind::Thinking => split.reasoning.push_str(&chunk.text),
            ChunkKind::Answer => split.answer.push_str(&chunk.text),
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thinking(text: &str) -> ReasoningChunk {
        ReasoningChunk {
            kind: ChunkKind::Thinking,
            text: text.into(),
        }
    }

    fn answer(text: &str) -> ReasoningChunk {
        ReasoningChunk {
            kind: ChunkKind::Answer,
            text: text.into(),
        }
    }

    /// Feeds `pieces` one by one and merges the output into runs of one kind.
    fn stream(pieces: &[&str]) -> Vec<ReasoningChunk> {
        let mut splitter = ReasoningSplitter::new();
        let mut merged = Vec::new();
        let mut produced: Vec<ReasoningChunk> = Vec::new();
        for piece in pieces {
            produced.extend(splitter.push(piece));
        }
        produced.extend(splitter.finish());
        for chunk in produced {
            push_chunk(&mut merged, chunk.kind, &chunk.text);
        }
        merged
    }

    /// Every way of cutting `text` into two and three deltas gives `expected`.
    fn check_all_cuts(text: &str, expected: &[ReasoningChunk]) {
        assert_eq!(stream(&[text]), expected, "whole text");
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &first in &boundaries {
            assert_eq!(
                stream(&[&text[..first], &text[first..]]),
                expected,
                "cut at {first}"
            );
            for &second in boundaries.iter().filter(|&&b| b >= first) {
                assert_eq!(
                    stream(&[&text[..first], &text[first..second], &text[second..]]),
                    expected,
                    "cuts at {first} and {second}"
                );
            }
        }
        let per_char: Vec<String> = text.chars().map(String::from).collect();
        let per_char: Vec<&str> = per_char.iter().map(String::as_str).collect();
        assert_eq!(stream(&per_char), expected, "one character at a time");
    }

    #[test]
    fn think_span_then_answer() {
        check_all_cuts(
            "<think>\nLet me think.\n</think>\n\nAnswer: 42",
            &[thinking("\nLet me think.\n"), answer("\n\nAnswer: 42")],
        );
    }

    #[test]
    fn auto_mode_analysis_then_think() {
        check_all_cuts(
            "<analysis>Hard: think.</analysis><think>步骤 😀</think>答案",
            &[thinking("Hard: think.步骤 😀"), answer("答案")],
        );
    }

    #[test]
    fn auto_mode_analysis_then_direct_answer() {
        check_all_cuts(
            "<analysis>Easy.</analysis>It is a cat.",
            &[thinking("Easy."), answer("It is a cat.")],
        );
    }

    #[test]
    fn no_tags_is_all_answer() {
        check_all_cuts("a < b and c <th d", &[answer("a < b and c <th d")]);
    }

    #[test]
    fn unclosed_span_is_thinking_and_partial_tag_is_released() {
        check_all_cuts("<think>still going </thi", &[thinking("still going </thi")]);
    }

    #[test]
    fn stray_closing_tag_is_answer_text() {
        check_all_cuts("x</think>y", &[answer("x</think>y")]);
    }

    #[test]
    fn held_prefix_is_released_when_it_does_not_become_a_tag() {
        let mut splitter = ReasoningSplitter::new();
        assert_eq!(splitter.push("Hello <thi"), vec![answer("Hello ")]);
        assert_eq!(splitter.push("s>"), vec![answer("<this>")]);
        assert!(splitter.finish().is_none());
    }

    #[test]
    fn split_reasoning_whole_text() {
        assert_eq!(
            split_reasoning("<think>a</think>b"),
            SplitReasoning {
                reasoning: "a".into(),
                answer: "b".into()
            }
        );
        assert_eq!(
            split_reasoning("plain"),
            SplitReasoning {
                reasoning: String::new(),
                answer: "plain".into()
            }
        );
    }
}
