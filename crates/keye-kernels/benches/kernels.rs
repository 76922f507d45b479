//! `cargo bench -p keye-kernels`: throughput of the kernels on Keye-VL-8B shapes, next to the
//! machine limits measured in the same run (memory read bandwidth).
//!
//! `KEYE_SIMD=avx2` (or `scalar`) measures a lower instruction-set level; a trailing argument
//! (`cargo bench -p keye-kernels -- attention`) runs only the sections whose name contains it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use half::bf16;
use keye_kernels::{
    CompactRows, Q8Rows, QuantType, SimdLevel, Weights, attention_causal, attention_causal_compact,
    attention_segments, attention_segments_bf16_products, linear, linear_bf16_products, quantize,
    quantize_kv_rows,
};
use rayon::prelude::*;

/// Distinct weight matrices cycled through, so the GEMV reads DRAM rather than a large L3.
const GEMV_MATRICES: usize = 8;

fn main() {
    println!(
        "keye-kernels bench: level {}, {} rayon threads",
        SimdLevel::detected(),
        rayon::current_num_threads()
    );
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    let wanted = |section: &str| section.contains(filter.as_str());
    let bandwidth = read_bandwidth();
    let peak = fma_peak();
    let bf16_peak = bf16_dot_peak();
    if wanted("linear gemv") {
        gemv(bandwidth);
    }
    if wanted("linear gemm") {
        gemm(peak, bf16_peak);
    }
    if wanted("quantized gemv") {
        quantized_gemv(bandwidth);
    }
    if wanted("quantized gemm") {
        quantized_gemm(peak);
    }
    if wanted("attention vision") {
        vision_attention(peak, bf16_peak);
    }
    if wanted("attention decode") {
        decode_attention(bandwidth);
    }
    if wanted("attention prefill") {
        prefill_attention(peak);
    }
}

/// Fastest of `runs` timings of `f`.
fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn filled(len: usize, seed: u32) -> Vec<f32> {
    // A cheap deterministic pattern in [-1, 1); values do not matter for timing.
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1 << 23) as f32
                - 1.0
        })
        .collect()
}

/// Multi-threaded read of a buffer far larger than any cache: the roofline for streaming kernels.
/// Each task reads its chunk as one stream and, in other passes, as four side by side (as the
/// GEMVs read four weight rows at once, 5–15 % faster on 2 Zen 5 cores); the higher counts,
/// as in `keye bench`.
fn read_bandwidth() -> f64 {
    let buffer = filled((1usize << 30) / 4, 0);
    let chunk = buffer.len() / (rayon::current_num_threads() * 8);
    let measure = |four_streams: bool| {
        let read = || {
            buffer
                .par_chunks(chunk)
                .map(|c| probes::sum(c, four_streams))
                .sum::<f32>()
        };
        black_box(read());
        let time = best_of(5, || {
            black_box(read());
        });
        (buffer.len() * 4) as f64 / time.as_secs_f64() / 1e9
    };
    let (one, four) = (measure(false), measure(true));
    let gbps = one.max(four);
    println!(
        "read bandwidth (1 GiB, all threads)       {gbps:7.1} GB/s (one stream per task {one:.1}, four {four:.1})"
    );
    gbps
}

/// `gflops` as a share of the peak of the instruction it runs on: `vdpbf16ps` for bf16
/// products where the CPU has it, the f32 FMA otherwise.
fn of_peak(gflops: f64, bf16_products: bool, fma: f64, bf16: Option<f64>) -> String {
    match bf16.filter(|_| bf16_products) {
        Some(bf16) => format!("{:5.1} % of BF16 dot peak", 100.0 * gflops / bf16),
        None => format!("{:5.1} % of FMA peak", 100.0 * gflops / fma),
    }
}

/// Register-resident `vdpbf16ps` throughput on all threads, where the CPU has AVX-512 BF16:
/// the roofline of the bf16 products (twice the FMA's on CPUs that run it at the FMA's rate).
fn bf16_dot_peak() -> Option<f64> {
    peak(
        "BF16 dot-product peak (all threads)",
        probes::bf16_dot_flops,
    )
}

