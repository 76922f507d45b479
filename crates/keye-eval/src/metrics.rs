//! Per-sample VQA metrics (`vqa_eval.py`), with their quirks.

use crate::extract::process_answer;
use crate::python::{numpy_mean, parse_float, split_whitespace, strip};

/// Which per-answer match function and which reduction a VQA dataset uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VqaMetric {
    /// VQAv2 soft accuracy, mean over answers (TextVQA and the default).
    Soft,
    /// ANLS with the 0.5 threshold (DocVQA, InfoVQA).
    Anls,
    /// ChartQA relaxed accuracy, max over answers.
    Relaxed,
    /// Case-insensitive exact match, max over answers (OCRVQA).
    ExactMax,
    /// Case-insensitive exact match, mean over answers (GQA).
    ExactMean,
}

impl VqaMetric {
    /// Chosen by dataset name, first match wins, as `ImageVQADataset.evaluate` does.
    pub fn for_dataset(name: &str) -> VqaMetric {
        if name.contains("TextVQA") {
            VqaMetric::Soft
        } else if name.contains("ChartQA") {
            VqaMetric::Relaxed
        } else if name.contains("OCRVQA") {
            VqaMetric::ExactMax
        } else if name.contains("GQA") {
            VqaMetric::ExactMean
        } else if name.contains("DocVQA") || name.contains("InfoVQA") {
            VqaMetric::Anls
        } else {
            VqaMetric::Soft
        }
    }

    /// Per-answer match values and the sample score.
    pub fn score(self, answers: &[String], prediction: &str) -> (Vec<f64>, f64) {
        let matches = match self {
            VqaMetric::Soft => vqa_soft_matches(answers, prediction),
            VqaMetric::Anls => answers
                .iter()
                .map(|gt| normalised_levenshtein(gt, prediction))
                .collect(),
            VqaMetric::Relaxed => {
                let pred = strip(prediction);
                answers
                    .iter()
                    .map(|gt| f64::from(u8::from(relaxed_correct(gt, pred))))
                    .collect()
            }
            VqaMetric::ExactMax | VqaMetric::ExactMean => {
                let pred = strip(prediction).to_lowercase();
                answers
                    .iter()
                    .map(|gt| f64::from(u8::from(strip(gt).to_lowercase() == pred)))
                    .collect()
            }
        };
        let score = match self {
            VqaMetric::Soft | VqaMetric::ExactMean => numpy_mean(&matches),
            VqaMetric::Anls => {
                let best = 1.0 - matches.iter().copied().fold(f64::INFINITY, f64::min);
                if best < ANLS_THRESHOLD { 0.0 } else { best }
            }
            VqaMetric::Relaxed | VqaMetric::ExactMax => {
                matches.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            }
        };
        (matches, score)
    }
}

const ANLS_THRESHOLD: f64 = 0.5;

/// For each gold answer i: `min(1, #{j ≠ i : gt_j == pred} / 3)` on normalised strings.
pub fn vqa_soft_matches(answers: &[String], prediction: &str) -> Vec<f64> {
    let gts: Vec<String> = answers.iter().map(|a| process_answer(a)).collect();
    let pred = process_answer(prediction);
    let total_equal = gts.iter().filter(|gt| **gt == pred).count();
    gts.iter()
        .map(|gt| {
            let others_equal = total_equal - usize::from(*gt == pred);
            (others_equal as f64 / 3.0).min(1.0)
        })
        .collect()
}

/// ANLS distance: Levenshtein of the lower-cased, space-collapsed strings over the longer raw
/// (upper-cased) length.
pub fn normalised_levenshtein(groundtruth: &str, prediction: &str) -> f64 {
    let collapse = |s: &str| {
        split_whitespace(&strip(s).to_lowercase())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let distance = levenshtein(&collapse(groundtruth), &collapse(prediction));
    let length = groundtruth
        .to_uppercase()
        .chars()
        .count()
        .max(prediction.to_uppercase().chars().count());
    if length == 0 {
        0.0
    } else {
        distance as f64 / length as f64
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut previous: Vec<usize> = (0..=short.len()).collect();
    let mut current = vec![0; short.len() + 1];
    for (i, &lc) in long.iter().enumerate() {
        current[0] = i + 1;
        for (j, &sc) in short.iter().enumerate() {
            current[j + 1] = if sc == lc {
                previous[j]
            } else {
                1 + previous[j].min(previous[j + 1]).min(current[j])
            };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[short.len()]
}

/// ChartQA relaxed correctness as VLMEvalKit calls it: the arguments are swapped, so the 5%
/// tolerance is relative to the *prediction*.
pub fn relaxed_correct(gold: &str, prediction: &str) -> bool {
    let as_float = |text: &str| match text.strip_suffix('%') {
        Some(_) => parse_float(text.trim_end_matches('%')).map(|v| v / 100.0),
        None => parse_float(text),
    };
    match (as_float(gold), as_float(prediction)) {
        (Some(g), Some(p)) if p != 0.0 => (g - p).abs() / p.abs() <= 0.05,
        _ => gold.to_lowercase() == prediction.to_lowercase(),
    }
}

/// OCRBench: does any gold answer occur in the prediction, with the category's normalisation.
pub fn ocrbench_hit(category: &str, answers: &[String], prediction: &str) -> bool {
    if category == OCRBENCH_HMER {
        let squash = |s: &str| strip(s).replace('\n', " ").replace(' ', "");
        let pred = squash(prediction);
        answers.iter().any(|a| pred.contains(&squash(a)))
    } else {
        let normalise = |s: &str| strip(&s.to_lowercase()).replace('\n', " ");
        let pred = normalise(prediction);
        answers.iter().any(|a| pred.contains(&normalise(a)))
    }
}

pub const OCRBENCH_HMER: &str = "Handwritten Mathematical Expression Recognition";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }

    #[test]
    fn metric_selection_by_name() {
        assert_eq!(VqaMetric::for_dataset("TextVQA_VAL"), VqaMetric::Soft);
        assert_eq!(VqaMetric::for_dataset("DocVQA_VAL"), VqaMetric::Anls);
        assert_eq!(VqaMetric::for_dataset("ChartQA_TEST"), VqaMetric::Relaxed);
        assert_eq!(
            VqaMetric::for_dataset("OCRVQA_TESTCORE"),
            VqaMetric::ExactMax
        );
        assert_eq!(
            VqaMetric::for_dataset("GQA_TestDev_Balanced"),
            VqaMetric::ExactMean
        );
        assert_eq!(VqaMetric::for_dataset("CPV"), VqaMetric::Soft);
    }
}
