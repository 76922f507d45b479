//! Open-answer scoring: VQA metrics, OCRBench, MathVista and the KC-MMBench judged tasks.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    Prediction, Record, ScoreContext, ScoreOutput, ScoreTable, Scores, parallel_map, percent,
    sorted_values,
};
use crate::dataset::{Dataset, VqaScoring};
use crate::error::EvalError;
use crate::extract::{
    Compat, FAIL_MSG, can_infer, process_answer, remove_think_blocks, topic_sequence_matches,
};
use crate::judge::{Judge, kwai_topic_prompt, kwai_vqa_prompt, mathvista_prompt};
use crate::metrics::{OCRBENCH_HMER, VqaMetric, ocrbench_hit};
use crate::python::{numpy_mean, parse_float, parse_int, parse_list_literal, strip};
use crate::score::Cell;

/// Judged KC-MMBench and MathVista calls: five tries at temperature 0.5·i, 128 tokens.
const JUDGE_TRIES: usize = 5;
const JUDGE_MAX_TOKENS: u32 = 128;

/// The gold answers of a row: a list literal, or the single string.
fn answers(dataset: &Dataset, row: usize) -> Vec<String> {
    let answer = dataset.get(row, "answer").unwrap_or("nan");
    // `istype(answer, list)` evaluates the cell; anything that is not a list literal is one answer.
    match answer
        .starts_with('[')
        .then(|| parse_list_literal(answer))
        .flatten()
    {
        Some(list) => list,
        None => vec![answer.to_string()],
    }
}

pub(super) fn quick_hit(
    dataset: &Dataset,
    row: usize,
    prediction: &str,
    kind: VqaScoring,
    compat: Compat,
) -> Option<f64> {
    match kind {
        VqaScoring::Metric(metric) => Some(metric.score(&answers(dataset, row), prediction).1),
        VqaScoring::OcrBench => {
            let category = dataset.get(row, "category").unwrap_or("");
            Some(f64::from(u8::from(ocrbench_hit(
                category,
                &answers(dataset, row),
                prediction,
            ))))
        }
        VqaScoring::MathVista => {
            let row = MathVistaRow::from_dataset(dataset, row);
            Some(f64::from(u8::from(
                row.prefetch(prediction, compat)
                    .is_some_and(|res| row.is_correct(&res, compat)),
            )))
        }
        VqaScoring::KwaiJudge | VqaScoring::KwaiTopic => None,
    }
}

pub(super) fn score(
    dataset: &Dataset,
    predictions: &[Prediction],
    context: &ScoreContext,
    kind: VqaScoring,
) -> Result<Scores, EvalError> {
    match kind {
        VqaScoring::Metric(metric) => Ok(metric_scores(dataset, predictions, metric)),
        VqaScoring::OcrBench => ocrbench_scores(dataset, predictions),
        VqaScoring::MathVista => Ok(mathvista_scores(dataset, predictions, context)),
        VqaScoring::KwaiJudge | VqaScoring::KwaiTopic => {
            kwai_scores(dataset, predictions, context, kind)
        }
    }
}

fn metric_scores(dataset: &Dataset, predictions: &[Prediction], metric: VqaMetric) -> Scores {
    let mut records = Vec::with_capacity(predictions.len());
    let mut sample_scores = Vec::with_capacity(predictions.len());
    for prediction in predictions {
        let gts = answers(dataset, prediction.row);
        let (matches, score) = metric.score(&gts, &prediction.text);
        let extracted = match metric {
            VqaMetric::Soft => process_answer(&prediction.text),
            _ => strip(&prediction.text).to_string(),
        };
        sample_scores.push((prediction.row, score));
        records.push(
            Record::new(
                dataset.row_index(prediction.row),
                &prediction.text,
                Some(extracted),
                score,
            )
            .with("answer", Value::from(gts))
            .with("match", Value::from(matches)),
        );
    }
    let mean_of = |filter: &dyn Fn(usize) -> bool| {
        percent(
            &sample_scores
                .iter()
                .filter(|&&(r, _)| filter(r))
                .map(|&(_, s)| s)
                .collect::<Vec<_>>(),
        )
    };
    let rows = || sample_scores.iter().map(|&(r, _)| r);
    let mut pairs = Vec::new();
    if dataset.table.has_column("split") {
        for split in sorted_values(dataset, rows(), "split") {
            pairs.push((
                split.clone(),
                mean_of(&|r| dataset.get(r, "split") == Some(split.as_str())),
            ));
        }
        pairs.push(("Overall".to_string(), mean_of(&|_| true)));
    } else {
        pairs.push(("Overall".to_string(), mean_of(&|_| true)));
        if dataset.table.has_column("category") {
            for category in sorted_values(dataset, rows(), "category") {
                pairs.push((
                    category.clone(),
                    mean_of(&|r| dataset.get(r, "category") == Some(category.as_str())),
                ));
            }
        }
    }
    let overall = mean_of(&|_| true);
    Scores {
        records,
        output: ScoreOutput::Table(ScoreTable::single_row(pairs)),
        file_suffix: "_acc.csv".into(),
        headline: BTreeMap::from([("Overall".to_string(), overall)]),
        scored: predictions.len(),
        failed: 0,
        random_fallbacks: 0,
    }
}

