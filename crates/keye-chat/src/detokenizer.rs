use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Incremental detokenisation for streaming: feed generated ids one at a time and get text
/// deltas that never end inside a UTF-8 character. Byte-level BPE tokens can carry part of a
/// character's bytes; such text is held back until the character is complete. The deltas,
/// concatenated (including [`StreamDecoder::finish`]), equal `tokenizer.decode(all_ids)`.
///
/// Each step decodes only a short window (the ids since the last emitted text plus the token
/// before them as context), so the cost per token does not grow with the output length.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    skip_special_tokens: bool,
    /// Ids from the context token on; earlier ids are dropped once emitted.
    window: Vec<u32>,
    /// `window[..read_offset]` has already been emitted.
    read_offset: usize,
}

impl StreamDecoder {
    pub fn new(tokenizer: &Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer: tokenizer.clone(),
            skip_special_tokens,
            window: Vec::new(),
            read_offset: 0,
        }
    }

    /// Adds one id; returns the text that became final, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.window.push(id);
        let emitted = self.decode(&self.window[..self.read_offset])?;
        let decoded = self.decode(&self.window)?;
        // A trailing U+FFFD means the last token ended inside a character: wait for the rest.
        if decoded.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let Some(delta) = decoded.strip_prefix(emitted.as_str()) else {
            return Ok(None);
        };
        let delta = (!delta.is_empty()).then(|| delta.to_owned());
        // Advancing even when nothing new appeared (a skipped special token) keeps the window
        // short. The last emitted token stays as context for decoders that look at neighbours.
        let context_start = self.read_offset;
        self.window.drain(..context_start);
        self.read_offset = self.window.len();
        Ok(delta)
    }

    /// Ends the stream: returns the text still held back (an unfinished character decodes to
    /// U+FFFD, as in the full decode).
    pub fn finish(self) -> Result<Option<String>> {
        let emitted = self.decode(&self.window[..self.read_offset])?;
        let decoded = self.decode(&self.window)?;
        Ok(decoded
            .strip_prefix(emitted.as_str())
            .filter(|rest| !rest.is_empty())
            .map(str::to_owned))
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        if ids.is_empty() {
            return Ok(String::new());
        }
        self.tokenizer.decode(ids, self.skip_special_tokens)
    }
}
