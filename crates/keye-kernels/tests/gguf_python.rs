//! Our GGML block codec against llama.cpp's own Python one (the `gguf` package): blocks we
//! write must decode to the same bits there, and gguf-py's quantizers (Q8_0, Q4_0) must write
//! our bytes. Skipped, loudly, when `python3` cannot import `gguf` and `numpy`.

use std::path::{Path, PathBuf};
use std::process::Command;

use keye_kernels::{QuantType, dequantize, quantize};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_quants.py")
}

fn python_has_gguf() -> bool {
    Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Weight-like rows: small values, a few outliers, an all-zero block, mixed signs.
fn rows(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values: Vec<f32> = (0..len)
        .map(|i| {
            let v: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum();
            if i % 89 == 0 { v * 3.0 } else { v * 0.02 }
        })
        .collect();
    values[256..512].fill(0.0);
    values
}

fn run(mode: &str, ty: QuantType, input: &[u8], dir: &Path) -> Vec<u8> {
    let source = dir.join(format!("{mode}-{ty}.in"));
    let target = dir.join(format!("{mode}-{ty}.out"));
    std::fs::write(&source, input).unwrap();
    let output = Command::new("python3")
        .arg(script())
        .args([mode, ty.name()])
        .arg(&source)
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "gguf_quants.py {mode} {ty} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&target).unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn gguf_python_decodes_our_blocks_and_quantizes_to_our_bytes() {
    if !python_has_gguf() {
        eprintln!(
            "\n*** SKIPPED gguf-py cross-check: python3 cannot `import gguf, numpy` \
             (pip install gguf numpy) ***\n"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("keye-kernels-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let values = rows(5, 64 * 256);
    for ty in QuantType::ALL {
        let mut blocks = vec![0u8; ty.bytes_for(values.len()).unwrap()];
        quantize(ty, &values, &mut blocks).unwrap();

        let theirs = run("dequantize", ty, &blocks, &dir);
        let mut ours = vec![0.0f32; values.len()];
        dequantize(ty, &blocks, &mut ours).unwrap();
        assert_eq!(
            theirs,
            f32_bytes(&ours),
            "{ty}: gguf-py decodes our blocks differently"
        );

        if ty != QuantType::Q4K {
            let theirs = run("quantize", ty, &f32_bytes(&values), &dir);
            assert_eq!(theirs, blocks, "{ty}: gguf-py quantizes to different bytes");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
