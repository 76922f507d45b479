//! Multiple-choice scoring: vanilla and circular evaluation, MMMU's open questions, `report_acc`.

use std::collections::{BTreeMap, HashMap};

use rand::seq::IndexedRandom;

use super::{
    Prediction, Record, ScoreContext, ScoreOutput, ScoreTable, Scores, parallel_map, sorted_values,
};
use crate::dataset::Dataset;
use crate::error::EvalError;
use crate::extract::{Compat, FAIL_MSG, can_infer};
use crate::judge::{Judge, mcq_prompt};
use crate::python::{numpy_mean, parse_int};
use crate::score::Cell;

/// MMBench's abbreviations of its `l2-category` names.
const MMBENCH_ABBREVIATIONS: [(&str, &str); 6] = [
    ("coarse_perception", "CP"),
    ("finegrained_perception (instance-level)", "FP-S"),
    ("finegrained_perception (cross-instance)", "FP-C"),
    ("logic_reasoning", "LR"),
    ("relation_reasoning", "RR"),
    ("attribute_reasoning", "AR"),
];

const JUDGE_TRIES: usize = 3;
const JUDGE_MAX_TOKENS: u32 = 2048;
const NO_JUDGE_LOG: &str =
    "Failed in Prefetch, no GPT-based answer matching under `exact_matching` policy.";

/// One prediction with its dataset fields, as the evaluator sees it.
struct Item<'a> {
    row: usize,
    index: &'a str,
    prediction: &'a str,
    choices: Vec<(char, String)>,
    gold: String,
}

fn item<'a>(dataset: &'a Dataset, prediction: &'a Prediction, mmmu: bool) -> Item<'a> {
    let row = prediction.row;
    let mut choices = dataset.options(row);
    let answer = dataset.get(row, "answer").unwrap_or("nan");
    let mut gold = answer.to_string();
    if mmmu {
        // MMMU_preproc: an open question becomes "A = the answer, B = Other Answers".
        if dataset.get(row, "A").is_none() {
            choices.retain(|(letter, _)| !matches!(letter, 'A' | 'B'));
            choices.insert(0, ('A', answer.to_string()));
            choices.insert(1, ('B', "Other Answers".to_string()));
        }
        let is_letter = answer.len() == 1 && answer.chars().all(|c| c.is_ascii_uppercase());
        if !is_letter {
            gold = "A".into();
        }
    }
    Item {
        row,
        index: dataset.row_index(row),
        prediction: &prediction.text,
        choices,
        gold,
    }
}

pub(super) fn quick_hit(
    dataset: &Dataset,
    row: usize,
    prediction: &str,
    compat: Compat,
    mmmu: bool,
) -> Option<f64> {
    let owned = Prediction {
        row,
        text: prediction.to_string(),
    };
    let item = item(dataset, &owned, mmmu);
    let letter = can_infer(prediction, &item.choices, compat).unwrap_or('Z');
    Some(f64::from(u8::from(item.gold == letter.to_string())))
}

/// The evaluator's answer for one item: rule-based first, then the judge, then a seeded guess.
struct Extraction {
    letter: char,
    log: String,
    random: bool,
}

fn extract(dataset: &Dataset, item: &Item, context: &ScoreContext) -> Extraction {
    if let Some(letter) = can_infer(item.prediction, &item.choices, context.compat) {
        return Extraction {
            letter,
            log: item.prediction.to_string(),
            random: false,
        };
    }
    let Some(judge) = context.judge else {
        return Extraction {
            letter: 'Z',
            log: NO_JUDGE_LOG.into(),
            random: false,
        };
    };
    judge_extract(judge, dataset, item, context.compat)
}

