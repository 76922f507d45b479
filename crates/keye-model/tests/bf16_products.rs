//! `MatmulPrecision::Bf16` on the fixture cases of the tiny Preview model (bf16 weights): the
//! rounded activations keep the vision features and the prompt's last logits near the f32
//! reference, and they do change them, so the setting reaches the products.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use keye_media::GridThw;
use keye_model::{KeyeModel, KvCacheFormat, MatmulPrecision, SequenceChunk, WeightFormats};
use safetensors::SafeTensors;

const MODEL: &str = "keye-preview-tiny";

/// Bound on `max |Δ|` relative to the largest reference magnitude. Each bf16 rounding moves a
/// value by at most 2⁻⁹ (0.2 %) of itself; measured over the layers: at most 0.42 % for the
/// features and 0.52 % for the logits. A product with a wrong or missing term moves them by
/// tens of percent.
const VISION_RTOL_OF_MAX: f32 = 0.01;
const LOGIT_RTOL_OF_MAX: f32 = 0.02;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn load(precision: MatmulPrecision) -> KeyeModel {
    let formats = WeightFormats {
        matmul_precision: precision,
        ..WeightFormats::default()
    };
    KeyeModel::load_with_formats(&fixtures().join("models").join(MODEL), formats).unwrap()
}

fn tensor(st: &SafeTensors<'_>, name: &str) -> (Vec<u8>, Vec<usize>) {
    let t = st.tensor(name).unwrap();
    (t.data().to_vec(), t.shape().to_vec())
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn i64s(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// The prompt's last logits from the reference's `inputs_embeds` and positions.
fn last_logits(model: &KeyeModel, st: &SafeTensors<'_>) -> Vec<f32> {
    let (embeds, shape) = tensor(st, "inputs_embeds");
    let embeds = Tensor::from_vec(f32s(&embeds), (shape[0], shape[1]), &Device::Cpu).unwrap();
    let rows = i64s(&tensor(st, "position_ids").0);
    let len = shape[0];
    let positions: Vec<[i64; 3]> = (0..len)
        .map(|i| [rows[i], rows[len + i], rows[2 * len + i]])
        .collect();
    let mut cache = model.new_cache(len, KvCacheFormat::F32).unwrap();
    model
        .forward(
            &embeds,
            &mut [SequenceChunk {
                positions: &positions,
                cache: &mut cache,
            }],
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// The image features, when the case has images.
fn image_features(model: &KeyeModel, st: &SafeTensors<'_>) -> Option<Vec<f32>> {
    let (pixels, shape) = st
        .tensor("pixel_values")
        .ok()
        .map(|t| (t.data().to_vec(), t.shape().to_vec()))?;
    let grids: Vec<GridThw> = i64s(&tensor(st, "image_grid_thw").0)
        .chunks_exact(3)
        .map(|g| GridThw::new(g[0] as usize, g[1] as usize, g[2] as usize))
        .collect();
    let pixels = Tensor::from_vec(f32s(&pixels), shape, &Device::Cpu).unwrap();
    let encoded = model.encode_visual(&pixels, &grids).unwrap();
    Some(encoded.vision.flatten_all().unwrap().to_vec1().unwrap())
}

#[test]
fn bf16_products_stay_near_the_reference_and_differ_from_f32_products() {
    let (rounded, exact) = (load(MatmulPrecision::Bf16), load(MatmulPrecision::F32));
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases").join(MODEL))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let mut images = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(dir.join("outputs.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();

        let reference = f32s(&tensor(&st, "logits_last").0);
        let got = last_logits(&rounded, &st);
        let (diff, scale) = (max_abs_diff(&got, &reference), max_abs(&reference));
        eprintln!("{name} logits: max |Δ| {diff:.3e} of max |logit| {scale:.3e}");
        assert!(
            diff <= LOGIT_RTOL_OF_MAX * scale,
            "{name} logits_last: max |Δ| = {diff} > {LOGIT_RTOL_OF_MAX} of {scale}"
        );
        assert!(
            max_abs_diff(&got, &last_logits(&exact, &st)) > 0.0,
            "{name}: bf16 products gave the f32 products' logits"
        );

        if let Some(got) = image_features(&rounded, &st) {
            images += 1;
            let reference = f32s(&tensor(&st, "image_vision_embeds").0);
            let (diff, scale) = (max_abs_diff(&got, &reference), max_abs(&reference));
            eprintln!("{name} vision: max |Δ| {diff:.3e} of max |feature| {scale:.3e}");
            assert!(
                diff <= VISION_RTOL_OF_MAX * scale,
                "{name} image_vision_embeds: max |Δ| = {diff} > {VISION_RTOL_OF_MAX} of {scale}"
            );
        }
    }
    assert!(images > 0, "no image case among the fixtures");
}
