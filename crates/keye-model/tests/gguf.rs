//! GGUF reading and writing on small files built byte by byte here, independently of the
//! writer: valid files read back the hand-computed values, and every kind of damage is a clear
//! error (never a panic or a huge allocation).

use std::path::{Path, PathBuf};

use keye_model::gguf::{GgufFile, GgufTensorHeader, GgufWriter, MetadataValue};
use keye_model::{Checkpoint, Error, KeyeModel, QuantType, StoredDtype, WeightFormats};

/// A GGUF v3 file assembled field by field, as the format specification lays it out.
#[derive(Default)]
struct RawGguf {
    metadata: Vec<u8>,
    metadata_count: u64,
    infos: Vec<u8>,
    tensor_count: u64,
    data: Vec<u8>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl RawGguf {
    fn string(mut self, key: &str, value: &str) -> Self {
        put_str(&mut self.metadata, key);
        self.metadata.extend_from_slice(&8u32.to_le_bytes());
        put_str(&mut self.metadata, value);
        self.metadata_count += 1;
        self
    }

    fn u32(mut self, key: &str, value: u32) -> Self {
        put_str(&mut self.metadata, key);
        self.metadata.extend_from_slice(&4u32.to_le_bytes());
        self.metadata.extend_from_slice(&value.to_le_bytes());
        self.metadata_count += 1;
        self
    }

    fn raw_metadata(mut self, bytes: &[u8]) -> Self {
        self.metadata.extend_from_slice(bytes);
        self.metadata_count += 1;
        self
    }

    /// `ne` innermost first, as GGUF stores it.
    fn tensor(mut self, name: &str, ne: &[u64], ggml_type: u32, data: &[u8]) -> Self {
        self.data.resize(self.data.len().next_multiple_of(32), 0);
        put_str(&mut self.infos, name);
        self.infos
            .extend_from_slice(&(ne.len() as u32).to_le_bytes());
        for d in ne {
            self.infos.extend_from_slice(&d.to_le_bytes());
        }
        self.infos.extend_from_slice(&ggml_type.to_le_bytes());
        self.infos
            .extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        self.data.extend_from_slice(data);
        self.tensor_count += 1;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&self.tensor_count.to_le_bytes());
        out.extend_from_slice(&self.metadata_count.to_le_bytes());
        out.extend_from_slice(&self.metadata);
        out.extend_from_slice(&self.infos);
        out.resize(out.len().next_multiple_of(32), 0);
        out.extend_from_slice(&self.data);
        out.resize(out.len().next_multiple_of(32), 0);
        out
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One Q8_0 block: f16 scale 0.5 (0x3800), then the 32 signed bytes −16..15.
fn q8_0_block() -> (Vec<u8>, Vec<f32>) {
    let mut block = vec![0x00, 0x38];
    let quants: Vec<i8> = (-16..16).collect();
    block.extend(quants.iter().map(|&q| q as u8));
    (block, quants.iter().map(|&q| q as f32 * 0.5).collect())
}

fn sample() -> RawGguf {
    let (block, _) = q8_0_block();
    RawGguf::default()
        .u32("general.alignment", 32)
        .string("general.architecture", "keye")
        .string("general.name", "sample")
        .tensor("w", &[3, 2], 0, &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
        // bf16 1.5 = 0x3FC0, -2.0 = 0xC000.
        .tensor("b", &[2], 30, &[0xC0, 0x3F, 0x00, 0xC0])
        .tensor("q", &[32, 1], 8, &block)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn open_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    match GgufFile::open_keye(&write(dir.path(), "bad.gguf", bytes)) {
        Ok(_) => panic!("a damaged file opened"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_hand_made_file_reads_back_its_metadata_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open_keye(&write(dir.path(), "a.gguf", &sample().bytes())).unwrap();
    assert_eq!(file.string("general.name").unwrap(), "sample");
    assert_eq!(file.metadata()["general.alignment"], MetadataValue::U32(32));
    let ckpt = Checkpoint::from_gguf(&file);
    let w = ckpt.get("w", &[2, 3]).unwrap();
    assert_eq!(w.dtype, StoredDtype::F32);
    assert_eq!(w.to_f32_vec().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = ckpt.get("b", &[2]).unwrap();
    assert_eq!(b.dtype, StoredDtype::Bf16);
    assert_eq!(b.to_f32_vec().unwrap(), [1.5, -2.0]);
    let q = ckpt.get("q", &[1, 32]).unwrap();
    assert_eq!(q.dtype, StoredDtype::Quantized(QuantType::Q8_0));
    assert_eq!(q.to_f32_vec().unwrap(), q8_0_block().1);
}

#[test]
fn the_writer_lays_out_the_file_as_the_specification_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gguf");
    let (block, _) = q8_0_block();
    let headers = [
        GgufTensorHeader {
            name: "w".into(),
            shape: vec![2, 3],
            dtype: StoredDtype::F32,
        },
        GgufTensorHeader {
            name: "b".into(),
            shape: vec![2],
            dtype: StoredDtype::Bf16,
        },
        GgufTensorHeader {
            name: "q".into(),
            shape: vec![1, 32],
            dtype: StoredDtype::Quantized(QuantType::Q8_0),
        },
    ];
    let mut writer = GgufWriter::create(
        &path,
        &[
            ("general.architecture", MetadataValue::String("keye".into())),
            ("general.name", MetadataValue::String("sample".into())),
        ],
        &headers,
    )
    .unwrap();
    writer
        .write_tensor(&f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
        .unwrap();
    writer.write_tensor(&[0xC0, 0x3F, 0x00, 0xC0]).unwrap();
    assert!(!path.exists(), "the file appears only when complete");
    writer.write_tensor(&block).unwrap();
    writer.finish().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), sample().bytes());
}

#[test]
fn the_writer_refuses_data_that_does_not_match_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gguf");
    let headers = [GgufTensorHeader {
        name: "w".into(),
        shape: vec![2],
        dtype: StoredDtype::F32,
    }];
    let mut writer = GgufWriter::create(&path, &[], &headers).unwrap();
    let error = writer.write_tensor(&[0; 4]).unwrap_err().to_string();
    assert!(
        error.contains("tensor w: 4 bytes of data, the header says 8"),
        "{error}"
    );
    let error = writer.finish().unwrap_err().to_string();
    assert!(error.contains("0 of 1 tensors written"), "{error}");
    assert!(!path.exists());
    let headers = [GgufTensorHeader {
        name: "q".into(),
        shape: vec![2, 48],
        dtype: StoredDtype::Quantized(QuantType::Q4K),
    }];
    let error = GgufWriter::create(&path, &[], &headers)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("cannot be stored as q4_k"), "{error}");
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().bytes();
    let dir = tempfile::tempdir().unwrap();
    for len in 0..bytes.len() - 32 {
        let path = write(dir.path(), "cut.gguf", &bytes[..len]);
        let error = match GgufFile::open(&path) {
            Ok(_) => panic!("a file cut at {len} bytes opened"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("truncated")
                || error.contains("no GGUF magic")
                || error.contains("more than"),
            "cut at {len}: {error}"
        );
    }
}

#[test]
fn tensor_data_past_the_end_is_reported() {
    let mut bytes = sample().bytes();
    bytes.truncate(bytes.len() - 64);
    let error = open_error(&bytes);
    assert!(
        error.contains("truncated: the data of tensor q (34 bytes"),
        "{error}"
    );
}

#[test]
fn an_unsupported_tensor_type_is_named() {
    let bytes = RawGguf::default()
        .string("general.architecture", "keye")
        .tensor(
            "model.layers.0.mlp.up_proj.weight",
            &[256, 1],
            14,
            &[0; 210],
        )
        .bytes();
    let error = open_error(&bytes);
    assert!(
        error.contains(
            "tensor model.layers.0.mlp.up_proj.weight has GGML type 14 (Q6_K), which keye does not support"
        ),
        "{error}"
    );
}

#[test]
fn a_file_for_another_architecture_is_refused() {
    let bytes = RawGguf::default()
        .string("general.architecture", "llama")
        .bytes();
    let error = open_error(&bytes);
    assert!(error.contains("made for llama, not keye"), "{error}");
}

#[test]
fn missing_metadata_is_named() {
    let error = open_error(&RawGguf::default().u32("general.alignment", 32).bytes());
    assert!(
        error.contains("lacks the metadata `general.architecture`"),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open_keye(&write(dir.path(), "a.gguf", &sample().bytes())).unwrap();
    let error = KeyeModel::from_gguf(&file, WeightFormats::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("lacks the metadata `keye.config_json`"),
        "{error}"
    );
}

#[test]
fn a_shape_that_differs_from_the_model_names_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open_keye(&write(dir.path(), "a.gguf", &sample().bytes())).unwrap();
    let error = Checkpoint::from_gguf(&file)
        .get("w", &[3, 2])
        .err()
        .unwrap();
    assert!(
        matches!(&error, Error::ShapeMismatch { name, expected, found }
            if name == "w" && expected == &[3, 2] && found == &[2, 3]),
        "{error}"
    );
}

#[test]
fn corrupt_counts_and_fields_are_errors_not_allocations() {
    let header = |tensors: u64, metadata: u64| {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&tensors.to_le_bytes());
        out.extend_from_slice(&metadata.to_le_bytes());
        out
    };
    let error = open_error(&header(u64::MAX, 0));
    assert!(
        error.contains("tensor count is 18446744073709551615"),
        "{error}"
    );
    let error = open_error(&header(0, 1 << 40));
    assert!(error.contains("metadata count"), "{error}");

    // A string array claiming 2^62 items.
    let mut array = Vec::new();
    put_str(&mut array, "tokenizer.ggml.tokens");
    array.extend_from_slice(&9u32.to_le_bytes());
    array.extend_from_slice(&8u32.to_le_bytes());
    array.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let error = open_error(&RawGguf::default().raw_metadata(&array).bytes());
    assert!(
        error.contains("length of metadata array `tokenizer.ggml.tokens`"),
        "{error}"
    );

    // A key of 2^63 bytes.
    let mut key = (1u64 << 63).to_le_bytes().to_vec();
    key.extend_from_slice(b"abc");
    let error = open_error(&RawGguf::default().raw_metadata(&key).bytes());
    assert!(error.contains("length of metadata key"), "{error}");

    let mut bad_type = Vec::new();
    put_str(&mut bad_type, "x");
    bad_type.extend_from_slice(&99u32.to_le_bytes());
    let error = open_error(&RawGguf::default().raw_metadata(&bad_type).bytes());
    assert!(
        error.contains("metadata `x` has unknown value type 99"),
        "{error}"
    );

    let keye = || RawGguf::default().string("general.architecture", "keye");
    let error = open_error(&keye().tensor("t", &[1, 1, 1, 1, 1], 0, &[0; 4]).bytes());
    assert!(error.contains("tensor t has 5 dimensions"), "{error}");
    let error = open_error(&keye().tensor("t", &[4, 0], 0, &[]).bytes());
    assert!(error.contains("tensor t has a dimension of 0"), "{error}");
    let error = open_error(&keye().tensor("t", &[u64::MAX, 2], 0, &[]).bytes());
    assert!(error.contains("too large"), "{error}");
    let error = open_error(&keye().tensor("t", &[48, 1], 12, &[0; 144]).bytes());
    assert!(error.contains("not a whole number of blocks"), "{error}");
    let error = open_error(
        &keye()
            .tensor("t", &[1], 0, &[0; 4])
            .tensor("t", &[1], 0, &[0; 4])
            .bytes(),
    );
    assert!(error.contains("tensor t appears twice"), "{error}");
    let error = open_error(&keye().u32("general.alignment", 24).bytes());
    assert!(error.contains("not a power of two"), "{error}");

    let mut wrong_magic = sample().bytes();
    wrong_magic[0] = b'X';
    assert!(open_error(&wrong_magic).contains("not a GGUF file"));
    let mut version = sample().bytes();
    version[4] = 7;
    assert!(open_error(&version).contains("GGUF version 7"));
}
