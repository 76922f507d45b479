//! Everything between chat messages and token ids for Keye-VL, and back from ids to text:
//!
//! * [`Message`], [`MessagesFile`]: the OpenAI / Qwen-VL message format (`messages.json`);
//! * [`Tokenizer`]: the model's `tokenizer.json`;
//! * [`ChatTemplate`]: Hugging Face chat templates rendered like transformers' jinja2;
//! * [`ThinkingMode`]: Keye's in-band `/think` and `/no_think` switches;
//! * [`PromptAssembler`]: placeholder expansion into the processor's `input_ids`;
//! * [`StreamDecoder`], [`ReasoningSplitter`], [`StopMatcher`]: streaming output.

mod detokenizer;
mod error;
mod message;
mod prompt;
mod python;
mod reasoning;
mod stop;
mod template;
mod thinking;
mod tokenizer;

pub use detokenizer::StreamDecoder;
pub use error::{ChatError, Result, VisualKind};
pub use message::{
    Content, ImagePart, Message, MessagesFile, Part, VideoPart, VideoSource, messages_from_value,
    parse_messages,
};
pub use prompt::{
    FAST_END, FAST_START, FRAME, FrameKind, IMAGE_PAD, PromptAssembler, VIDEO_PAD, VISION_END,
    VISION_START, VideoFrame, VideoLayout, format_timestamp,
};
pub use reasoning::{
    ChunkKind, ReasoningChunk, ReasoningSplitter, SplitReasoning, split_reasoning,
};
pub use stop::{StopCheck, StopMatcher};
pub use template::{ChatTemplate, RenderOptions};
pub use thinking::ThinkingMode;
pub use tokenizer::Tokenizer;
