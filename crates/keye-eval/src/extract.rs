//! Rule-based answer extraction, exactly as VLMEvalKit does it (quirks included).

use std::sync::LazyLock;

use regex::Regex;

use crate::python::{is_decimal_digit, split_whitespace, strip};

/// VLMEvalKit's marker for a row whose answer could not be obtained.
pub const FAIL_MSG: &str = "Failed to obtain answer via API.";

/// Which VLMEvalKit revision's rules to follow.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Compat {
    /// The VLMEvalKit fork Kwai shipped with Keye-VL (KC-MMBench).
    #[default]
    Fork,
    /// Today's open-compass/VLMEvalKit.
    Upstream,
}

/// Ordered option letters and their texts (A..Z, present options only).
pub type Choices = [(char, String)];

const REFUSALS: [&str; 4] = [
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
];

/// `can_infer`: the option letter named by `answer`, `Z` for a refusal, or `None`.
pub fn can_infer(answer: &str, choices: &Choices, compat: Compat) -> Option<char> {
    can_infer_option(answer, choices, compat).or_else(|| can_infer_text(answer, choices, compat))
}

fn can_infer_option(answer: &str, choices: &Choices, compat: Compat) -> Option<char> {
    if answer.contains("Failed to obtain answer via API") {
        return None;
    }
    if REFUSALS.iter().any(|refusal| answer.contains(refusal)) {
        return Some('Z');
    }
    let separated: String = answer
        .chars()
        .map(|c| if ".()[],:;!*#{}".contains(c) { ' ' } else { c })
        .collect();
    let tokens: Vec<&str> = split_whitespace(&separated).collect();
    let is_token = |letter: char| tokens.iter().any(|t| single_char(t) == Some(letter));
    let named: Vec<char> = choices
        .iter()
        .map(|&(letter, _)| letter)
        .filter(|&l| is_token(l))
        .collect();
    if named.len() == 1 {
        let letter = named[0];
        match compat {
            Compat::Fork => return Some(letter),
            Compat::Upstream => {
                let first = tokens
                    .iter()
                    .position(|t| single_char(t) == Some(letter))
                    .expect("token present");
                // Upstream only trusts a letter among the last four tokens.
                if first + 5 > tokens.len() {
                    return Some(letter);
                }
            }
        }
    } else if named.is_empty() && is_token('Z') {
        return Some('Z');
    }
    if compat == Compat::Upstream {
        static VERBOSE_ANSWER: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**").expect("valid regex")
        });
        if let Some(captures) = VERBOSE_ANSWER.captures(answer) {
            let letter = captures[1]
                .chars()
                .next()
                .expect("one letter")
                .to_ascii_uppercase();
            if choices.iter().any(|&(l, _)| l == letter) {
                return Some(letter);
            }
        }
    }
    None
}

fn single_char(token: &str) -> Option<char> {
    let mut chars = token.chars();
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

fn can_infer_text(answer: &str, choices: &Choices, compat: Compat) -> Option<char> {
    let answer = answer.to_lowercase();
    if compat == Compat::Upstream {
        let option_chars: usize = choices.iter().map(|(_, text)| text.chars().count()).sum();
        if answer.chars().count() > 2 * option_chars {
            return None;
        }
    }
    let mut found = choices
        .iter()
        .filter(|(_, text)| answer.contains(&text.to_lowercase()));
    match (found.next(), found.next()) {
        (Some(&(letter, _)), None) => Some(letter),
        _ => None,
    }
}

/// The answer of a Yes/No question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum YesNo {
    Yes,
    No,
    Unknown,
}

impl YesNo {
    pub fn as_str(self) -> &'static str {
        match self {
            YesNo::Yes => "Yes",
            YesNo::No => "No",
            YesNo::Unknown => "Unknown",
        }
    }

    /// The Chinese spelling used by KC-MMBench gold answers.
    pub fn as_chinese(self) -> &'static str {
        match self {
            YesNo::Yes => "是",
            YesNo::No => "否",
            YesNo::Unknown => "Unknown",
        }
    }
}

/// `YOrN_Extraction`.
pub fn yes_no(output: &str) -> YesNo {
    let processed = process_punctuation(&output.to_lowercase());
    let words: Vec<&str> = split_whitespace(&processed).collect();
    decide(words.contains(&"yes"), words.contains(&"no"))
}

/// `YOrN_cn_Extraction`: `是`/`否` tokens first (case kept), then lowercase `yes`/`no` tokens.
pub fn yes_no_chinese(output: &str) -> YesNo {
    let processed = process_punctuation(output);
    let words: Vec<&str> = split_whitespace(&processed).collect();
    match decide(words.contains(&"是"), words.contains(&"否")) {
        YesNo::Unknown => decide(words.contains(&"yes"), words.contains(&"no")),
        decided => decided,
    }
}

fn decide(yes: bool, no: bool) -> YesNo {
    match (yes, no) {
        (true, false) => YesNo::Yes,
        (false, true) => YesNo::No,
        _ => YesNo::Unknown,
    }
}