fn judge_extract(judge: &Judge, dataset: &Dataset, item: &Item, compat: Compat) -> Extraction {
    let question = dataset.get(item.row, "question").unwrap_or("nan");
    let prompt = mcq_prompt(dataset.name(), question, &item.choices, item.prediction);
    for attempt in 0..JUDGE_TRIES {
        // VLMEvalKit's MCQ judge runs at the wrapper's default temperature, 0.
        let reply = judge.ask(item.index, &prompt, attempt, 0.0, JUDGE_MAX_TOKENS);
        if reply.contains(FAIL_MSG) {
            continue;
        }
        if let Some(letter) = can_infer(&reply, &item.choices, compat) {
            return Extraction {
                letter,
                log: reply,
                random: false,
            };
        }
    }
    let mut candidates: Vec<char> = item.choices.iter().map(|&(l, _)| l).collect();
    if !candidates.contains(&'Z') {
        candidates.push('Z');
    }
    let letter = *candidates
        .choose(&mut judge.fallback_rng(item.index))
        .expect("at least Z");
    Extraction {
        letter,
        log: "Failed to predict, thus randomly generate one. ".into(),
        random: true,
    }
}

pub(super) fn score(
    dataset: &Dataset,
    predictions: &[Prediction],
    context: &ScoreContext,
    circular: bool,
    mmmu: bool,
) -> Result<Scores, EvalError> {
    let numeric = dataset.has_integer_indices();
    if circular && !numeric {
        return Err(EvalError::Scoring {
            dataset: dataset.name().into(),
            reason: "circular evaluation needs integer indices".into(),
        });
    }
    let mut sorted: Vec<&Prediction> = predictions.iter().collect();
    sorted.sort_by(|a, b| {
        compare_indices(dataset.row_index(a.row), dataset.row_index(b.row), numeric)
    });
    let items: Vec<Item> = sorted.iter().map(|p| item(dataset, p, mmmu)).collect();
    let (records, main_rows, random_fallbacks) = if circular {
        circular_eval(dataset, &items, context)
    } else {
        vanilla_eval(dataset, &items, context)
    };
    let table = report_acc(dataset, &main_rows);
    let mut headline = BTreeMap::new();
    for cells in &table.rows {
        let Some(Cell::Text(split)) = cells.first() else {
            continue;
        };
        if let Some(overall) = table.value(Some(split), "Overall") {
            let key = if table.rows.len() == 1 {
                "Overall".to_string()
            } else {
                format!("Overall ({split})")
            };
            headline.insert(key, overall * 100.0);
        }
    }
    Ok(Scores {
        records,
        output: ScoreOutput::Table(table),
        file_suffix: "_acc.csv".into(),
        headline,
        scored: main_rows.len(),
        failed: 0,
        random_fallbacks,
    })
}

fn compare_indices(a: &str, b: &str, numeric: bool) -> std::cmp::Ordering {
    if numeric {
        parse_int(a).cmp(&parse_int(b))
    } else {
        a.cmp(b)
    }
}

/// `(row, hit)` of the rows that count for the score.
type MainRows = Vec<(usize, f64)>;

fn vanilla_eval(
    dataset: &Dataset,
    items: &[Item],
    context: &ScoreContext,
) -> (Vec<Record>, MainRows, usize) {
    let extractions = parallel_map(items, context.concurrency, |item| {
        extract(dataset, item, context)
    });
    let mut records = Vec::with_capacity(items.len());
    let mut main_rows = Vec::with_capacity(items.len());
    let mut random = 0;
    for (item, extraction) in items.iter().zip(extractions) {
        let hit = f64::from(u8::from(item.gold == extraction.letter.to_string()));
        random += usize::from(extraction.random);
        main_rows.push((item.row, hit));
        records.push(
            Record::new(
                item.index,
                item.prediction,
                Some(extraction.letter.to_string()),
                hit,
            )
            .with("answer", item.gold.clone())
            .with("log", format!("Match Log: {}. ", extraction.log))
            .with("random_fallback", extraction.random),
        );
    }
    (records, main_rows, random)
}

