//! A quantized vision MLP whose width is not whole 32-value blocks (SigLIP's 4304) is padded
//! with zero units at load, so `fc2` is quantized too instead of staying bf16. The padded model
//! must compute exactly what a checkpoint holding those zero units itself computes, and a GGUF
//! file from `keye quantize` (which must keep `fc2` unpadded, as floats) exactly what
//! quantizing the folder at load computes.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use keye::HubOptions;
use keye_media::GridThw;
use keye_model::gguf::GgufFile;
use keye_model::{KeyeModel, QuantType, WeightFormat, WeightFormats};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

const MODEL: &str = "keye-preview-tiny";
/// The tiny tower's MLP width is 128; the checkpoint under test keeps 112 of its units
/// (3.5 blocks), the one it is compared with pads those back to 128 with zeros.
const NARROW: usize = 112;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The fixture model with every vision MLP cut to its first `NARROW` units, then padded with
/// zero units to `width`, written to `dir`.
fn write_variant(dir: &Path, width: usize) {
    let source = fixtures().join("models").join(MODEL);
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "model.safetensors" && name != "config.json" {
            std::fs::copy(&path, dir.join(name)).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("config.json")).unwrap()).unwrap();
    let full = config["vision_config"]["intermediate_size"]
        .as_u64()
        .unwrap() as usize;
    config["vision_config"]["intermediate_size"] = width.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();

    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let element = view.dtype().bitsize() / 8;
        let (mut shape, mut data) = (view.shape().to_vec(), view.data().to_vec());
        let is_mlp = name.starts_with("visual.") && name.contains(".mlp.fc");
        if is_mlp && (name.ends_with("fc1.weight") || name.ends_with("fc1.bias")) {
            // Units are rows of fc1 (and entries of its bias).
            assert_eq!(shape[0], full, "{name}");
            let row = data.len() / full;
            data.truncate(NARROW * row);
            data.resize(width * row, 0);
            shape[0] = width;
        } else if is_mlp && name.ends_with("fc2.weight") {
            // Units are columns of fc2.
            assert_eq!(shape[1], full, "{name}");
            data = data
                .chunks_exact(full * element)
                .flat_map(|row| {
                    let mut row = row[..NARROW * element].to_vec();
                    row.resize(width * element, 0);
                    row
                })
                .collect();
            shape[1] = width;
        }
        tensors.push((name, view.dtype(), shape, data));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// The image features of the first fixture case with an image.
fn image_features(model: &KeyeModel) -> Vec<f32> {
    let cases = fixtures().join("cases").join(MODEL);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let bytes = std::fs::read(dir.join("outputs.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let Ok(pixels) = st.tensor("pixel_values") else {
            continue;
        };
        let values: Vec<f32> = pixels
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let pixels = Tensor::from_vec(values, pixels.shape(), &Device::Cpu).unwrap();
        let grids: Vec<GridThw> = st
            .tensor("image_grid_thw")
            .unwrap()
            .data()
            .chunks_exact(24)
            .map(|g| {
                let at = |i: usize| i64::from_le_bytes(g[8 * i..8 * i + 8].try_into().unwrap());
                GridThw::new(at(0) as usize, at(1) as usize, at(2) as usize)
            })
            .collect();
        let encoded = model.encode_visual(&pixels, &grids).unwrap();
        return encoded.vision.flatten_all().unwrap().to_vec1().unwrap();
    }
    panic!("no image case among the fixtures");
}

fn vision_formats(vision: WeightFormat) -> WeightFormats {
    WeightFormats {
        vision,
        ..WeightFormats::default()
    }
}

fn load(dir: &Path, vision: WeightFormat) -> KeyeModel {
    KeyeModel::load_with_formats(dir, vision_formats(vision)).unwrap()
}

#[test]
fn padded_mlp_computes_what_stored_zero_units_compute() {
    let dir = tempfile::tempdir().unwrap();
    let (narrow, padded) = (dir.path().join("narrow"), dir.path().join("padded"));
    write_variant(&narrow, NARROW);
    write_variant(&padded, NARROW.next_multiple_of(32));

    for q in [QuantType::Q8_0, QuantType::Q4_0] {
        let format = WeightFormat::Quantized(q);
        let got = image_features(&load(&narrow, format));
        let want = image_features(&load(&padded, format));
        assert!(
            got == want,
            "{q}: the padded {NARROW}-unit MLP differs from stored zero units"
        );
        // Without the padding fc2 would have stayed bf16, which gives other features.
        let unquantized = image_features(&load(&narrow, WeightFormat::Stored));
        assert!(got != unquantized, "{q}: the tower was not quantized");
    }
}

#[test]
fn a_quantized_file_pads_its_float_fc2_like_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = dir.path().join("narrow");
    write_variant(&narrow, NARROW);
    let format = WeightFormat::Quantized(QuantType::Q8_0);
    let file = dir.path().join("narrow-q8_0.gguf");
    keye::write_gguf(
        narrow.to_str().unwrap(),
        &HubOptions::default(),
        vision_formats(format),
        &file,
        &mut |_, _| {},
    )
    .unwrap();
    let from_file =
        KeyeModel::from_gguf(&GgufFile::open(&file).unwrap(), WeightFormats::default()).unwrap();
    assert!(
        image_features(&from_file) == image_features(&load(&narrow, format)),
        "the q8_0 file's tower differs from the folder quantized at load"
    );
}