const OCRBENCH_CATEGORIES: [&str; 10] = [
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    OCRBENCH_HMER,
];

/// OCRBench: hits per category summed into five groups; `Final Score` out of 1000.
fn ocrbench_scores(dataset: &Dataset, predictions: &[Prediction]) -> Result<Scores, EvalError> {
    let mut counts = [0u32; 10];
    let mut records = Vec::with_capacity(predictions.len());
    for prediction in predictions {
        let category = dataset.get(prediction.row, "category").unwrap_or("nan");
        let slot = OCRBENCH_CATEGORIES
            .iter()
            .position(|c| *c == category)
            .ok_or_else(|| EvalError::Scoring {
                dataset: dataset.name().into(),
                reason: format!("unknown OCRBench category `{category}`"),
            })?;
        let gts = answers(dataset, prediction.row);
        let hit = ocrbench_hit(category, &gts, &prediction.text);
        counts[slot] += u32::from(hit);
        records.push(
            Record::new(
                dataset.row_index(prediction.row),
                &prediction.text,
                None,
                f64::from(u8::from(hit)),
            )
            .with("answer", Value::from(gts))
            .with("category", category),
        );
    }
    let text_recognition: u32 = counts[..6].iter().sum();
    let groups = [
        ("Text Recognition", text_recognition),
        ("Scene Text-centric VQA", counts[6]),
        ("Doc-oriented VQA", counts[7]),
        ("Key Information Extraction", counts[8]),
        (OCRBENCH_HMER, counts[9]),
    ];
    let final_score: u32 = groups.iter().map(|(_, c)| c).sum();
    let mut json = Map::new();
    for (name, count) in groups {
        json.insert(name.into(), json!(count));
    }
    json.insert("Final Score".into(), json!(final_score));
    json.insert(
        "Final Score Norm".into(),
        json!(f64::from(final_score) / 10.0),
    );
    Ok(Scores {
        records,
        output: ScoreOutput::Json(Value::Object(json)),
        file_suffix: "_score.json".into(),
        headline: BTreeMap::from([("Final Score".to_string(), f64::from(final_score))]),
        scored: predictions.len(),
        failed: 0,
        random_fallbacks: 0,
    })
}

/// The columns of a MathVista row that `post_check` reads.
#[derive(Debug, Clone, Copy)]
pub struct MathVistaRow<'a> {
    pub question_type: &'a str,
    pub answer_type: &'a str,
    pub answer: &'a str,
    pub answer_option: Option<&'a str>,
    /// Python list literal of the option texts.
    pub choices: &'a str,
}