/// Register-resident FP32 FMA throughput on all threads: the compute roofline.
fn fma_peak() -> f64 {
    peak("FP32 FMA peak (all threads)", |iterations| {
        Some(probes::fma_flops(iterations))
    })
    .unwrap_or_default()
}

/// GFLOP/s of `probe` (the FLOPs of a run, `None` without the instruction) on every thread at
/// once, printed under `label`.
fn peak(label: &str, probe: fn(usize) -> Option<f64>) -> Option<f64> {
    const ITERATIONS: usize = 50_000_000;
    let threads = rayon::current_num_threads();
    let run = || {
        (0..threads)
            .into_par_iter()
            .map(|_| probe(ITERATIONS))
            .sum::<Option<f64>>()
    };
    let mut flops = run()?;
    let time = best_of(3, || flops = black_box(run()).unwrap_or(flops)).as_secs_f64();
    let gflops = flops / time / 1e9;
    println!("{label:<42}{gflops:7.1} GFLOP/s");
    Some(gflops)
}

/// Machine-limit probes, written directly against the widest instructions available.
mod probes {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// Sum of a slice with independent vector accumulators (memory-bound).
    /// Sums `data` read as one stream, or as its four quarters side by side (`four_streams`).
    pub fn sum(data: &[f32], four_streams: bool) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected.
            return unsafe { sum_avx512(data, four_streams) };
        }
        data.iter().sum()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn sum_avx512(data: &[f32], four_streams: bool) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        // Both cover the first `vectors · 64` floats. One stream: accumulator `i` takes the
        // `i`-th 16 of every 64. Four: accumulator `i` takes quarter `i`, 16 floats at a time.
        let vectors = data.len() / 64;
        let (step, stride) = if four_streams {
            (16, vectors * 16)
        } else {
            (64, 16)
        };
        for v in 0..vectors {
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `v·step + i·stride + 16 <= vectors · 64 <= data.len()`.
                *acc = _mm512_add_ps(*acc, unsafe {
                    _mm512_loadu_ps(data.as_ptr().add(v * step + i * stride))
                });
            }
        }
        let tail: f32 = data[vectors * 64..].iter().sum();
        let total = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(total) + tail
    }

    /// Runs `iterations` rounds of 12 independent FMA chains; returns the FLOPs done.
    pub fn fma_flops(iterations: usize) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected.
            unsafe { std::hint::black_box(fma_avx512(iterations)) };
            return (iterations / 1000 * 1000 * 12 * 16 * 2) as f64;
        }
        let mut acc = [1.0f32; 12];
        for _ in 0..iterations {
            for a in &mut acc {
                *a = *a * 0.999 + 1e-3;
            }
        }
        std::hint::black_box(acc);
        (iterations * 12 * 2) as f64
    }

    /// Runs `iterations` rounds of 12 independent `vdpbf16ps` chains; returns the FLOPs done
    /// (64 per instruction), or `None` without AVX-512 BF16.
    pub fn bf16_dot_flops(iterations: usize) -> Option<f64> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512bf16") {
            // SAFETY: the feature was detected.
            unsafe { std::hint::black_box(bf16_dot_avx512(iterations)) };
            return Some((iterations / 1000 * 1000 * 12 * 64) as f64);
        }
        let _ = iterations;
        None
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn bf16_dot_avx512(iterations: usize) -> f32 {
        // SAFETY: 512 bits of plain data either way.
        let pairs: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi16(0x3f80)) };
        register_chains(
            iterations,
            #[inline(always)]
            |acc| _mm512_dpbf16_ps(acc, pairs, pairs),
        )
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn fma_avx512(iterations: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999), _mm512_set1_ps(1e-3));
        register_chains(
            iterations,
            #[inline(always)]
            |acc| _mm512_fmadd_ps(acc, a, b),
        )
    }

    /// `iterations` rounds of `step` on 12 independent register-resident chains.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn register_chains(iterations: usize, step: impl Fn(__m512) -> __m512) -> f32 {
        let mut acc = [1.0f32; 12].map(|v| {
            // SAFETY: only inlined into functions compiled with AVX-512 F.
            unsafe { _mm512_set1_ps(v) }
        });
        // Opaque every 1000 rounds, so the chains cannot be folded away.
        for _ in 0..iterations / 1000 {
            for _ in 0..1000 {
                for acc in &mut acc {
                    *acc = step(*acc);
                }
            }
            acc = std::hint::black_box(acc);
        }
        // SAFETY: as above.
        unsafe {
            _mm512_reduce_add_ps(
                acc.into_iter()
                    .fold(_mm512_setzero_ps(), |x, y| _mm512_add_ps(x, y)),
            )
        }
    }
}

