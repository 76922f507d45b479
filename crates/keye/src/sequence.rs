//! A sequence being generated: its cache, sampler and stop state. One `Keye` drives any number
//! of sequences; `Keye::step` advances several at once (batched decoding).

use std::time::{Duration, Instant};

use keye_chat::{StopCheck, StopMatcher, StreamDecoder};
use keye_model::{KvCache, Sampler};

use crate::error::Result;
use crate::lookup::PromptLookup;
use crate::trace::Trace;
use crate::{Flow, TokenSink};

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_new_tokens` or the context was reached.
    Length,
    /// The caller stopped it.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// Wall-clock time per stage of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Media loading and preprocessing, template rendering and tokenisation.
    pub preprocess: Duration,
    /// Vision tower and projector.
    pub vision: Duration,
    /// Prompt forward pass up to the first sampled token.
    pub prefill: Duration,
    /// Every later forward pass.
    pub decode: Duration,
}

impl Timings {
    /// Time to first token.
    pub fn first_token(&self) -> Duration {
        self.preprocess + self.vision + self.prefill
    }
}

/// What speculative decoding did for one request (all zero without it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DraftStats {
    /// Tokens proposed by prompt lookup and checked by the model.
    pub drafted: usize,
    /// Drafted tokens the model agreed with: each saved a forward pass.
    pub accepted: usize,
    /// Forward passes that checked a draft.
    pub verify_passes: usize,
}

/// A generated token and the text it completed (empty while a character or a possible stop
/// string is still incomplete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEvent {
    pub id: u32,
    pub text: String,
}

/// The result of a finished request.
#[derive(Clone, Debug)]
pub struct Completion {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
    pub drafts: DraftStats,
    /// Present when the request asked for it.
    pub trace: Option<Trace>,
}

pub struct Sequence {
    pub(crate) cache: KvCache,
    pub(crate) sampler: Sampler,
    /// Prompt and generated ids: the repetition penalty's history.
    pub(crate) history: Vec<u32>,
    pub(crate) prompt_len: usize,
    pub(crate) generated: Vec<u32>,
    pub(crate) rope_delta: i64,
    pub(crate) max_new_tokens: usize,
    pub(crate) end_ids: Vec<u32>,
    pub(crate) decoder: Option<StreamDecoder>,
    pub(crate) stops: StopMatcher,
    /// Everything decoded so far; `text[..shown]` has been handed out in events.
    pub(crate) text: String,
    pub(crate) shown: usize,
    /// Text released by the current token, not yet in an event.
    pub(crate) released: String,
    pub(crate) events: Vec<TokenEvent>,
    pub(crate) finish: Option<FinishReason>,
    pub(crate) timings: Timings,
    pub(crate) trace: Option<Trace>,
    pub(crate) lookup: Option<PromptLookup>,
    /// Tokens proposed for the next forward pass, after the pending token.
    pub(crate) draft: Vec<u32>,
    pub(crate) drafts: DraftStats,
}

impl Sequence {
    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_len
    }

    pub fn generated_tokens(&self) -> &[u32] {
        &self.generated
    }

    /// The answer so far, without text held back for a possible stop string.
    pub fn text(&self) -> &str {
        &self.text[..self.shown]
    }

    pub fn draft_stats(&self) -> DraftStats {
        self.drafts
    }

    /// Events produced since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<TokenEvent> {
        std::mem::take(&mut self.events)
    }

    /// Hands the pending events to `sink`, cancelling if it asks to stop.
    pub(crate) fn deliver_events(&mut self, sink: &mut dyn TokenSink) {
        for event in self.take_events() {
            if sink.on_token(&event) == Flow::Stop {
                self.cancel();
            }
        }
    }

    /// Stops generating; text held back for a possible stop string is released.
    pub fn cancel(&mut self) {
        if self.finish.is_none() {
            // Only a decoding error can fail here, and the caller is abandoning the text anyway.
            let _ = self.end(FinishReason::Cancelled);
        }
    }

    /// The last sampled token, which the model has not consumed yet.
    pub(crate) fn pending_token(&self) -> Option<u32> {
        if self.finish.is_some() {
            None
        } else {
            self.generated.last().copied()
        }
    }

    /// Records a sampled token: decides whether generation ends and what text it adds.
    pub(crate) fn accept(&mut self, token: u32) -> Result<()> {
        self.generated.push(token);
        self.history.push(token);
        if self.end_ids.contains(&token) {
            self.events.push(TokenEvent {
                id: token,
                text: String::new(),
            });
            return self.end(FinishReason::Stop);
        }
        let decoder = self.decoder.as_mut().expect("decoder lives until the end");
        if let Some(delta) = decoder.push(token)? {
            self.text.push_str(&delta);
        }
        let stopped = self.release_text();
        self.events.push(TokenEvent {
            id: token,
            text: std::mem::take(&mut self.released),
        });
        if stopped {
            self.finish = Some(FinishReason::Stop);
            self.decoder = None;
        } else if self.generated.len() >= self.max_new_tokens
            // No cache row left for the new token. Counted from the ids, not `cache.len()`,
            // because a verification pass has already cached tokens that are not accepted yet.
            || self.prompt_len + self.generated.len() > self.cache.capacity()
        {
            self.end(FinishReason::Length)?;
        }
        Ok(())
    }

    /// Fills `draft` for the next forward pass, taking at most `spare_rows` rows of it. The
    /// pass emits up to one token more than the draft, so the draft stays within
    /// `max_new_tokens` and the cache.
    pub(crate) fn propose_draft(&mut self, spare_rows: &mut usize) {
        self.draft.clear();
        let Some(lookup) = self.lookup else {
            return;
        };
        let tokens_left = self.max_new_tokens.saturating_sub(self.generated.len());
        let cache_rows_left = self
            .cache
            .capacity()
            .saturating_sub(self.prompt_len + self.generated.len());
        let limit = (*spare_rows)
            .min(tokens_left.saturating_sub(1))
            .min(cache_rows_left);
        lookup.draft(&self.history, limit, &mut self.draft);
        *spare_rows -= self.draft.len();
    }

    /// Samples from the logits of a verification pass (one row for the pending token, then one
    /// per drafted token) until a sample differs from the draft or generation ends, then drops
    /// the cache rows of the tokens not taken. Every sample sees exactly the logits and history
    /// a plain decode step would, so the output is the same token for token. With a `sink`,
    /// each token's events reach it before the next token is taken.
    pub(crate) fn verify<'a, 's>(
        &mut self,
        rows: impl Iterator<Item = &'a mut [f32]>,
        mut sink: Option<&mut (dyn TokenSink + 's)>,
    ) -> Result<()> {
        let drafted = self.draft.len();
        let cached_before = self.cache.len() - (drafted + 1);
        let mut accepted = 0;
        for (i, row) in rows.enumerate() {
            let token = self.sampler.sample(row, &self.history);
            self.accept(token)?;
            if let Some(sink) = sink.as_deref_mut() {
                self.deliver_events(sink);
            }
            let agrees = self.draft.get(i) == Some(&token);
            accepted += usize::from(agrees);
            if !agrees || self.is_finished() {
                break;
            }
        }
        // The cache keeps the tokens the model has now seen for sure: the old pending token and
        // the accepted drafts. The last sampled token is the new pending one.
        self.cache.truncate(cached_before + 1 + accepted);
        if drafted > 0 {
            self.drafts.drafted += drafted;
            self.drafts.accepted += accepted;
            self.drafts.verify_passes += 1;
        }
        Ok(())
    }

    /// Moves text that can no longer be part of a stop string into `released`; on a stop
    /// string, cuts the text before it and returns true.
    fn release_text(&mut self) -> bool {
        let (end, stopped) = match self.stops.check(&self.text) {
            StopCheck::Stopped { start, .. } => (start, true),
            StopCheck::Continue { safe_len } => (safe_len, false),
        };
        if end > self.shown {
            self.released.push_str(&self.text[self.shown..end]);
            self.shown = end;
        }
        if stopped {
            self.text.truncate(end);
        }
        stopped
    }

    /// Ends generation, releasing held-back text (an unfinished character decodes to U+FFFD).
    fn end(&mut self, reason: FinishReason) -> Result<()> {
        if let Some(rest) = self
            .decoder
            .take()
            .map(StreamDecoder::finish)
            .transpose()?
            .flatten()
        {
            self.text.push_str(&rest);
        }
        let stopped = self.release_text();
        if !stopped {
            self.released.push_str(&self.text[self.shown..]);
            self.shown = self.text.len();
        }
        if !self.released.is_empty() {
            let text = std::mem::take(&mut self.released);
            match self.events.last_mut() {
                Some(last) => last.text.push_str(&text),
                None => self.events.push(TokenEvent {
                    id: self.generated.last().copied().unwrap_or_default(),
                    text,
                }),
            }
        }
        self.finish = Some(if stopped { FinishReason::Stop } else { reason });
        Ok(())
    }

    pub(crate) fn time_decode(&mut self, start: Instant) {
        self.timings.decode += start.elapsed();
    }

    /// The finished request's result.
    pub fn into_completion(mut self) -> Completion {
        self.text.truncate(self.shown);
        Completion {
            text: self.text,
            usage: Usage {
                prompt_tokens: self.prompt_len,
                completion_tokens: self.generated.len(),
            },
            token_ids: self.generated,
            finish_reason: self.finish.unwrap_or(FinishReason::Cancelled),
            timings: self.timings,
            drafts: self.drafts,
            trace: self.trace,
        }
    }
}
