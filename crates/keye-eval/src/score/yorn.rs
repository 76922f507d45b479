//! Yes/No scoring: extraction, the judge for `Unknown`, and the MME / HallusionBench / POPE /
//! AMBER / default ratings.

use std::collections::BTreeMap;

use super::{
    Prediction, Record, ScoreContext, ScoreOutput, ScoreTable, Scores, parallel_map, percent,
    sorted_values,
};
use crate::dataset::{Dataset, YesNoRating};
use crate::error::EvalError;
use crate::extract::{remove_think_blocks, yes_no, yes_no_chinese};
use crate::judge::{yes_no_chinese_prompt, yes_no_prompt};
use crate::score::Cell;

const JUDGE_TEMPERATURES: [f32; 5] = [0.0, 0.5, 1.0, 1.5, 2.0];
/// VLMEvalKit's judge wrapper default for `max_tokens`.
const JUDGE_MAX_TOKENS: u32 = 2048;

const MME_PERCEPTION: [&str; 10] = [
    "OCR",
    "artwork",
    "celebrity",
    "color",
    "count",
    "existence",
    "landmark",
    "position",
    "posters",
    "scene",
];
const MME_REASONING: [&str; 4] = [
    "code_reasoning",
    "commonsense_reasoning",
    "numerical_calculation",
    "text_translation",
];

/// The prediction the extractor sees: KC tasks drop `<think>` blocks first.
fn visible_prediction(prediction: &str, rating: YesNoRating) -> String {
    match rating {
        YesNoRating::Kwai => remove_think_blocks(prediction),
        _ => prediction.to_string(),
    }
}

fn extracted_text(prediction: &str, rating: YesNoRating) -> &'static str {
    match rating {
        YesNoRating::Kwai => yes_no_chinese(prediction).as_chinese(),
        _ => yes_no(prediction).as_str(),
    }
}

fn is_correct(answer: &str, extracted: &str, rating: YesNoRating) -> bool {
    match rating {
        YesNoRating::Amber => answer.to_lowercase() == extracted.to_lowercase(),
        _ => answer == extracted,
    }
}

pub(super) fn quick_hit(
    dataset: &Dataset,
    row: usize,
    prediction: &str,
    rating: YesNoRating,
) -> Option<f64> {
    let extracted = extracted_text(&visible_prediction(prediction, rating), rating);
    let answer = dataset.get(row, "answer").unwrap_or("nan");
    Some(f64::from(u8::from(is_correct(answer, extracted, rating))))
}

pub(super) fn score(
    dataset: &Dataset,
    predictions: &[Prediction],
    context: &ScoreContext,
    rating: YesNoRating,
) -> Result<Scores, EvalError> {
    let visible: Vec<String> = predictions
        .iter()
        .map(|p| visible_prediction(&p.text, rating))
        .collect();
    let pairs: Vec<(&Prediction, &String)> = predictions.iter().zip(&visible).collect();
    let extracted: Vec<&'static str> =
        parallel_map(&pairs, context.concurrency, |&(prediction, text)| {
            let rule = extracted_text(text, rating);
            match context.judge {
                Some(judge) if rule == "Unknown" => {
                    let question = dataset.get(prediction.row, "question").unwrap_or("nan");
                    let index = dataset.row_index(prediction.row);
                    let prompt = match rating {
                        YesNoRating::Kwai => yes_no_chinese_prompt(question, text),
                        _ => yes_no_prompt(question, text),
                    };
                    JUDGE_TEMPERATURES
                        .iter()
                        .enumerate()
                        .map(|(attempt, &t)| {
                            let reply = judge.ask(index, &prompt, attempt, t, JUDGE_MAX_TOKENS);
                            extracted_text(&reply, rating)
                        })
                        .find(|&answer| answer != "Unknown")
                        .unwrap_or("Unknown")
                }
                _ => rule,
            }
        });
    let scored: Vec<ScoredRow> = predictions
        .iter()
        .zip(&extracted)
        .map(|(prediction, &extracted)| {
            let answer = dataset.get(prediction.row, "answer").unwrap_or("nan");
            ScoredRow {
                row: prediction.row,
                extracted,
                hit: f64::from(u8::from(is_correct(answer, extracted, rating))),
            }
        })
        .collect();
    let records = predictions
        .iter()
        .zip(&scored)
        .map(|(prediction, s)| {
            Record::new(
                dataset.row_index(s.row),
                &prediction.text,
                Some(s.extracted.to_string()),
                s.hit,
            )
            .with("answer", dataset.get(s.row, "answer").unwrap_or("nan"))
        })
        .collect();
    let (table, headline) = match rating {
        YesNoRating::Mme => mme_rating(dataset, &scored)?,
        YesNoRating::Hallusion => hallusion_rating(dataset, &scored)?,
        YesNoRating::Pope => pope_rating(dataset, &scored),
        YesNoRating::Amber => amber_rating(dataset, &scored),
        YesNoRating::Default | YesNoRating::Kwai => default_rating(dataset, &scored),
    };
    Ok(Scores {
        records,
        output: ScoreOutput::Table(table),
        file_suffix: "_score.csv".into(),
        headline,
        scored: scored.len(),
        failed: 0,
        random_fallbacks: 0,
    })
}

