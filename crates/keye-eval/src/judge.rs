//! The optional LLM judge: VLMEvalKit's exact prompts, sent to any OpenAI-compatible endpoint,
//! with every reply cached on disk so re-scoring is free and reproducible.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use md5::{Digest, Md5};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use crate::error::EvalError;
use crate::extract::{Choices, FAIL_MSG};
use crate::openai::{EndpointConfig, OpenAiClient};
use crate::python::has_cjk;

/// `--judge none|<endpoint>#<model>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgeSpec {
    None,
    Endpoint { url: String, model: String },
}

impl JudgeSpec {
    pub fn parse(text: &str) -> Result<JudgeSpec, EvalError> {
        if text == "none" || text == "exact_matching" {
            return Ok(JudgeSpec::None);
        }
        let text = text.strip_prefix("openai:").unwrap_or(text);
        match text.rsplit_once('#') {
            Some((url, model)) if !url.is_empty() && !model.is_empty() => Ok(JudgeSpec::Endpoint {
                url: url.to_string(),
                model: model.to_string(),
            }),
            _ => Err(EvalError::InvalidArgument(format!(
                "--judge expects `none` or `<endpoint>#<model>` (e.g. http://localhost:8000/v1#gpt-4o-mini), got `{text}`"
            ))),
        }
    }