fn circular_eval(
    dataset: &Dataset,
    items: &[Item],
    context: &ScoreContext,
) -> (Vec<Record>, MainRows, usize) {
    let group_of = |item: &Item| -> i128 {
        dataset
            .get(item.row, "g_index")
            .and_then(parse_int)
            .unwrap_or_else(|| {
                parse_int(item.index)
                    .expect("integer indices checked")
                    .rem_euclid(1_000_000)
            })
    };
    let mut groups: HashMap<i128, Vec<usize>> = HashMap::new();
    for (position, item) in items.iter().enumerate() {
        groups.entry(group_of(item)).or_default().push(position);
    }
    let mains: Vec<usize> = (0..items.len())
        .filter(|&p| parse_int(items[p].index) == Some(group_of(&items[p])))
        .collect();
    let outcomes = parallel_map(&mains, context.concurrency, |&main| {
        let members = &groups[&group_of(&items[main])];
        evaluate_group(dataset, items, members, context)
    });
    let mut group_hit: HashMap<i128, f64> = HashMap::new();
    let mut group_log: HashMap<i128, String> = HashMap::new();
    let mut extracted: HashMap<usize, char> = HashMap::new();
    let mut random = 0;
    for (&main, outcome) in mains.iter().zip(outcomes) {
        let group = group_of(&items[main]);
        group_hit.insert(group, outcome.hit);
        group_log.insert(group, outcome.log);
        random += outcome.random;
        extracted.extend(outcome.letters);
    }
    let records = items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            let group = group_of(item);
            let is_main = mains.contains(&position);
            let letter = extracted
                .get(&position)
                .copied()
                .or_else(|| can_infer(item.prediction, &item.choices, context.compat));
            let mut record = Record::new(
                item.index,
                item.prediction,
                letter.map(String::from),
                group_hit.get(&group).copied().unwrap_or(0.0),
            )
            .with("answer", item.gold.clone())
            .with("g_index", group.to_string())
            .with("main", is_main);
            if is_main && let Some(log) = group_log.get(&group) {
                record = record.with("log", log.clone());
            }
            record
        })
        .collect();
    let main_rows = mains
        .iter()
        .map(|&p| (items[p].row, group_hit[&group_of(&items[p])]))
        .collect();
    (records, main_rows, random)
}

struct GroupOutcome {
    hit: f64,
    log: String,
    letters: Vec<(usize, char)>,
    random: usize,
}

/// `prefetch_circular_group` then, for undecided copies, `eval_circular_group`.
fn evaluate_group(
    dataset: &Dataset,
    items: &[Item],
    members: &[usize],
    context: &ScoreContext,
) -> GroupOutcome {
    let prefetched: Vec<Option<char>> = members
        .iter()
        .map(|&position| {
            can_infer(
                items[position].prediction,
                &items[position].choices,
                context.compat,
            )
        })
        .collect();
    let golds: Vec<&str> = members
        .iter()
        .map(|&position| items[position].gold.as_str())
        .collect();
    let mut letters: Vec<(usize, char)> = members
        .iter()
        .zip(&prefetched)
        .filter_map(|(&position, letter)| letter.map(|l| (position, l)))
        .collect();
    match circular_prefetch(&prefetched, &golds) {
        Prefetch::Mismatch(rolling) => {
            let item = &items[members[rolling]];
            let letter = prefetched[rolling].expect("a mismatch has a letter");
            let log = format!(
                "Failed in Prefetching Rolling {rolling}: Answer is {}, Prediction is {}, Pre-fetched is {letter}. ",
                item.gold, item.prediction
            );
            return GroupOutcome {
                hit: 0.0,
                log,
                letters,
                random: 0,
            };
        }
        Prefetch::AllMatched => {
            return GroupOutcome {
                hit: 1.0,
                log: "Succeed During Pre-fetching".into(),
                letters,
                random: 0,
            };
        }
        Prefetch::Undecided => {}
    }
    let Some(judge) = context.judge else {
        return GroupOutcome {
            hit: 0.0,
            log: NO_JUDGE_LOG.into(),
            letters,
            random: 0,
        };
    };
    let mut log = String::new();
    let mut random = 0;
    for (rolling, (&position, letter)) in members.iter().zip(&prefetched).enumerate() {
        let item = &items[position];
        if letter.is_some() {
            log.push_str(&format!("Rolling {rolling} Matched.\n"));
            continue;
        }
        let extraction = judge_extract(judge, dataset, item, context.compat);
        random += usize::from(extraction.random);
        letters.push((position, extraction.letter));
        if extraction.letter.to_string() != item.gold {
            log.push_str(&format!(
                "Failed in Rolling {rolling}: Answer is {}; Prediction is {}; Pre-fetched is {}; Match Log is {}.\n",
                item.gold, item.prediction, extraction.letter, extraction.log
            ));
            return GroupOutcome {
                hit: 0.0,
                log,
                letters,
                random,
            };
        }
        log.push_str(&format!(
            "Rolling {rolling}: Answer is {}, Prediction is {}, Pre-fetched is {}.\n",
            item.gold, item.prediction, extraction.letter
        ));
    }
    GroupOutcome {
        hit: 1.0,
        log,
        letters,
        random,
    }
}

