//! Our `Q4_K` quantizer against bytes written by llama.cpp's own `quantize_row_q4_K_ref` (see
//! `tests/data/README.md`): the whole scale search must agree bit for bit.

use std::path::Path;

use keye_kernels::{QuantType, quantize};

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn q4_k_quantizer_writes_ggml_reference_bytes() {
    let values: Vec<f32> = data("q4_k_input.f32")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected = data("q4_k_ggml_reference.bin");
    let mut ours = vec![0u8; QuantType::Q4K.bytes_for(values.len()).unwrap()];
    quantize(QuantType::Q4K, &values, &mut ours).unwrap();
    assert_eq!(ours.len(), expected.len());
    for (b, (ours, theirs)) in ours.chunks(144).zip(expected.chunks(144)).enumerate() {
        assert_eq!(ours, theirs, "super-block {b} differs from ggml's");
    }
}