struct ScoredRow {
    row: usize,
    extracted: &'static str,
    hit: f64,
}

type Rating = (ScoreTable, BTreeMap<String, f64>);

/// Groups in first-appearance order.
fn grouped<'a, K: PartialEq + Clone>(
    items: impl Iterator<Item = (K, &'a ScoredRow)>,
) -> Vec<(K, Vec<&'a ScoredRow>)> {
    let mut groups: Vec<(K, Vec<&ScoredRow>)> = Vec::new();
    for (key, item) in items {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    groups
}

fn hits(rows: &[&ScoredRow]) -> Vec<f64> {
    rows.iter().map(|r| r.hit).collect()
}

fn required<'a>(dataset: &'a Dataset, row: usize, column: &str) -> Result<&'a str, EvalError> {
    dataset.get(row, column).ok_or_else(|| EvalError::Scoring {
        dataset: dataset.name().into(),
        reason: format!("row {} has no `{column}`", dataset.row_index(row)),
    })
}

/// Scores per `image_path`, in first-appearance order.
type ImageScores = Vec<(String, Vec<f64>)>;

/// `MME_rating`: per category acc + acc+ (both ×100), perception and reasoning sums. Categories
/// missing from a partial run contribute nothing to the sums.
fn mme_rating(dataset: &Dataset, scored: &[ScoredRow]) -> Result<Rating, EvalError> {
    let mut by_category: Vec<(String, ImageScores)> = Vec::new();
    for s in scored {
        let category = required(dataset, s.row, "category")?.to_string();
        let image = required(dataset, s.row, "image_path")?.to_string();
        let position = match by_category.iter().position(|(c, _)| *c == category) {
            Some(p) => p,
            None => {
                by_category.push((category, Vec::new()));
                by_category.len() - 1
            }
        };
        let images = &mut by_category[position].1;
        match images.iter_mut().find(|(i, _)| *i == image) {
            Some((_, scores)) => scores.push(s.hit),
            None => images.push((image, vec![s.hit])),
        }
    }
    let mut category_scores = Vec::with_capacity(by_category.len());
    for (category, images) in &by_category {
        let all: Vec<f64> = images
            .iter()
            .flat_map(|(_, scores)| scores.iter().copied())
            .collect();
        let mut plus = Vec::with_capacity(images.len());
        for (image, scores) in images {
            let [first, second, ..] = scores[..] else {
                return Err(EvalError::Scoring {
                    dataset: dataset.name().into(),
                    reason: format!("MME image {image} has one question; acc+ needs two per image"),
                });
            };
            plus.push(first * second);
        }
        category_scores.push((category.clone(), percent(&all) + percent(&plus)));
    }
    let sum_of = |names: &[&str]| {
        category_scores
            .iter()
            .filter(|(c, _)| names.contains(&c.as_str()))
            // Python's sum starts from +0.0; Rust's f64 `Sum` from -0.0.
            .fold(0.0, |total, (_, s)| total + s)
    };
    let perception = sum_of(&MME_PERCEPTION);
    let reasoning = sum_of(&MME_REASONING);
    let mut pairs = vec![
        ("perception".to_string(), perception),
        ("reasoning".to_string(), reasoning),
    ];
    pairs.extend(category_scores);
    let headline = BTreeMap::from([
        ("MME".to_string(), perception + reasoning),
        ("perception".to_string(), perception),
        ("reasoning".to_string(), reasoning),
    ]);
    Ok((ScoreTable::single_row(pairs), headline))
}

