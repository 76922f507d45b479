//! Next-token selection with Hugging Face's processor order: repetition penalty (then OpenAI's
//! frequency and presence penalties, as vLLM applies them), then temperature, top-k, top-p, then
//! a seeded draw. Temperature 0 is greedy (first maximum wins,
//! like `torch.argmax`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 selects greedy decoding.
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    /// HF semantics: divide positive logits, multiply negative ones, of every token already in
    /// the sequence (prompt included).
    pub repetition_penalty: Option<f32>,
    /// OpenAI semantics: subtracted once per earlier occurrence of a token in the answer (not
    /// the prompt). 0 is off.
    pub frequency_penalty: f32,
    /// OpenAI semantics: subtracted from every token the answer already contains. 0 is off.
    pub presence_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 0,
        }
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Reused per step so sampling allocates nothing after the first token.
    scratch: Vec<(f32, u32)>,
    /// Per-vocabulary marks for the repetition penalty, reused per step.
    penalized: Vec<bool>,
    /// Occurrences of each token in the answer so far, when a frequency or presence penalty is on.
    answer_counts: std::collections::HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Self {
            params,
            rng,
            scratch: Vec::new(),
            penalized: Vec::new(),
            answer_counts: std::collections::HashMap::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token of the answer. `logits` is modified in place by the penalties;
    /// `previous` holds the ids the repetition penalty applies to (prompt and answer).
    pub fn sample(&mut self, logits: &mut [f32], previous: &[u32]) -> u32 {
        let token = self.pick(logits, previous);
        if self.params.frequency_penalty != 0.0 || self.params.presence_penalty != 0.0 {
            *self.answer_counts.entry(token).or_default() += 1;
        }
        token
    }

    fn pick(&mut self, logits: &mut [f32], previous: &[u32]) -> u32 {
        if let Some(penalty) = self.params.repetition_penalty.filter(|&p| p != 1.0) {
            apply_repetition_penalty(logits, previous, penalty, &mut self.penalized);
        }
        for (&token, &count) in &self.answer_counts {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit -=
                    self.params.frequency_penalty * count as f32 + self.params.presence_penalty;
            }
        }
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature;
        let candidates = &mut self.scratch;
        candidates.clear();
        candidates.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (l * inv_t, i as u32)),
        );
        candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if let Some(k) = self.params.top_k.filter(|&k| k > 0 && k < candidates.len()) {
            let threshold = candidates[k - 1].0;
            let keep = candidates.partition_point(|c| c.0 >= threshold);
            candidates.truncate(keep);
        }
        let max = candidates[0].0;
        let mut total = 0f32;
        for c in candidates.iter_mut() {
            c.0 = (c.0 - max).exp();
            total += c.0;
        }
        if let Some(top_p) = self.params.top_p.filter(|&p| p < 1.0) {
            // Keep a token while the probability mass ranked above it is below top_p.
            let mut above = 0f32;
            let mut keep = 0;
            for c in candidates.iter() {
                if keep > 0 && above / total >= top_p {
                    break;
                }
                above += c.0;
                keep += 1;
            }
            candidates.truncate(keep);
            total = above;
        }
        let mut draw = self.rng.random::<f32>() * total;
        for c in candidates.iter() {
            if draw < c.0 {
                return c.1;
            }
            draw -= c.0;
        }
        candidates.last().expect("at least one candidate").1
    }
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn apply_repetition_penalty(
    logits: &mut [f32],
    previous: &[u32],
    penalty: f32,
    seen: &mut Vec<bool>,
) {
    seen.clear();
    seen.resize(logits.len(), false);
    for &id in previous {
        let i = id as usize;
        if i < logits.len() && !seen[i] {
            seen[i] = true;
            let l = logits[i];
            logits[i] = if l < 0.0 { l * penalty } else { l / penalty };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn frequency_and_presence_penalties_count_answer_tokens_only() {
        let mut s = Sampler::new(SamplingParams {
            frequency_penalty: 0.5,
            presence_penalty: 1.0,
            ..SamplingParams::greedy()
        });
        // Prompt tokens in `previous` are not penalised: token 0 still wins.
        assert_eq!(s.sample(&mut [3.0, 2.9, 0.0], &[0, 0, 0]), 0);
        // Token 0 now appeared once: 3.0 - 0.5 - 1.0 = 1.5 < 2.9.
        let mut logits = [3.0, 2.9, 0.0];
        assert_eq!(s.sample(&mut logits, &[0, 0, 0, 0]), 1);
        assert_eq!(logits, [1.5, 2.9, 0.0]);
        // Tokens 0 and 1 once each: 4.0 - 1.5 = 2.5 vs 2.9 - 1.5 = 1.4 vs 2.0.
        let mut logits = [4.0, 2.9, 2.0];
        assert_eq!(s.sample(&mut logits, &[]), 0);
        assert_eq!(logits, [2.5, 2.9 - 1.5, 2.0]);
        // Token 0 twice now: 4.0 - 1.0 - 1.0 = 2.0 vs 2.4 - 1.5 = 0.9 vs 2.1.
        let mut logits = [4.0, 2.4, 2.1];
        assert_eq!(s.sample(&mut logits, &[]), 2);
    }

    #[test]
    fn repetition_penalty_follows_hf_sign_rule() {
        let mut logits = [2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut logits, &[0, 1, 1], 2.0, &mut Vec::new());
        assert_eq!(logits, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn top_k_one_is_deterministic() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: Some(1),
            top_p: None,
            repetition_penalty: None,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 7,
        };
        let mut s = Sampler::new(params);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 5.0, 4.9, 1.0], &[]), 1);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_head_reaching_p() {
        // Probabilities ≈ [0.6, 0.3, 0.1]: top_p 0.5 keeps only the first, 0.8 the first two.
        let logits = [0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        for (top_p, allowed) in [(0.5, vec![0]), (0.8, vec![0, 1])] {
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.0,
                top_k: None,
                top_p: Some(top_p),
                repetition_penalty: None,
                frequency_penalty: 0.0,
                presence_penalty: 0.0,
                seed: 3,
            });
            for _ in 0..200 {
                let t = s.sample(&mut logits.clone(), &[]);
                assert!(allowed.contains(&t), "top_p {top_p} drew {t}");
            }
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let params = SamplingParams {
            temperature: 0.8,
            top_k: Some(20),
            top_p: Some(0.95),
            repetition_penalty: None,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 42,
        };
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = || {
            let mut s = Sampler::new(params.clone());
            (0..30)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