fn gemv(bandwidth: f64) {
    let (n, k) = (12288, 4096);
    let matrices: Vec<Vec<bf16>> = (0..GEMV_MATRICES)
        .map(|seed| {
            filled(n * k, seed as u32)
                .into_iter()
                .map(bf16::from_f32)
                .collect()
        })
        .collect();
    for m in [1, 2, 4, 8, 16] {
        let x = filled(m * k, 99);
        let mut out = vec![0.0; m * n];
        for rounded in [false, true] {
            let mut sweep = || {
                for w in &matrices {
                    if rounded {
                        linear_bf16_products(&x, m, k, Weights::Bf16(w), n, None, &mut out)
                            .unwrap();
                    } else {
                        linear(&x, m, k, Weights::Bf16(w), n, None, &mut out).unwrap();
                    }
                }
            };
            sweep();
            let time = best_of(3, sweep).as_secs_f64() / GEMV_MATRICES as f64;
            let gbps = (n * k * 2) as f64 / time / 1e9;
            let gflops = (2 * m * n * k) as f64 / time / 1e9;
            let name = if rounded { "bf16 products" } else { "bf16" };
            println!(
                "{name:<13} linear m={m:<3} {n}x{k}  {gbps:7.1} GB/s ({:5.1} % of read bw), {gflops:6.1} GFLOP/s, {:6.2} ms",
                100.0 * gbps / bandwidth,
                time * 1e3
            );
        }
    }
}

/// Quantizes one `[n, k]` matrix (slow for `Q4_K`) and copies it `GEMV_MATRICES` times.
fn quantized_matrices(ty: QuantType, n: usize, k: usize) -> Vec<Vec<u8>> {
    let mut bytes = vec![0; ty.bytes_for(n * k).unwrap()];
    quantize(ty, &filled(n * k, 3), &mut bytes).unwrap();
    vec![bytes; GEMV_MATRICES]
}

fn quantized_gemv(bandwidth: f64) {
    let (n, k) = (12288, 4096);
    for ty in QuantType::ALL {
        let matrices = quantized_matrices(ty, n, k);
        let bytes = matrices[0].len();
        for m in [1, 2, 4, 8, 16] {
            let x = filled(m * k, 99);
            let mut out = vec![0.0; m * n];
            let mut sweep = || {
                for w in &matrices {
                    linear(&x, m, k, Weights::Quantized(ty, w), n, None, &mut out).unwrap();
                }
            };
            sweep();
            let time = best_of(5, sweep).as_secs_f64() / GEMV_MATRICES as f64;
            let gbps = bytes as f64 / time / 1e9;
            let gflops = (2 * m * n * k) as f64 / time / 1e9;
            println!(
                "{ty} linear m={m:<3} {n}x{k}               {gbps:7.1} GB/s ({:5.1} % of read bw), {gflops:6.1} GFLOP/s, {:6.2} ms",
                100.0 * gbps / bandwidth,
                time * 1e3
            );
        }
        // The kernel's own rate, weights read from cache: whether a decode step can reach the
        // memory roofline at all on this many cores.
        let rows = (4 << 20) / (bytes / n);
        let cached = &matrices[0][..bytes / n * rows];
        let x = filled(k, 99);
        let mut out = vec![0.0; rows];
        let mut repeat = || {
            for _ in 0..64 {
                linear(
                    &x,
                    1,
                    k,
                    Weights::Quantized(ty, cached),
                    rows,
                    None,
                    &mut out,
                )
                .unwrap();
            }
        };
        repeat();
        let time = best_of(5, repeat).as_secs_f64() / 64.0;
        let gbps = cached.len() as f64 / time / 1e9;
        println!(
            "{ty} linear m=1   {rows}x{k} from cache           {gbps:7.1} GB/s ({:5.1} % of read bw)",
            100.0 * gbps / bandwidth,
        );
    }
}