/// `Hallusion_rating`: aAcc, fAcc (all questions of a figure right), qAcc (a question right on
/// every figure), for Overall, each category and each l2-category.
fn hallusion_rating(dataset: &Dataset, scored: &[ScoredRow]) -> Result<Rating, EvalError> {
    let mut keyed = Vec::with_capacity(scored.len());
    for s in scored {
        let index = dataset.row_index(s.row);
        let fields: Vec<&str> = index.split('_').collect();
        if fields.len() < 6 {
            return Err(EvalError::Scoring {
                dataset: dataset.name().into(),
                reason: format!(
                    "HallusionBench index `{index}` lacks the set/figure/question fields"
                ),
            });
        }
        let l2 = dataset.get(s.row, "l2-category").unwrap_or("nan");
        keyed.push((
            format!("{l2}_{}_{}", fields[3], fields[4]),
            format!("{l2}_{}_{}", fields[3], fields[5]),
            s,
        ));
    }
    let accuracies = |subset: &[&(String, String, &ScoredRow)]| -> [f64; 3] {
        let rows: Vec<&ScoredRow> = subset.iter().map(|(_, _, s)| *s).collect();
        let all_right = |groups: Vec<(String, Vec<&ScoredRow>)>| {
            let flags: Vec<f64> = groups
                .iter()
                .map(|(_, m)| f64::from(u8::from(m.iter().all(|s| s.hit != 0.0))))
                .collect();
            percent(&flags)
        };
        [
            percent(&hits(&rows)),
            all_right(grouped(
                subset.iter().map(|(figure, _, s)| (figure.clone(), *s)),
            )),
            all_right(grouped(
                subset.iter().map(|(_, question, s)| (question.clone(), *s)),
            )),
        ]
    };
    let everything: Vec<&(String, String, &ScoredRow)> = keyed.iter().collect();
    let mut table = ScoreTable {
        columns: ["split", "aAcc", "fAcc", "qAcc"].map(String::from).to_vec(),
        rows: Vec::new(),
    };
    let overall = accuracies(&everything);
    let mut push = |label: String, values: [f64; 3]| {
        let mut row = vec![Cell::Text(label)];
        row.extend(values.map(Cell::Number));
        table.rows.push(row);
    };
    push("Overall".into(), overall);
    for column in ["category", "l2-category"] {
        if !dataset.table.has_column(column) {
            continue;
        }
        for value in sorted_values(dataset, scored.iter().map(|s| s.row), column) {
            let subset: Vec<_> = keyed
                .iter()
                .filter(|(_, _, s)| dataset.get(s.row, column) == Some(value.as_str()))
                .collect();
            push(value, accuracies(&subset));
        }
    }
    let headline = BTreeMap::from([
        ("aAcc".to_string(), overall[0]),
        ("fAcc".to_string(), overall[1]),
        ("qAcc".to_string(), overall[2]),
    ]);
    Ok((table, headline))
}

