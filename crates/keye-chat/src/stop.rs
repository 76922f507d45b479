/// Detects stop strings in streamed text. Give it the whole text generated so far after every
/// step (the text only ever grows); it reports either where a stop string begins, or how much of
/// the text is safe to show because no stop string can start there any more. Text that might be
/// the beginning of a stop string is withheld, so a client never sees part of one.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// No stop string starts before this byte offset of the text.
    scan_from: usize,
}

/// Result of [`StopMatcher::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCheck {
    /// `stops[stop_index]` occupies `text[start..end]`; the output is `text[..start]` (or
    /// `text[..end]` to include the stop string).
    Stopped {
        stop_index: usize,
        start: usize,
        end: usize,
    },
    /// No stop string yet; `text[..safe_len]` can be shown, the rest is a pending partial match.
    Continue { safe_len: usize },
}

impl StopMatcher {
    /// Empty stop strings are ignored: they would match before any text.
    pub fn new<I, S>(stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            stops: stops
                .into_iter()
                .map(Into::into)
                .filter(|stop: &String| !stop.is_empty())
                .collect(),
            scan_from: 0,
        }
    }

    pub fn stops(&self) -> &[String] {
        &self.stops
    }

    /// Checks the text generated so far. Only the part after the previous safe length is
    /// searched, so streaming costs time proportional to the new text, not the whole text.
    pub fn check(&mut self, text: &str) -> StopCheck {
        let mut start = self.scan_from.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let window = &text[start..];

        let earliest = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(index, stop)| window.find(stop.as_str()).map(|at| (at, index)))
            .min();
        if let Some((at, stop_index)) = earliest {
            let start = start + at;
            return StopCheck::Stopped {
                stop_index,
                start,
                end: start + self.stops[stop_index].len(),
            };
        }

        let pending = self
            .stops
            .iter()
            .map(|stop| longest_suffix_prefix(window.as_bytes(), stop.as_bytes()))
            .max()
            .unwrap_or(0);
        // A suffix of valid UTF-8 that equals the start of a stop string begins with that
        // string's first byte, a character boundary.
        let safe_len = text.len() - pending;
        self.scan_from = safe_len;
        StopCheck::Continue { safe_len }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &[u8], stop: &[u8]) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&len| text.ends_with(&stop[..len]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams `text` in pieces of `step` characters; returns what a client would have been
    /// shown and whether the stream stopped.
    fn stream(matcher: &mut StopMatcher, text: &str, step: usize) -> (String, bool) {
        let chars: Vec<char> = text.chars().collect();
        let mut so_far = String::new();
        let mut shown = 0;
        for piece in chars.chunks(step) {
            so_far.extend(piece);
            match matcher.check(&so_far) {
                StopCheck::Stopped { start, .. } => {
                    assert!(start >= shown, "a stop string began in text already shown");
                    return (so_far[..start].to_owned(), true);
                }
                StopCheck::Continue { safe_len } => {
                    assert!(safe_len >= shown, "safe length went backwards");
                    shown = safe_len;
                }
            }
        }
        (so_far[..shown].to_owned(), false)
    }

    #[test]
    fn stops_at_the_earliest_stop_string_for_every_piece_size() {
        let text = "The answer is 42.\nUser: next question";
        for step in 1..=text.len() {
            let mut matcher = StopMatcher::new(["User:", "\n\n"]);
            assert_eq!(
                stream(&mut matcher, text, step),
                ("The answer is 42.\n".to_owned(), true),
                "step {step}"
            );
        }
    }

    #[test]
    fn withholds_a_partial_match_then_releases_it() {
        let mut matcher = StopMatcher::new(["</answer>"]);
        assert_eq!(
            matcher.check("a </ans"),
            StopCheck::Continue { safe_len: 2 }
        );
        assert_eq!(
            matcher.check("a </ans!"),
            StopCheck::Continue { safe_len: 8 }
        );
    }

    #[test]
    fn reports_the_span_of_the_first_listed_stop_string_at_the_earliest_position() {
        let mut matcher = StopMatcher::new(["STOP", "ST"]);
        assert_eq!(
            matcher.check("xxSTOP"),
            StopCheck::Stopped {
                stop_index: 0,
                start: 2,
                end: 6
            }
        );
    }

    #[test]
    fn multibyte_text_and_stop_strings() {
        for step in 1..=6 {
            let mut matcher = StopMatcher::new(["。结束"]);
            assert_eq!(
                stream(&mut matcher, "你好。世界。结束了", step),
                ("你好。世界".to_owned(), true),
                "step {step}"
            );
        }
    }

    #[test]
    fn without_stop_strings_everything_is_safe() {
        let mut matcher = StopMatcher::new([""]);
        assert!(matcher.stops().is_empty());
        assert_eq!(matcher.check("abc"), StopCheck::Continue { safe_len: 3 });
        let mut matcher = StopMatcher::new(["zz"]);
        assert_eq!(
            stream(&mut matcher, "no stop here", 3),
            ("no stop here".to_owned(), false)
        );
    }
}