const PUNCTUATION: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// VLMEvalKit's `process_punctuation`. Tests run on the original text while replacements
/// accumulate on the copy, and at most 32 periods are removed (the regex `count` quirk).
pub fn process_punctuation(text: &str) -> String {
    let digit_comma_digit = text
        .chars()
        .collect::<Vec<_>>()
        .windows(3)
        .any(|w| is_decimal_digit(w[0]) && w[1] == ',' && is_decimal_digit(w[2]));
    let mut out = text.to_string();
    for p in PUNCTUATION {
        if !out.contains(p) {
            continue;
        }
        let touches_space = text
            .as_bytes()
            .windows(2)
            .any(|pair| pair == [p as u8, b' '] || pair == [b' ', p as u8]);
        out = out.replace(
            p,
            if touches_space || digit_comma_digit {
                ""
            } else {
                " "
            },
        );
    }
    strip_periods(&out, 32)
}

/// Removes up to `limit` periods that are neither preceded nor followed by a decimal digit,
/// judging neighbours in the input (the regex scans without overlapping rewrites).
fn strip_periods(text: &str, limit: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let removable = c == '.'
            && removed < limit
            && !(i > 0 && is_decimal_digit(chars[i - 1]))
            && !chars.get(i + 1).is_some_and(|&next| is_decimal_digit(next));
        if removable {
            removed += 1;
        } else {
            out.push(c);
        }
    }
    out
}

const NUMBER_WORDS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// The standard VQA contraction table (apostrophe-less spelling → canonical spelling). Entries
/// with capitals can never match (words are lower-cased first); they are kept for fidelity.
const CONTRACTIONS: [(&str, &str); 120] = [
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

/// VQA answer normalisation (`process_answer`).
pub fn process_answer(answer: &str) -> String {
    let flattened = answer.replace(['\n', '\t'], " ");
    let punctuated = process_punctuation(strip(&flattened));
    let lowered = punctuated.to_lowercase();
    let words: Vec<&str> = split_whitespace(&lowered)
        .map(|word| {
            NUMBER_WORDS
                .iter()
                .find(|(w, _)| *w == word)
                .map_or(word, |&(_, digit)| digit)
        })
        .filter(|word| !ARTICLES.contains(word))
        .map(|word| {
            CONTRACTIONS
                .iter()
                .find(|(w, _)| *w == word)
                .map_or(word, |&(_, full)| full)
        })
        .collect();
    words.join(" ")
}

/// Video-MME's `extract_characters_regex`: the first capital A–D after deleting a few answer
/// prefixes (two pairs of which are glued together by a missing comma upstream).
pub fn video_mme_letter(prediction: &str) -> Option<char> {
    const PREFIXES: [&str; 8] = [
        "The best answer is",
        "The correct answer is",
        "The answer is",
        "The answer",
        "The best option isThe correct option is",
        "Best answer:Best option:",
        "Answer:",
        "Option:",
    ];
    let mut s = strip(prediction).to_string();
    for prefix in PREFIXES {
        s = s.replace(prefix, "");
    }
    // Upstream also returns "" for long answers without a letter, which this already covers.
    s.chars().find(|c| matches!(c, 'A'..='D'))
}

/// Removes every `<think>…</think>` block (non-greedy, across newlines), as KC-MMBench does.
pub fn remove_think_blocks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<think>") {
        match rest[start + "<think>".len()..].find("</think>") {
            Some(end) => {
                out.push_str(&rest[..start]);
                rest = &rest[start + "<think>".len() + end + "</think>".len()..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// KC-MMBench `is_topic_right`: the 是/否 characters inside the judge reply's last `[...]` must
/// spell the gold sequence exactly (other characters ignored, so `不是` counts as `是`).
pub fn topic_sequence_matches(gold: &str, judge_reply: &str) -> bool {
    let Some(content) = last_bracket_content(judge_reply) else {
        return false;
    };
    let predicted: Vec<char> = content
        .chars()
        .filter(|c| matches!(c, '是' | '否'))
        .collect();
    let expected: Vec<char> = gold
        .split('_')
        .filter_map(|item| match item {
            "是" => Some('是'),
            "否" => Some('否'),
            _ => None,
        })
        .collect();
    predicted == expected
}

/// Content of the last non-greedy `\[(.*?)\]` match (`.` does not cross newlines).
fn last_bracket_content(text: &str) -> Option<&str> {
    static BRACKET: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\[(.*?)\]").expect("valid regex"));
    BRACKET
        .captures_iter(text)
        .last()
        .map(|c| c.get(1).expect("group").as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_rules() {
        assert_eq!(process_punctuation("a-b"), "a b");
        assert_eq!(process_punctuation("a - b"), "a  b");
        assert_eq!(process_punctuation("1,000 a-b"), "1000 ab");
        assert_eq!(process_punctuation("3.5 dr. who"), "3.5 dr who");
        let many = ". ".repeat(40);
        assert_eq!(process_punctuation(&many).matches('.').count(), 8);
    }

    #[test]
    fn think_blocks_are_removed_non_greedily() {
        assert_eq!(
            remove_think_blocks("<think>a</think>是<think>b</think>"),
            "是"
        );
        assert_eq!(remove_think_blocks("<think>open"), "<think>open");
    }
}