/// `POPE_rating`: F1 with Yes as positive (as `Overall`), accuracy, precision, recall; rows may
/// count in several comma-separated categories.
fn pope_rating(dataset: &Dataset, scored: &[ScoredRow]) -> Rating {
    let exploded: Vec<(Option<String>, &ScoredRow)> = scored
        .iter()
        .flat_map(|s| match dataset.get(s.row, "category") {
            Some(categories) => categories
                .split(',')
                .map(|c| (Some(c.to_string()), s))
                .collect::<Vec<_>>(),
            None => vec![(None, s)],
        })
        .collect();
    let metrics = |rows: &[&(Option<String>, &ScoredRow)]| -> [f64; 4] {
        let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
        for (_, s) in rows {
            let truth = dataset.get(s.row, "answer") == Some("Yes");
            let predicted = s.extracted == "Yes";
            match (truth, predicted) {
                (true, true) => tp += 1.0,
                (false, true) => fp += 1.0,
                (true, false) => fn_ += 1.0,
                (false, false) => {}
            }
        }
        let precision = if tp + fp != 0.0 { tp / (tp + fp) } else { 0.0 };
        let recall = if tp + fn_ != 0.0 {
            tp / (tp + fn_)
        } else {
            0.0
        };
        let f1 = if precision + recall != 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        let accuracy: Vec<f64> = rows.iter().map(|(_, s)| s.hit).collect();
        [
            f1 * 100.0,
            percent(&accuracy),
            precision * 100.0,
            recall * 100.0,
        ]
    };
    let mut table = ScoreTable {
        columns: ["split", "Overall", "acc", "precision", "recall"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    let all: Vec<_> = exploded.iter().collect();
    let overall = metrics(&all);
    let mut push = |label: String, values: [f64; 4]| {
        let mut row = vec![Cell::Text(label)];
        row.extend(values.map(Cell::Number));
        table.rows.push(row);
    };
    push("Overall".into(), overall);
    let mut categories: Vec<String> = exploded.iter().filter_map(|(c, _)| c.clone()).collect();
    categories.sort();
    categories.dedup();
    for category in categories {
        let subset: Vec<_> = exploded
            .iter()
            .filter(|(c, _)| c.as_deref() == Some(category.as_str()))
            .collect();
        push(category, metrics(&subset));
    }
    let headline = BTreeMap::from([
        ("F1".to_string(), overall[0]),
        ("acc".to_string(), overall[1]),
    ]);
    (table, headline)
}

/// `AMBER_rating`: accuracy per mapped category and their average.
fn amber_rating(dataset: &Dataset, scored: &[ScoredRow]) -> Rating {
    let mapped = |category: &str| -> String {
        match category {
            "discriminative-attribute-state"
            | "discriminative-attribute-number"
            | "discriminative-attribute-action" => "Attribute".into(),
            "discriminative-hallucination" => "Existence".into(),
            "discriminative-relation" | "relation" => "Relation".into(),
            other => other.into(),
        }
    };
    let groups = grouped(
        scored
            .iter()
            .map(|s| (mapped(dataset.get(s.row, "category").unwrap_or("nan")), s)),
    );
    let mut pairs: Vec<(String, f64)> = groups
        .iter()
        .map(|(c, members)| (c.clone(), percent(&hits(members))))
        .collect();
    let average = crate::python::numpy_mean(&pairs.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    pairs.push(("Avg ACC".into(), average));
    (
        ScoreTable::single_row(pairs),
        BTreeMap::from([("Avg ACC".to_string(), average)]),
    )
}

/// `default_rating`: `Overall`, then each category and each l2-category (sorted), ×100.
fn default_rating(dataset: &Dataset, scored: &[ScoredRow]) -> Rating {
    let all: Vec<&ScoredRow> = scored.iter().collect();
    let overall = percent(&hits(&all));
    let mut pairs = vec![("Overall".to_string(), overall)];
    for column in ["category", "l2-category"] {
        if !dataset.table.has_column(column) {
            continue;
        }
        for value in sorted_values(dataset, scored.iter().map(|s| s.row), column) {
            let subset: Vec<&ScoredRow> = scored
                .iter()
                .filter(|s| dataset.get(s.row, column) == Some(value.as_str()))
                .collect();
            pairs.push((value, percent(&hits(&subset))));
        }
    }
    (
        ScoreTable::single_row(pairs),
        BTreeMap::from([("Overall".to_string(), overall)]),
    )
}
