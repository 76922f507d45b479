//! Keye's answer post-processing (`KeyeChat.post_process_func`), applied to the raw model output
//! before the prediction is stored.

const BOXED: &str = "\\boxed{";
/// Upstream writes the second marker in a non-raw string, so `\b` became a backspace.
const BACKSPACE_BOXED: &str = "\u{08}oxed{";

/// Strips `<analysis>`/`<think>` preambles and unwraps the last `<answer>` / `\boxed{}`.
pub fn keye_post_process(raw: &str) -> String {
    let mut prediction = raw;
    if let Some(pos) = prediction.rfind("</analysis>") {
        prediction = &prediction[pos + "</analysis>".len()..];
    }
    let after_think;
    if let Some(pos) = prediction.rfind("</think>") {
        after_think =
            crate::python::strip(prediction[pos + "</think>".len()..].trim_start_matches('\n'))
                .to_string();
        prediction = &after_think;
    }
    if !prediction.contains("<answer>") {
        return unbox(prediction).to_string();
    }
    match last_answer_block(prediction) {
        Some(content) => unbox(content).to_string(),
        None => prediction.to_string(),
    }
}

/// The content of `\boxed{…}` (then of the backspace variant), or the text itself when neither
/// marker changes it. "Changed" is judged by length, as upstream does.
fn unbox(text: &str) -> &str {
    for marker in [BOXED, BACKSPACE_BOXED] {
        let cut = boxed_content(text, marker);
        if cut.len() != text.len() {
            return cut;
        }
    }
    text
}

/// Text after the last `marker`, cut where its brace counter (starting at 1) reaches 0. Without
/// the marker the whole text is scanned, so a stray `}` truncates it.
fn boxed_content<'a>(text: &'a str, marker: &str) -> &'a str {
    let tail = match text.rfind(marker) {
        Some(pos) => &text[pos + marker.len()..],
        None => text,
    };
    if tail.is_empty() {
        return text;
    }
    let mut depth = 1i64;
    for (pos, c) in tail.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return &tail[..pos];
        }
    }
    tail
}

/// The last non-greedy `<answer>(.*?)</answer>` match (dot matches newlines).
fn last_answer_block(text: &str) -> Option<&str> {
    let mut last = None;
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("<answer>") {
        let content_start = start + "<answer>".len();
        let Some(len) = rest[content_start..].find("</answer>") else {
            break;
        };
        last = Some(&text[offset + content_start..offset + content_start + len]);
        let consumed = content_start + len + "</answer>".len();
        offset += consumed;
        rest = &rest[consumed..];
    }
    last
}
