//! Chat messages, tokenizer, chat templates and prompt assembly for Keye-VL.

mod message;

pub use message::{Content, ImagePart, Message, Part, VideoPart, VideoSource};
