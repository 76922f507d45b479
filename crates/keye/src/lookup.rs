//! Prompt-lookup drafting for speculative decoding: no draft model, only the sequence's own
//! tokens. When the latest few tokens occurred earlier (in the prompt or the answer so far),
//! the tokens that followed them then are a cheap guess of what follows now. One forward pass
//! checks the whole guess; answers that copy from their prompt (OCR, transcription, editing)
//! then produce several tokens per pass of the weights.

use crate::error::{Error, Result};

/// Most tokens one verification pass may draft: together with the pending token they must fit
/// the rows for which the model's logits stay bit-identical to single steps.
pub const MAX_DRAFT_TOKENS: usize = keye_model::MAX_EXACT_VERIFY_ROWS - 1;

/// Settings of prompt-lookup speculative decoding ([`crate::GenerationOptions::prompt_lookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptLookup {
    /// Most tokens drafted per forward pass, `1..=MAX_DRAFT_TOKENS`.
    pub draft_tokens: usize,
    /// Longest suffix of the sequence looked up, tried first: longer matches draft better.
    pub max_ngram: usize,
    /// Shortest suffix looked up; at least 1.
    pub min_ngram: usize,
}

/// A verification pass costs more than a plain step where matrix products are compute-bound
/// (quantised weights, few cores), so a lone repeated token is not trusted as a match.
impl Default for PromptLookup {
    fn default() -> Self {
        Self {
            draft_tokens: 8,
            max_ngram: 3,
            min_ngram: 2,
        }
    }
}

impl PromptLookup {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(1..=MAX_DRAFT_TOKENS).contains(&self.draft_tokens) {
            return Err(Error::InvalidRequest(format!(
                "prompt lookup drafts 1 to {MAX_DRAFT_TOKENS} tokens per pass, not {}",
                self.draft_tokens
            )));
        }
        if self.min_ngram == 0 || self.min_ngram > self.max_ngram {
            return Err(Error::InvalidRequest(format!(
                "prompt lookup n-gram sizes must satisfy 1 <= min ({}) <= max ({})",
                self.min_ngram, self.max_ngram
            )));
        }
        Ok(())
    }

    /// Replaces `draft` with up to `limit` (and `draft_tokens`) tokens guessed to follow
    /// `history`: those that followed the most recent earlier occurrence of its last `n` tokens,
    /// for the largest `n` from `max_ngram` down to `min_ngram` that occurs. Leaves `draft`
    /// empty when nothing matches.
    ///
    /// A match close to the end continues into the draft itself, so a repeating pattern is
    /// drafted for its full length rather than cut where the history ends.
    pub(crate) fn draft(&self, history: &[u32], limit: usize, draft: &mut Vec<u32>) {
        draft.clear();
        let limit = limit.min(self.draft_tokens);
        if limit == 0 {
            return;
        }
        let len = history.len();
        for n in (self.min_ngram..=self.max_ngram.min(len.saturating_sub(1))).rev() {
            let suffix = &history[len - n..];
            // Earlier windows only: the last one is the suffix itself.
            let Some(start) = history[..len - 1].windows(n).rposition(|w| w == suffix) else {
                continue;
            };
            let copy_from = start + n;
            for i in 0..limit {
                let at = copy_from + i;
                let token = if at < len {
                    history[at]
                } else {
                    draft[at - len]
                };
                draft.push(token);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(draft_tokens: usize, max_ngram: usize, min_ngram: usize) -> PromptLookup {
        PromptLookup {
            draft_tokens,
            max_ngram,
            min_ngram,
        }
    }

    fn drafted(settings: PromptLookup, history: &[u32], limit: usize) -> Vec<u32> {
        let mut draft = vec![99; 3];
        settings.draft(history, limit, &mut draft);
        draft
    }

    #[test]
    fn copies_what_followed_the_most_recent_match() {
        // "5 6" occurs at 1 (followed by 7 8) and at 5 (followed by 9 1); the latest wins.
        let history = [4, 5, 6, 7, 8, 5, 6, 9, 1, 2, 3, 5, 6];
        assert_eq!(drafted(lookup(2, 2, 2), &history, 8), [9, 1]);
    }

    #[test]
    fn prefers_the_longest_ngram_over_a_more_recent_shorter_one() {
        // The 3-gram "1 2 3" matches at 0 (→ 40); the 1-gram "3" alone would match at 6 (→ 50).
        let history = [1, 2, 3, 40, 41, 7, 3, 50, 1, 2, 3];
        assert_eq!(drafted(lookup(2, 3, 1), &history, 8), [40, 41]);
        assert_eq!(drafted(lookup(2, 1, 1), &history, 8), [50, 1]);
    }

    #[test]
    fn falls_back_to_shorter_ngrams_down_to_the_minimum() {
        let history = [8, 1, 9, 7, 2, 1];
        // No earlier "7 2 1" or "2 1"; "1" occurs at 1, followed by 9 7 2.
        assert_eq!(drafted(lookup(3, 3, 1), &history, 8), [9, 7, 2]);
        assert!(drafted(lookup(3, 3, 2), &history, 8).is_empty());
    }

    #[test]
    fn a_repeating_pattern_is_drafted_past_the_end_of_the_history() {
        // Period 3: the latest earlier "b c" is two tokens from the end; the draft keeps
        // copying the cycle instead of stopping after "a b c".
        let (a, b, c) = (10, 11, 12);
        let history = [7, a, b, c, a, b, c];
        assert_eq!(drafted(lookup(7, 2, 2), &history, 8), [a, b, c, a, b, c, a]);
        // A run of one token drafts more of it.
        assert_eq!(drafted(lookup(4, 3, 1), &[5, 3, 3], 8), [3, 3, 3, 3]);
    }

    #[test]
    fn respects_the_limit_and_the_setting() {
        let history = [1, 2, 3, 4, 5, 6, 1];
        assert_eq!(drafted(lookup(4, 1, 1), &history, 2), [2, 3]);
        assert_eq!(drafted(lookup(4, 1, 1), &history, 9), [2, 3, 4, 5]);
        assert!(drafted(lookup(4, 1, 1), &history, 0).is_empty());
    }

    #[test]
    fn short_or_unmatched_histories_draft_nothing() {
        let settings = PromptLookup::default();
        assert!(drafted(settings, &[], 8).is_empty());
        assert!(drafted(settings, &[1], 8).is_empty());
        assert!(drafted(settings, &[1, 2, 3, 4], 8).is_empty());
        assert!(drafted(settings, &[5, 1, 1], 8).is_empty());
        assert_eq!(drafted(lookup(8, 3, 1), &[1, 1], 8), vec![1; 8]);
    }

    #[test]
    fn settings_are_validated() {
        assert!(PromptLookup::default().validate().is_ok());
        assert!(lookup(MAX_DRAFT_TOKENS, 1, 1).validate().is_ok());
        for bad in [
            lookup(0, 3, 1),
            lookup(MAX_DRAFT_TOKENS + 1, 3, 1),
            lookup(8, 3, 0),
            lookup(8, 2, 3),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }
}