fn quantized_gemm(peak: f64) {
    // The vision tower's products on a 1280-token image, the MLP padded to 4320.
    for (m, k, n) in [(5120, 1152, 1152), (5120, 1152, 4320), (5120, 4320, 1152)] {
        let ty = QuantType::Q8_0;
        let x = filled(m * k, 1);
        let mut w = vec![0; ty.bytes_for(n * k).unwrap()];
        quantize(ty, &filled(n * k, 2), &mut w).unwrap();
        let w = Weights::Quantized(ty, &w);
        let mut out = vec![0.0; m * n];
        linear(&x, m, k, w, n, None, &mut out).unwrap();
        let time = best_of(3, || linear(&x, m, k, w, n, None, &mut out).unwrap());
        let gflops = (2 * m * n * k) as f64 / time.as_secs_f64() / 1e9;
        println!(
            "{ty} linear m={m} k={k} n={n}         {gflops:7.1} GFLOP/s ({:5.1} % of FMA peak), {:6.1} ms",
            100.0 * gflops / peak,
            time.as_secs_f64() * 1e3
        );
    }
    let (m, k, n) = (512, 4096, 12288);
    let x = filled(m * k, 1);
    let mut out = vec![0.0; m * n];
    let flops = (2 * m * n * k) as f64;
    for ty in QuantType::ALL {
        let mut w = vec![0; ty.bytes_for(n * k).unwrap()];
        quantize(ty, &filled(n * k, 2), &mut w).unwrap();
        let w = Weights::Quantized(ty, &w);
        for rounded in [false, true] {
            let mut run = || {
                if rounded {
                    linear_bf16_products(&x, m, k, w, n, None, &mut out).unwrap();
                } else {
                    linear(&x, m, k, w, n, None, &mut out).unwrap();
                }
            };
            run();
            let time = best_of(3, run);
            let gflops = flops / time.as_secs_f64() / 1e9;
            let name = format!("{ty}{}", if rounded { " bf16 products" } else { "" });
            println!(
                "{name:<18} linear m={m} k={k} n={n}  {gflops:7.1} GFLOP/s ({:5.1} % of FMA peak), {:6.1} ms",
                100.0 * gflops / peak,
                time.as_secs_f64() * 1e3
            );
        }
    }
}