impl<'a> MathVistaRow<'a> {
    fn from_dataset(dataset: &'a Dataset, row: usize) -> MathVistaRow<'a> {
        MathVistaRow {
            question_type: dataset.get(row, "question_type").unwrap_or(""),
            answer_type: dataset.get(row, "answer_type").unwrap_or(""),
            answer: dataset.get(row, "answer").unwrap_or("nan"),
            answer_option: dataset.get(row, "answer_option"),
            choices: dataset.get(row, "choices").unwrap_or("[]"),
        }
    }

    fn options(&self) -> Vec<(char, String)> {
        parse_list_literal(self.choices)
            .unwrap_or_default()
            .into_iter()
            .zip('A'..='Z')
            .map(|(t, l)| (l, t))
            .collect()
    }

    /// `post_check(prefetch=True)`: for multiple choice whatever option `can_infer` finds, right
    /// or wrong; for integer/float answers the parsed value when it equals the gold; else `None`.
    pub fn prefetch(&self, response: &str, compat: Compat) -> Option<String> {
        if self.question_type == "multi_choice" {
            return can_infer(response, &self.options(), compat).map(String::from);
        }
        match self.answer_type {
            "integer" => {
                let value = parse_int(response)?;
                (Some(value) == parse_int(self.answer)).then(|| value.to_string())
            }
            "float" => {
                let value = parse_float(response)?;
                (Some(value) == parse_float(self.answer)).then(|| crate::python::float_repr(value))
            }
            _ => None,
        }
    }

    /// `post_check(prefetch=False)`: is `response` (the stored `res`) correct. List and text
    /// answers never are (upstream compares against `str(None)`).
    pub fn is_correct(&self, response: &str, compat: Compat) -> bool {
        if self.question_type == "multi_choice" {
            let letter = can_infer(response, &self.options(), compat);
            return letter.is_some() && letter.map(String::from).as_deref() == self.answer_option;
        }
        match self.answer_type {
            "integer" | "float" => self.prefetch(response, compat).is_some(),
            _ => false,
        }
    }
}

fn mathvista_scores(
    dataset: &Dataset,
    predictions: &[Prediction],
    context: &ScoreContext,
) -> Scores {
    let outcomes = parallel_map(predictions, context.concurrency, |prediction| {
        let row = prediction.row;
        let index = dataset.row_index(row);
        let prefetched =
            MathVistaRow::from_dataset(dataset, row).prefetch(&prediction.text, context.compat);
        if let Some(res) = prefetched {
            return ("Prefetch succeed".to_string(), res);
        }
        let Some(judge) = context.judge else {
            return ("No judge: prefetch failed.\n".to_string(), String::new());
        };
        let prompt = mathvista_prompt(
            dataset.get(row, "question").unwrap_or("nan"),
            &prediction.text,
        );
        let mut log = String::new();
        for attempt in 0..JUDGE_TRIES {
            let reply = judge.ask(
                index,
                &prompt,
                attempt,
                0.5 * attempt as f32,
                JUDGE_MAX_TOKENS,
            );
            if reply.contains(FAIL_MSG) {
                log.push_str(&format!(
                    "Try {attempt}: output is {}, failed to parse.\n",
                    prediction.text
                ));
            } else {
                log.push_str("Succeed");
                return (log, reply);
            }
        }
        log.push_str("All 5 retries failed.\n");
        (log, String::new())
    });
    let mut tally: Vec<(String, [u32; 3])> = vec![("Overall".into(), [0; 3])];
    let mut bump = |key: &str, prefetched: bool, hit: bool| {
        let position = match tally.iter().position(|(k, _)| k == key) {
            Some(p) => p,
            None => {
                tally.push((key.to_string(), [0; 3]));
                tally.len() - 1
            }
        };
        let counts = &mut tally[position].1;
        counts[0] += 1;
        counts[1] += u32::from(prefetched);
        counts[2] += u32::from(hit);
    };
    let mut records = Vec::with_capacity(predictions.len());
    for (prediction, (log, res)) in predictions.iter().zip(outcomes) {
        let row = prediction.row;
        let hit = MathVistaRow::from_dataset(dataset, row).is_correct(&res, context.compat);
        let prefetched = log == "Prefetch succeed";
        let skills = dataset.get(row, "skills").map_or_else(Vec::new, |s| {
            parse_list_literal(s).unwrap_or_else(|| vec![s.to_string()])
        });
        bump("Overall", prefetched, hit);
        for skill in &skills {
            bump(skill, prefetched, hit);
        }
        bump(dataset.get(row, "task").unwrap_or("nan"), prefetched, hit);
        records.push(
            Record::new(
                dataset.row_index(row),
                &prediction.text,
                Some(res),
                f64::from(u8::from(hit)),
            )
            .with("log", log)
            .with("answer", dataset.get(row, "answer").unwrap_or("nan")),
        );
    }
    let mut table = ScoreTable {
        columns: [
            "Task&Skill",
            "tot",
            "prefetch",
            "hit",
            "prefetch_rate",
            "acc",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for (key, [total, prefetched, hit]) in &tally {
        let total_f = f64::from(*total);
        table.rows.push(vec![
            Cell::Text(key.clone()),
            Cell::Number(total_f),
            Cell::Number(f64::from(*prefetched)),
            Cell::Number(f64::from(*hit)),
            Cell::Number(f64::from(*prefetched) / total_f * 100.0),
            Cell::Number(f64::from(*hit) / total_f * 100.0),
        ]);
    }
    let overall = table.value(Some("Overall"), "acc").unwrap_or(f64::NAN);
    let suffix = format!(
        "_{}_score.csv",
        context.judge.map_or("exact_matching", Judge::tag)
    );
    Scores {
        records,
        output: ScoreOutput::Table(table),
        file_suffix: suffix,
        headline: BTreeMap::from([("Overall acc".to_string(), overall)]),
        scored: predictions.len(),
        failed: 0,
        random_fallbacks: 0,
    }
}

/// KC-MMBench CPV / Collection_Order / Hot_Videos_Aggregation: the judge decides every row.
fn kwai_scores(
    dataset: &Dataset,
    predictions: &[Prediction],
    context: &ScoreContext,
    kind: VqaScoring,
) -> Result<Scores, EvalError> {
    let judge = context.judge.ok_or_else(|| EvalError::Scoring {
        dataset: dataset.name().into(),
        reason: "KC-MMBench VQA tasks are scored by an LLM judge: pass --judge <endpoint>#<model>"
            .into(),
    })?;
    let outcomes = parallel_map(predictions, context.concurrency, |prediction| {
        let row = prediction.row;
        let answer = dataset.get(row, "answer").unwrap_or("nan");
        let cleaned = strip(&remove_think_blocks(&prediction.text)).to_string();
        let prompt = match kind {
            VqaScoring::KwaiTopic => kwai_topic_prompt(&cleaned),
            _ => kwai_vqa_prompt(answer, &cleaned),
        };
        let mut log = String::new();
        for attempt in 0..JUDGE_TRIES {
            let reply = judge.ask(
                dataset.row_index(row),
                &prompt,
                attempt,
                0.5 * attempt as f32,
                JUDGE_MAX_TOKENS,
            );
            if reply.contains(FAIL_MSG) {
                log.push_str(&format!(
                    "Try {attempt}: output is {}, failed to parse.\n",
                    prediction.text
                ));
                continue;
            }
            let verdict = match kind {
                VqaScoring::KwaiTopic => {
                    log.push_str(&reply);
                    if topic_sequence_matches(answer, &reply) {
                        "回答正确".to_string()
                    } else {
                        "回答错误".to_string()
                    }
                }
                _ => {
                    log.push_str("Succeed");
                    reply
                }
            };
            return (log, verdict);
        }
        log.push_str("All 5 retries failed.\n");
        (log, String::new())
    });
    let mut records = Vec::with_capacity(predictions.len());
    let mut hits = Vec::with_capacity(predictions.len());
    for (prediction, (log, verdict)) in predictions.iter().zip(outcomes) {
        let hit = f64::from(u8::from(verdict.contains("回答正确")));
        hits.push(hit);
        records.push(
            Record::new(
                dataset.row_index(prediction.row),
                &prediction.text,
                Some(verdict),
                hit,
            )
            .with("log", log)
            .with(
                "answer",
                dataset.get(prediction.row, "answer").unwrap_or("nan"),
            ),
        );
    }
    let overall = numpy_mean(&hits);
    Ok(Scores {
        records,
        output: ScoreOutput::Table(ScoreTable::single_row(vec![("Overall".into(), overall)])),
        file_suffix: format!("_{}_acc.csv", judge.tag()),
        headline: BTreeMap::from([("Overall".to_string(), overall * 100.0)]),
        scored: predictions.len(),
        failed: 0,
        random_fallbacks: 0,
    })
}
