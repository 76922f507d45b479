//! Video-MME scoring: the letter regex and the per-duration rating.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Prediction, Record, ScoreOutput, Scores};
use crate::dataset::Dataset;
use crate::error::EvalError;
use crate::extract::video_mme_letter;
use crate::python::numpy_mean;

const DURATIONS: [&str; 3] = ["short", "medium", "long"];
const DOMAINS: [&str; 6] = [
    "Knowledge",
    "Film & Television",
    "Sports Competition",
    "Artistic Performance",
    "Life Record",
    "Multilingual",
];
const SUB_CATEGORIES: [&str; 30] = [
    "Humanity & History",
    "Literature & Art",
    "Biology & Medicine",
    "Finance & Commerce",
    "Astronomy",
    "Geography",
    "Law",
    "Life Tip",
    "Technology",
    "Animation",
    "Movie & TV Show",
    "Documentary",
    "News Report",
    "Esports",
    "Basketball",
    "Football",
    "Athletics",
    "Other Sports",
    "Stage Play",
    "Magic Show",
    "Variety Show",
    "Acrobatics",
    "Handicraft",
    "Food",
    "Fashion",
    "Daily Life",
    "Travel",
    "Pet & Animal",
    "Exercise",
    "Multilingual",
];
const TASK_TYPES: [&str; 12] = [
    "Temporal Perception",
    "Spatial Perception",
    "Attribute Perception",
    "Action Recognition",
    "Object Recognition",
    "OCR Problems",
    "Counting Problem",
    "Temporal Reasoning",
    "Spatial Reasoning",
    "Action Reasoning",
    "Object Reasoning",
    "Information Synopsis",
];

/// A row's score: the regex letter equals the gold letter. Without a letter the upstream
/// fallback parses options out of a question that holds none, so it always ends in `Z`: wrong.
fn row_score(dataset: &Dataset, row: usize, prediction: &str) -> (Option<char>, f64) {
    let letter = video_mme_letter(prediction);
    let answer = dataset.get(row, "answer").unwrap_or("");
    let hit = letter.is_some_and(|l| answer.len() == 1 && answer.starts_with(l));
    (letter, f64::from(u8::from(hit)))
}

pub(super) fn quick_hit(dataset: &Dataset, row: usize, prediction: &str) -> Option<f64> {
    Some(row_score(dataset, row, prediction).1)
}

pub(super) fn score(dataset: &Dataset, predictions: &[Prediction]) -> Result<Scores, EvalError> {
    let mut records = Vec::with_capacity(predictions.len());
    let mut scored = Vec::with_capacity(predictions.len());
    for prediction in predictions {
        let (letter, hit) = row_score(dataset, prediction.row, &prediction.text);
        scored.push((prediction.row, hit));
        records.push(
            Record::new(
                dataset.row_index(prediction.row),
                &prediction.text,
                letter.map(String::from),
                hit,
            )
            .with(
                "answer",
                dataset.get(prediction.row, "answer").unwrap_or("nan"),
            ),
        );
    }
    let rating = rating(dataset, &scored);
    let overall = rating
        .pointer("/overall/overall")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(f64::NAN, |fraction| fraction * 100.0);
    Ok(Scores {
        records,
        output: ScoreOutput::Json(rating),
        file_suffix: "_rating.json".into(),
        headline: BTreeMap::from([("overall".to_string(), overall)]),
        scored: predictions.len(),
        failed: 0,
        random_fallbacks: 0,
    })
}

/// `get_dimension_rating`: for each duration and overall, the mean score per domain,
/// sub-category and task type as 3-decimal strings (`nan` when empty). Values outside the
/// fixed lists are appended rather than rejected.
fn rating(dataset: &Dataset, scored: &[(usize, f64)]) -> Value {
    let mut result = Map::new();
    for duration in DURATIONS.iter().copied().chain(["overall"]) {
        let in_duration: Vec<&(usize, f64)> = scored
            .iter()
            .filter(|(row, _)| {
                duration == "overall" || dataset.get(*row, "duration") == Some(duration)
            })
            .collect();
        let mean_text = |values: Vec<f64>| {
            let mean = numpy_mean(&values);
            if mean.is_nan() {
                "nan".to_string()
            } else {
                format!("{mean:.3}")
            }
        };
        let mut entry = Map::new();
        let valid: Vec<f64> = in_duration
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| *s >= 0.0)
            .collect();
        entry.insert("overall".into(), Value::String(mean_text(valid)));
        for (column, fixed) in [
            ("domain", &DOMAINS[..]),
            ("sub_category", &SUB_CATEGORIES[..]),
            ("task_type", &TASK_TYPES[..]),
        ] {
            let mut names: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
            for (row, _) in &in_duration {
                if let Some(value) = dataset.get(*row, column)
                    && !names.iter().any(|n| n == value)
                {
                    names.push(value.to_string());
                }
            }
            let mut means = Map::new();
            for name in names {
                let values = in_duration
                    .iter()
                    .filter(|(row, s)| {
                        *s >= 0.0 && dataset.get(*row, column) == Some(name.as_str())
                    })
                    .map(|(_, s)| *s)
                    .collect();
                means.insert(name, Value::String(mean_text(values)));
            }
            entry.insert(column.into(), Value::Object(means));
        }
        result.insert(duration.into(), Value::Object(entry));
    }
    Value::Object(result)
}
