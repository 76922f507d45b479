//! Every stage of the model against the official PyTorch outputs of the fixture cases:
//! fixture `pixel_values` + grids + `input_ids` in, vision/projector features, positions,
//! `inputs_embeds`, last-position logits, teacher-forced step logits and greedy ids out.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use keye_media::GridThw;
use keye_model::{KeyeModel, KvCacheFormat, SequenceChunk, VideoBlock, argmax};
use safetensors::{Dtype, SafeTensors};

/// Observed spread of the references themselves (fixtures README §5).
const FEATURE_ATOL: f32 = 1e-4;
const LOGIT_RTOL_OF_MAX: f32 = 1e-5;
const LOGIT_ATOL: f32 = 1e-3;
/// The 8-bit KV cache rounds every cached row to 1/254 of its largest value; through the
/// layers that moves the first token's logits by well under 1 % of their largest magnitude.
/// A cache row written or read at the wrong place moves them by tens of percent.
const Q8_CACHE_LOGIT_RTOL_OF_MAX: f32 = 0.02;
/// The bf16 KV cache rounds every cached value to 2⁻⁹ of itself, a quarter of the 8-bit
/// cache's worst rounding or less; the bound keeps the same ratio to it.
const BF16_CACHE_LOGIT_RTOL_OF_MAX: f32 = 0.005;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Case {
    name: String,
    bytes: Vec<u8>,
}

impl Case {
    fn load(model: &str, case: &str) -> Self {
        let dir = fixtures().join("cases").join(model).join(case);
        Self {
            name: format!("{model}/{case}"),
            bytes: std::fs::read(dir.join("outputs.safetensors")).unwrap(),
        }
    }

    fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .tensor(name)
            .is_ok()
    }

    fn f32s(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (v, t.shape().to_vec())
    }

    fn i64s(&self, name: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn grids(&self, name: &str) -> Vec<GridThw> {
        if !self.has(name) {
            return Vec::new();
        }
        self.i64s(name)
            .chunks_exact(3)
            .map(|g| GridThw::new(g[0] as usize, g[1] as usize, g[2] as usize))
            .collect()
    }

    fn tensor(&self, name: &str) -> Tensor {
        let (v, shape) = self.f32s(name);
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(what: &str, got: &Tensor, want: &[f32], atol: f32) {
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = max_abs_diff(&got, want);
    assert!(diff <= atol, "{what}: max |Δ| = {diff} > {atol}");
}

fn assert_logits(what: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let tol = LOGIT_RTOL_OF_MAX * scale + LOGIT_ATOL;
    let diff = max_abs_diff(got, want);
    assert!(diff <= tol, "{what}: max |Δ| = {diff} > {tol}");
}

fn check_case(model: &KeyeModel, model_name: &str, case_name: &str) {
    let case = Case::load(model_name, case_name);
    let name = &case.name;
    let input_ids: Vec<u32> = case.i64s("input_ids").iter().map(|&i| i as u32).collect();
    let image_grids = case.grids("image_grid_thw");
    let video_rows = case.grids("video_grid_thw");

    let images = if image_grids.is_empty() {
        None
    } else {
        let enc = model
            .encode_visual(&case.tensor("pixel_values"), &image_grids)
            .unwrap();
        assert_close(
            &format!("{name} image_vision_embeds"),
            &enc.vision,
            &case.f32s("image_vision_embeds").0,
            FEATURE_ATOL,
        );
        assert_close(
            &format!("{name} image_projector_embeds"),
            &enc.projected,
            &case.f32s("image_projector_embeds").0,
            FEATURE_ATOL,
        );
        Some(enc.projected)
    };

    // Preview: one block per video, time-tied temporal ids. 1.5: merged rows re-split per frame.
    let (video_grids, video_blocks): (Vec<GridThw>, Vec<VideoBlock>) = match model.architecture() {
        keye_model::Architecture::Preview => {
            let seconds = if video_rows.is_empty() {
                Vec::new()
            } else {
                case.f32s("second_per_grid_ts").0
            };
            let blocks = video_rows
                .iter()
                .zip(&seconds)
                .map(|(&grid, &s)| VideoBlock {
                    grid,
                    seconds_per_grid: s,
                })
                .collect();
            (video_rows.clone(), blocks)
        }
        keye_model::Architecture::V1_5 => {
            let frames: Vec<GridThw> = video_rows
                .iter()
                .flat_map(|g| std::iter::repeat_n(GridThw::new(1, g.h, g.w), g.t))
                .collect();
            let blocks = frames
                .iter()
                .map(|&grid| VideoBlock {
                    grid,
                    seconds_per_grid: 0.0,
                })
                .collect();
            (frames, blocks)
        }
    };
    let videos = if video_grids.is_empty() {
        None
    } else {
        let enc = model
            .encode_visual(&case.tensor("pixel_values_videos"), &video_grids)
            .unwrap();
        assert_close(
            &format!("{name} video_vision_embeds"),
            &enc.vision,
            &case.f32s("video_vision_embeds").0,
            FEATURE_ATOL,
        );
        assert_close(
            &format!("{name} video_projector_embeds"),
            &enc.projected,
            &case.f32s("video_projector_embeds").0,
            FEATURE_ATOL,
        );
        Some(enc.projected)
    };

    let positions = model
        .positions(&input_ids, &image_grids, &video_blocks)
        .unwrap();
    assert_eq!(
        positions.to_rows(),
        case.i64s("position_ids"),
        "{name} position_ids"
    );
    assert_eq!(
        vec![positions.rope_delta],
        case.i64s("rope_deltas"),
        "{name} rope_deltas"
    );

    let embeds = model
        .embed_prompt(&input_ids, images.as_ref(), videos.as_ref())
        .unwrap();
    assert_close(
        &format!("{name} inputs_embeds"),
        &embeds,
        &case.f32s("inputs_embeds").0,
        FEATURE_ATOL,
    );

    let generated: Vec<u32> = case
        .i64s("generated_ids")
        .iter()
        .map(|&i| i as u32)
        .collect();
    let (step_logits, step_shape) = case.f32s("step_logits");
    let vocab = step_shape[1];
    let mut cache = model
        .new_cache(input_ids.len() + generated.len(), KvCacheFormat::F32)
        .unwrap();
    let mut logits = model
        .forward(
            &embeds,
            &mut [SequenceChunk {
                positions: &positions.ids,
                cache: &mut cache,
            }],
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_logits(
        &format!("{name} logits_last"),
        &logits,
        &case.f32s("logits_last").0,
    );
    for (format, tolerance) in [
        (KvCacheFormat::Bf16, BF16_CACHE_LOGIT_RTOL_OF_MAX),
        (KvCacheFormat::Q8, Q8_CACHE_LOGIT_RTOL_OF_MAX),
    ] {
        check_compact_cache_prefill(
            model,
            name,
            format,
            tolerance,
            &embeds,
            &positions.ids,
            &case.f32s("logits_last").0,
        );
    }

    // Teacher forcing the reference's greedy ids; our own argmax must pick the same ids.
    for (step, &token) in generated.iter().enumerate() {
        assert_logits(
            &format!("{name} step_logits[{step}]"),
            &logits,
            &step_logits[step * vocab..(step + 1) * vocab],
        );
        assert_eq!(argmax(&logits), token, "{name} greedy id at step {step}");
        let c = cache.len() as i64 + positions.rope_delta;
        let embed = model.embed_prompt(&[token], None, None).unwrap();
        logits = model
            .forward(
                &embed,
                &mut [SequenceChunk {
                    positions: &[[c; 3]],
                    cache: &mut cache,
                }],
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
    }
}

/// The prompt's last logits with a compact KV cache stay within its rounding of the reference
/// (`tolerance` of the largest logit).
fn check_compact_cache_prefill(
    model: &KeyeModel,
    name: &str,
    format: KvCacheFormat,
    tolerance: f32,
    embeds: &Tensor,
    positions: &[[i64; 3]],
    reference: &[f32],
) {
    let mut cache = model.new_cache(positions.len(), format).unwrap();
    let logits = model
        .forward(
            embeds,
            &mut [SequenceChunk {
                positions,
                cache: &mut cache,
            }],
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = max_abs_diff(&logits, reference);
    eprintln!("{name} {format} KV cache: max |Δ logit| = {diff:.3e} of max |logit| {scale:.3e}");
    assert!(
        diff <= tolerance * scale,
        "{name} logits_last with the {format} KV cache: max |Δ| = {diff} > {tolerance} of {scale}"
    );
}

fn check_model(model_name: &str) {
    let model = KeyeModel::load(&fixtures().join("models").join(model_name)).unwrap();
    let cases_dir = fixtures().join("cases").join(model_name);
    let mut cases: Vec<String> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 6,
        "fixture cases missing in {}",
        cases_dir.display()
    );
    for case in &cases {
        check_case(&model, model_name, case);
    }
}

#[test]
fn preview_tiny_matches_reference_on_every_case() {
    check_model("keye-preview-tiny");
}

#[test]
fn keye_1_5_tiny_matches_reference_on_every_case() {
    check_model("keye-1.5-tiny");
}
