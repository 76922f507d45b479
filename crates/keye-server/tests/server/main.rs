//! The server end to end on the tiny fixture model: answers against the reference's golden
//! outputs, errors, limits, concurrency, shutdown, a real OpenAI client and the chat page in
//! headless Chromium.

mod answers;
mod common;
mod errors;
mod lifecycle;
mod openai_client;
mod security;
mod web_chat;