fn gemm(peak: f64, bf16_peak: Option<f64>) {
    let (k, n) = (4096, 12288);
    let w_f32 = filled(n * k, 2);
    let w_bf16: Vec<bf16> = w_f32.iter().map(|&v| bf16::from_f32(v)).collect();
    let report = |name: &str, m: usize, time: Duration| {
        let gflops = (2 * m * n * k) as f64 / time.as_secs_f64() / 1e9;
        println!(
            "{name:<12} linear m={m:<3} k={k} n={n}  {gflops:7.1} GFLOP/s ({}), {:6.1} ms",
            of_peak(gflops, name.contains("products"), peak, bf16_peak),
            time.as_secs_f64() * 1e3
        );
    };
    // The vision tower's products on a 1280-token image: 5,120 patches, width 1152, MLP 4304.
    for (m, k, n) in [(5120, 1152, 1152), (5120, 1152, 4304), (5120, 4304, 1152)] {
        let x = filled(m * k, 1);
        let w: Vec<bf16> = filled(n * k, 2).into_iter().map(bf16::from_f32).collect();
        let mut out = vec![0.0; m * n];
        let w = Weights::Bf16(&w);
        linear_bf16_products(&x, m, k, w, n, None, &mut out).unwrap();
        let time = best_of(3, || {
            linear_bf16_products(&x, m, k, w, n, None, &mut out).unwrap()
        });
        let gflops = (2 * m * n * k) as f64 / time.as_secs_f64() / 1e9;
        println!(
            "bf16 products linear m={m} k={k} n={n} {gflops:7.1} GFLOP/s ({}), {:6.1} ms",
            of_peak(gflops, true, peak, bf16_peak),
            time.as_secs_f64() * 1e3
        );
    }
    for m in [32, 128, 512] {
        let x = filled(m * k, 1);
        let mut out = vec![0.0; m * n];
        let mut run = |f: &mut dyn FnMut(&mut [f32])| {
            f(&mut out);
            best_of(3, || f(&mut out))
        };
        let exact = |out: &mut [f32]| linear(&x, m, k, Weights::Bf16(&w_bf16), n, None, out);
        let rounded =
            |out: &mut [f32]| linear_bf16_products(&x, m, k, Weights::Bf16(&w_bf16), n, None, out);
        report("bf16", m, run(&mut |out| exact(out).unwrap()));
        report("bf16 products", m, run(&mut |out| rounded(out).unwrap()));
        if m == 512 {
            let f32_weights =
                |out: &mut [f32]| linear(&x, m, k, Weights::F32(&w_f32), n, None, out);
            report("f32", m, run(&mut |out| f32_weights(out).unwrap()));
        }
    }
}

fn vision_attention(peak: f64, bf16_peak: Option<f64>) {
    let (tokens, heads, head_dim) = (5120, 16, 72);
    let len = tokens * heads * head_dim;
    let (q, k, v) = (filled(len, 1), filled(len, 2), filled(len, 3));
    let mut out = vec![0.0; len];
    let scale = 1.0 / (head_dim as f32).sqrt();
    for rounded in [false, true] {
        let segments = [0, tokens];
        let run = |out: &mut [f32]| {
            if rounded {
                attention_segments_bf16_products(&q, &k, &v, heads, head_dim, &segments, scale, out)
            } else {
                attention_segments(&q, &k, &v, heads, head_dim, &segments, scale, out)
            }
            .unwrap()
        };
        run(&mut out);
        let time = best_of(2, || run(&mut out)).as_secs_f64();
        let gflops = (4 * tokens * tokens * head_dim * heads) as f64 / time / 1e9;
        let name = if rounded { "bf16 products" } else { "f32" };
        println!(
            "vision attention {name:<13} {tokens} tok x {heads} h x {head_dim}  {gflops:7.1} GFLOP/s ({}), {:6.1} ms",
            of_peak(gflops, rounded, peak, bf16_peak),
            time * 1e3
        );
    }
}

/// A KV cache in one of the formats `--kv-cache` offers.
enum Cache {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    Q8 { levels: Vec<i8>, scales: Vec<f32> },
}

impl Cache {
    const FORMATS: [&str; 3] = ["f32", "bf16", "q8"];

    fn new(format: &str, values: &[f32], head_dim: usize) -> Self {
        match format {
            "f32" => Self::F32(values.to_vec()),
            "bf16" => Self::Bf16(values.iter().map(|&v| bf16::from_f32(v)).collect()),
            "q8" => {
                let mut levels = vec![0i8; values.len()];
                let mut scales = vec![0.0; values.len() / head_dim];
                quantize_kv_rows(values, head_dim, &mut levels, &mut scales).unwrap();
                Self::Q8 { levels, scales }
            }
            other => panic!("unknown KV cache format {other}"),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::F32(values) => 4 * values.len(),
            Self::Bf16(values) => 2 * values.len(),
            Self::Q8 { levels, scales } => levels.len() + 4 * scales.len(),
        }
    }