    /// The judge's part of output file names: VLMEvalKit's tags for its two named judges,
    /// `exact_matching` without one, otherwise the model id made file-name safe.
    pub fn tag(&self) -> String {
        match self {
            JudgeSpec::None => "exact_matching".into(),
            JudgeSpec::Endpoint { model, .. } => match model.as_str() {
                "gpt-3.5-turbo-0125" | "chatgpt-0125" => "openai".into(),
                "gpt-4-0125" | "gpt-4-0125-preview" => "gpt4".into(),
                other => other
                    .chars()
                    .map(|c| {
                        if c.is_alphanumeric() || "-._".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect(),
            },
        }
    }
}

/// A working judge with its reply cache.
pub struct Judge {
    client: OpenAiClient,
    tag: String,
    seed: u64,
    cache: Mutex<ReplyCache>,
}

struct ReplyCache {
    replies: HashMap<String, String>,
    writer: Option<BufWriter<File>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedReply {
    key: String,
    index: String,
    reply: String,
}

impl Judge {
    /// Connects to the judge and checks it answers (VLMEvalKit's `working()`); `Ok(None)` with a
    /// warning when it does not, so scoring falls back to exact matching as VLMEvalKit does.
    pub fn connect(
        spec: &JudgeSpec,
        config: EndpointConfig,
        cache_path: Option<&Path>,
        seed: u64,
    ) -> Result<Option<Judge>, EvalError> {
        let JudgeSpec::Endpoint { .. } = spec else {
            return Ok(None);
        };
        let client = OpenAiClient::new(config);
        let probe = client.complete(
            json!({"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}),
        );
        match probe {
            Ok(reply) if !reply.contains(FAIL_MSG) => {}
            Ok(_) | Err(_) => {
                tracing::warn!(url = %client.url(), "the judge does not answer; using exact matching instead");
                return Ok(None);
            }
        }
        Ok(Some(Judge {
            client,
            tag: spec.tag(),
            seed,
            cache: Mutex::new(ReplyCache::open(cache_path)?),
        }))
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// One judge call (single user message), served from the cache when this exact question was
    /// asked before as the same `attempt` (retries are separate calls that may answer
    /// differently). Transport failures come back as VLMEvalKit's failure text, uncached.
    pub fn ask(
        &self,
        index: &str,
        prompt: &str,
        attempt: usize,
        temperature: f32,
        max_tokens: u32,
    ) -> String {
        let key = cache_key(index, prompt, attempt, temperature, max_tokens);
        if let Some(reply) = self.lock_cache().replies.get(&key) {
            return reply.clone();
        }
        let body = json!({
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": max_tokens,
        });
        match self.client.complete(body) {
            Ok(reply) => {
                self.lock_cache().insert(key, index, &reply);
                reply
            }
            Err(error) => {
                tracing::warn!(index, %error, "judge call failed");
                FAIL_MSG.to_string()
            }
        }
    }

    /// The deterministic stand-in for VLMEvalKit's unseeded random pick.
    pub fn fallback_rng(&self, index: &str) -> StdRng {
        let digest = Md5::digest(index.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        StdRng::seed_from_u64(self.seed ^ u64::from_le_bytes(bytes))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ReplyCache> {
        // A panic while holding the lock cannot leave the map inconsistent; keep using it.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ReplyCache {
    fn open(path: Option<&Path>) -> Result<ReplyCache, EvalError> {
        let Some(path) = path else {
            return Ok(ReplyCache {
                replies: HashMap::new(),
                writer: None,
            });
        };
        let mut replies = HashMap::new();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(EvalError::io(path))?;
                // A torn last line from an interrupted run is skipped, not fatal.
                if let Ok(entry) = serde_json::from_str::<CachedReply>(&line) {
                    replies.insert(entry.key, entry.reply);
                }
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(EvalError::io(parent))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(EvalError::io(path))?;
        Ok(ReplyCache {
            replies,
            writer: Some(BufWriter::new(file)),
        })
    }

    fn insert(&mut self, key: String, index: &str, reply: &str) {
        if let Some(writer) = &mut self.writer {
            let line = serde_json::to_string(&CachedReply {
                key: key.clone(),
                index: index.into(),
                reply: reply.into(),
            })
            .expect("strings serialise");
            if let Err(error) = writeln!(writer, "{line}").and_then(|_| writer.flush()) {
                tracing::warn!(%error, "cannot append to the judge cache");
            }
        }
        self.replies.insert(key, reply.to_string());
    }
}

fn cache_key(
    index: &str,
    prompt: &str,
    attempt: usize,
    temperature: f32,
    max_tokens: u32,
) -> String {
    let mut hasher = Md5::new();
    hasher.update(prompt.as_bytes());
    hasher.update(format!("\u{0}{attempt}\u{0}{temperature}\u{0}{max_tokens}").as_bytes());
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{index}:{digest}")
}

/// The judge cache file for a scored prediction file.
pub fn cache_path(work_dir: &Path, stem: &str, tag: &str) -> PathBuf {
    work_dir.join(format!("{stem}_{tag}_judge_cache.jsonl"))
}

/// `build_option_str`: `There are several options: ⏎A. text⏎…`.
pub fn option_block(choices: &Choices) -> String {
    let mut block = String::from("There are several options: \n");
    for (letter, text) in choices {
        block.push_str(&format!("{letter}. {text}\n"));
    }
    block
}

/// The MCQ matching prompt: BLINK's own, the Chinese one for CJK questions, else English.
pub fn mcq_prompt(dataset: &str, question: &str, choices: &Choices, prediction: &str) -> String {
    let options = option_block(choices);
    if dataset == "BLINK" {
        format!(
            "You are an AI assistant who will help me to match an answer with several options of a single-choice question. \
You are provided with a question, several options, and an answer, and you need to find which option is most similar to the answer. \
If the answer says things like refuse to answer, I'm sorry cannot help, etc., output Z.\
If the meaning of all options are significantly different from the answer, or the answer does not select any option, output Z. \
Your should output one of the choices, A, B, C, D (if they are valid options), or Z.\n\
Example 1: \n\
Question: Which point is closer to the camera?\nSelect from the following choices.\n\
Options: A. Point A\nB. Point B\n(Z) Failed\n\
Answer: Point B, where the child is sitting, is closer to the camera.\nYour output: (B)\n\
Example 2: \n\
Question: Which point is closer to the camera?\nSelect from the following choices.\n\
Options: (A) Point A\n(B) Point B\n(Z) Failed\n\
Answer: I'm sorry, but I can't assist with that request.\nYour output: (Z)\n\
Example 3: \n\
Question: Which point is corresponding to the reference point?\nSelect from the following choices.\n\
Options: (A) Point A\n(B) Point B\n(Z) Failed\n\
Answer:The reference point (REF) on the first image is at the tip of the pot, \
which is the part used to Poke if the pots were used for that action. Looking at the second image, \
we need to find the part of the object that would correspond to poking.\n\
(A) Point A is at the tip of the spoon's handle, which is not used for poking.\n\
(B) Point B is at the bottom of the spoon, which is not used for poking.\n\
(C) Point C is on the side of the pspoonot, which is not used for poking.\n\
(D) Point D is at the tip of the spoon, which is not used for poking.\n\
\nTherefore, there is no correct answer in the choices\nYour output: (Z)\n\
Example 4: \n\
Question: {question}?\nOptions: {options}\n(Z) Failed\nAnswer: {prediction}\nYour output: "
        )
    } else if has_cjk(question) {
        format!(
            "你是一个帮助我匹配答案与单选题中多个选项的 AI 助手。\
你会被提供：一个问题，多个选项，一个答案。你的任务是找到与答案意义最相近的选项。\
如果所有选项的意义都与答案显著不同，则输出 Z。\
你应该输出一个单个的大写字母，例如 A, B, C, D（如果它们是有效选项），或 Z。\
例 1:\
问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 一只可爱的泰迪熊\n输出: A\n\
例 2: \n\
问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 蜘蛛\n输出: Z\n\
例 3: \n\
问题: {question}?\n选项: {options}\n答案: {prediction}\n输出: "
        )
    } else {
        format!(
            "You are an AI assistant who will help me to match an answer with several options of a single-choice question. \
You are provided with a question, several options, and an answer, and you need to find which option is most similar to the answer. \
If the meaning of all options are significantly different from the answer, output Z. \
Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n\
Example 1: \n\
Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n\
Answer: a cute teddy bear\nYour output: A\n\
Example 2: \n\
Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n\
Answer: Spider\nYour output: Z\n\
Example 3: \n\
Question: {question}?\nOptions: {options}\nAnswer: {prediction}\nYour output: "
        )
    }
}

/// `YOrN_match_prompt`.
pub fn yes_no_prompt(question: &str, prediction: &str) -> String {
    format!(
        "You are an AI assistant who will help me to match an answer with two options of a question. \
The options are only Yes / No. \
You are provided with a question and an answer, and you need to find which option (Yes / No) is most similar to the answer. \
If the meaning of all options are significantly different from the answer, output Unknown. \
Your should output a single word among the following 3 choices: Yes, No, Unknown.\n\
Example 1: \n\
Question: Is the word in this image 'Hello'?\nAnswer: The word in this image is 'Hello'.\nYour output: Yes\n\
Example 2: \n\
Question: Is the word in this image 'Hello'?\n\
Answer: The word in this image is not 'Hello'.\nYour output: No\n\
Example 3: \n\
Question: {question}?\nAnswer: {prediction}\nYour output: "
    )
}

/// `YOrN_cn_match_prompt`, with its truncation of very long questions (in characters).
pub fn yes_no_chinese_prompt(question: &str, prediction: &str) -> String {
    let chars: Vec<char> = question.chars().collect();
    let (question, prediction) = if chars.len() > 10240 {
        let head: String = chars[..4096].iter().collect();
        let tail: String = chars[chars.len() - 4096..].iter().collect();
        let prediction_chars: Vec<char> = prediction.chars().collect();
        let keep = prediction_chars.len().min(8192);
        (
            format!("{head}{tail}"),
            prediction_chars[prediction_chars.len() - keep..]
                .iter()
                .collect(),
        )
    } else {
        (question.to_string(), prediction.to_string())
    };
    format!(
        "你是一个AI助手，将帮助我在一个问题的两个选项中匹配一个答案。\
选项仅包括 是 / 否。\
你将获得一个问题和一个答案，\
你需要判断哪个选项（是 / 否）与答案的含义最相近。\
如果所有选项的含义与答案明显不同，则输出 Unknown。\
你的输出应该是以下三个选项中的一个词：是、否、Unknown。\n\
示例 1：\n\
问题：这张图中的单词是 'Hello' 吗？\n答案：这张图中的单词是 'Hello'。\n你的输出：是\n\
示例 2：\n\
问题：这张图中的单词是 'Hello' 吗？\n\
答案：这张图中的单词不是 'Hello'。\n你的输出：否\n\
示例 3：\n\
问题：{question}？\n答案：{prediction}\n你的输出："
    )
}

/// KC-MMBench CPV / Collection_Order judge prompt.
pub fn kwai_vqa_prompt(answer: &str, prediction: &str) -> String {
    format!(
        "给你一个标准答案和一个回答，请根据标准答案判断回答是否正确，同时忽略回答中的分析过程中，直接对比回答中的结论和标准答案是否一致，标准答案：“{answer}”。回答：“{prediction}”。请以“回答正确”或“回答错误”的格式返回答案。"
    )
}

/// KC-MMBench Hot_Videos_Aggregation extraction prompt.
pub fn kwai_topic_prompt(prediction: &str) -> String {
    format!(
        "这是判断给定的视频列表中的视频是否与第一个视频属于同一个主题的结果，其中可能包含了一些分析，请帮我提取出最后的结论.内容为：”{prediction}“。请将答案直接以列表的形式输出，列表的每一项为“是”或者“否”，表示对应视频是否与第一个视频属于同一个主题,答案形式为[是，否...是]的格式。"
    )
}

/// MathVista's answer-extraction prompt (five in-context examples; `respone` sic).
pub fn mathvista_prompt(question: &str, prediction: &str) -> String {
    const TASK: &str = "\nPlease read the following example.\nThen extract the answer from the model response and type it at the end of the prompt.\n\n";
    const EXAMPLES: [&str; 5] = [
        "\nHint: Please answer the question requiring an integer answer and provide the final value,\ne.g., 1, 2, 3, at the end.\n\nQuestion: Which number is missing?\n\nModel response: The number missing in the sequence is 14.\n\nExtracted answer: 14\n",
        "\nHint: Please answer the question requiring a floating-point number with one decimal place and provide the final value,\ne.g., 1.2, 1.3, 1.4, at the end.\n\nQuestion: What is the fraction of females facing the camera?\n\nModel response: The fraction of females facing the camera is 0.6,\nwhich means that six out of ten females in the group are facing the camera.\n\nExtracted answer: 0.6\n",
        "\nHint: Please answer the question requiring a floating-point number with two decimal places and provide the final value,\ne.g., 1.23, 1.34, 1.45, at the end.\n\nQuestion: How much money does Luca need to buy a sour apple candy and a butter-scotch candy? (Unit: $)\n\nModel response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.\n\nExtracted answer: 1.45\n",
        "\nHint: Please answer the question requiring a Python list as an answer and provide the final list,\ne.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\n\nQuestion: Between which two years does the line graph saw its maximum peak?\n\nModel response: The line graph saw its maximum peak between 2007 and 2008.\n\nExtracted answer: [2007, 2008]\n",
        "\nHint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n\nQuestion: What fraction of the shape is blue?\n\nChoices: (A) 3/11 (B) 8/11 (C) 6/11 (D) 3/5\n\nModel response: The correct answer is (B) 8/11.\n\nExtracted answer: B\n",
    ];
    let mut prompt = String::from(TASK);
    for example in EXAMPLES {
        prompt.push_str(example);
        prompt.push('\n');
    }
    prompt.push_str(question);
    prompt.push('\n');
    prompt.push_str("Model respone: ");
    prompt.push_str(prediction);
    prompt.push_str("Extracted answer:");
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_spec_parsing_and_tags() {
        assert_eq!(JudgeSpec::parse("none").unwrap(), JudgeSpec::None);
        let spec = JudgeSpec::parse("http://h:8000/v1#gpt-4o-mini").unwrap();
        assert_eq!(
            spec,
            JudgeSpec::Endpoint {
                url: "http://h:8000/v1".into(),
                model: "gpt-4o-mini".into()
            }
        );
        assert_eq!(spec.tag(), "gpt-4o-mini");
        assert_eq!(
            JudgeSpec::parse("openai:http://h/v1#gpt-3.5-turbo-0125")
                .unwrap()
                .tag(),
            "openai"
        );
        assert!(JudgeSpec::parse("http://h/v1").is_err());
    }

    #[test]
    fn english_mcq_prompt_layout() {
        let choices = [('A', "cat".to_string()), ('B', "dog".to_string())];
        let prompt = mcq_prompt("MMStar", "What is it?", &choices, "a dog");
        assert!(prompt.ends_with(
            "Example 3: \nQuestion: What is it??\nOptions: There are several options: \nA. cat\nB. dog\n\nAnswer: a dog\nYour output: "
        ));
    }
}