/// The verdict of the circular pre-fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// Every copy was extracted and matches its gold letter: group hit 1.
    AllMatched,
    /// This copy (in index order) was extracted to a wrong letter: group hit 0.
    Mismatch(usize),
    /// Some copy could not be extracted by rules: the judge decides (no judge: hit 0).
    Undecided,
}

/// `prefetch_circular_group` on the rule-extracted letters of a group's copies.
pub fn circular_prefetch(letters: &[Option<char>], golds: &[&str]) -> Prefetch {
    for (rolling, (letter, gold)) in letters.iter().zip(golds).enumerate() {
        if let Some(letter) = letter
            && letter.to_string() != *gold
        {
            return Prefetch::Mismatch(rolling);
        }
    }
    if letters.iter().all(Option::is_some) {
        Prefetch::AllMatched
    } else {
        Prefetch::Undecided
    }
}

/// `report_acc`: one row per split (`none` without a split column), `Overall`, then each
/// `l2-category` (abbreviated for MMBench) and each `category`, all fractions.
fn report_acc(dataset: &Dataset, main_rows: &[(usize, f64)]) -> ScoreTable {
    let has_split = dataset.table.has_column("split");
    let splits = if has_split {
        sorted_values(dataset, main_rows.iter().map(|&(r, _)| r), "split")
    } else {
        vec!["none".into()]
    };
    let split_of = |row: usize| {
        if has_split {
            dataset.get(row, "split").unwrap_or("")
        } else {
            "none"
        }
    };
    let mean_where = |filter: &dyn Fn(usize) -> bool, split: &str| {
        let hits: Vec<f64> = main_rows
            .iter()
            .filter(|&&(r, _)| split_of(r) == split && filter(r))
            .map(|&(_, h)| h)
            .collect();
        numpy_mean(&hits)
    };
    let mut columns: Vec<(String, Vec<f64>)> = vec![(
        "Overall".into(),
        splits
            .iter()
            .map(|split| mean_where(&|_| true, split))
            .collect(),
    )];
    for group in ["l2-category", "category"] {
        if !dataset.table.has_column(group) {
            continue;
        }
        for ability in sorted_values(dataset, main_rows.iter().map(|&(r, _)| r), group) {
            let name = MMBENCH_ABBREVIATIONS
                .iter()
                .find(|(full, _)| *full == ability)
                .map_or(ability.clone(), |(_, a)| a.to_string());
            let values = splits
                .iter()
                .map(|split| {
                    mean_where(&|r| dataset.get(r, group) == Some(ability.as_str()), split)
                })
                .collect();
            match columns.iter_mut().find(|(c, _)| *c == name) {
                Some((_, existing)) => *existing = values,
                None => columns.push((name, values)),
            }
        }
    }
    let mut table = ScoreTable {
        columns: vec!["split".into()],
        rows: Vec::new(),
    };
    table.columns.extend(columns.iter().map(|(c, _)| c.clone()));
    for (i, split) in splits.iter().enumerate() {
        let mut row = vec![Cell::Text(split.clone())];
        row.extend(columns.iter().map(|(_, values)| Cell::Number(values[i])));
        table.rows.push(row);
    }
    table
}