    fn compact(&self) -> Option<CompactRows<'_>> {
        match self {
            Self::F32(_) => None,
            Self::Bf16(values) => Some(CompactRows::Bf16(values)),
            Self::Q8 { levels, scales } => Some(CompactRows::Q8(Q8Rows { levels, scales })),
        }
    }
}

/// Causal attention of `n_new` query rows after `past` cached ones, on the kernel for the
/// caches' format (`capacity` = `past + n_new`).
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    n_new: usize,
    q_heads: usize,
    (keys, values): (&Cache, &Cache),
    kv_heads: usize,
    past: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    let scale = 1.0 / (head_dim as f32).sqrt();
    let capacity = past + n_new;
    match (keys, values, keys.compact(), values.compact()) {
        (Cache::F32(keys), Cache::F32(values), ..) => attention_causal(
            q, n_new, q_heads, keys, values, kv_heads, capacity, past, head_dim, scale, out,
        ),
        (.., Some(keys), Some(values)) => attention_causal_compact(
            q, n_new, q_heads, keys, values, kv_heads, capacity, past, head_dim, scale, out,
        ),
        _ => panic!("keys and values in different formats"),
    }
    .unwrap()
}

fn decode_attention(bandwidth: f64) {
    let (q_heads, kv_heads, head_dim) = (32, 8, 128);
    for format in Cache::FORMATS {
        for context in [1024, 32768] {
            let cache_len = kv_heads * context * head_dim;
            let keys = Cache::new(format, &filled(cache_len, 4), head_dim);
            let values = Cache::new(format, &filled(cache_len, 5), head_dim);
            let q = filled(q_heads * head_dim, 6);
            let mut out = vec![0.0; q.len()];
            let mut run = || {
                attend(
                    &q,
                    1,
                    q_heads,
                    (&keys, &values),
                    kv_heads,
                    context - 1,
                    head_dim,
                    &mut out,
                )
            };
            run();
            let time = best_of(20, &mut run).as_secs_f64();
            let gbps = (keys.bytes() + values.bytes()) as f64 / time / 1e9;
            println!(
                "decode attention {format:<4} cache ctx {context:<5} 32q/8kv x 128 {gbps:7.1} GB/s ({:5.1} % of read bw), {:8.3} ms",
                100.0 * gbps / bandwidth,
                time * 1e3
            );
        }
    }
}

fn prefill_attention(peak: f64) {
    let (n_new, q_heads, kv_heads, head_dim) = (2048, 32, 8, 128);
    let cache_len = kv_heads * n_new * head_dim;
    let (k_values, v_values) = (filled(cache_len, 7), filled(cache_len, 8));
    let q = filled(n_new * q_heads * head_dim, 9);
    let mut out = vec![0.0; q.len()];
    // Causal: half of the full score matrix.
    let flops = (2 * n_new * n_new * head_dim * q_heads) as f64;
    let mut f32_time = None;
    for format in Cache::FORMATS {
        let keys = Cache::new(format, &k_values, head_dim);
        let values = Cache::new(format, &v_values, head_dim);
        let mut run = || {
            attend(
                &q,
                n_new,
                q_heads,
                (&keys, &values),
                kv_heads,
                0,
                head_dim,
                &mut out,
            )
        };
        run();
        let time = best_of(2, &mut run).as_secs_f64();
        let f32_time = *f32_time.get_or_insert(time);
        let gflops = flops / time / 1e9;
        println!(
            "causal prefill attention {n_new} tok {format:<4} cache {gflops:7.1} GFLOP/s ({:5.1} % of FMA peak), {:6.1} ms, {:.2}x the f32 cache's time",
            100.0 * gflops / peak,
            time * 1e3,
            time / f32_time
        );
    }
}
