//! `keye bench`: full-size performance figures on a random-weight checkpoint built from a real
//! `config.json` (written once into a cache folder, never committed).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use keye_media::GridThw;
use keye_model::{KeyeConfig, KeyeModel, KvCacheFormat, MAX_EXACT_VERIFY_ROWS, SequenceChunk};
use rayon::prelude::*;

use crate::args::QuantArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// `config.json` of the model to imitate (default: the bundled real Keye-VL-8B-Preview config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder for the generated random-weight checkpoint (created once, ~17 GB for the 8B model).
    #[arg(long, env = "KEYE_BENCH_DIR")]
    pub dir: Option<PathBuf>,
    /// Prompt length of the prefill measurement.
    #[arg(long, default_value_t = 512)]
    pub prefill_tokens: usize,
    /// Context length at which decoding is measured.
    #[arg(long, default_value_t = 1024)]
    pub decode_context: usize,
    /// Tokens decoded for the decode measurement.
    #[arg(long, default_value_t = 16)]
    pub decode_tokens: usize,
    /// Skip the vision measurements.
    #[arg(long)]
    pub skip_vision: bool,
    /// Skip the video measurements (60 s 720p clip: decoding and preprocessing with both
    /// models' rules, vision encode per slow and per fast frame). Needs `ffmpeg`.
    #[arg(long)]
    pub skip_video: bool,
    /// Context depth of the long-context prefill measurement (0 skips it). Its KV cache takes
    /// about 9.7 GB at 32k tokens for the 8B model.
    #[arg(long, default_value_t = 32768)]
    pub long_context: usize,
    /// Prompt tokens prefilled at the end of the long context.
    #[arg(long, default_value_t = 512)]
    pub long_chunk: usize,
    /// Weight formats to measure; the load time then includes quantizing.
    #[command(flatten)]
    pub quant: QuantArgs,
    /// KV cache storage for the decode and long-context measurements: f32, bf16 or q8.
    #[arg(long, default_value = "f32", value_name = "FORMAT")]
    pub kv_cache: KvCacheFormat,
}

const BUNDLED_PREVIEW_CONFIG: &str =
    include_str!("../../../tests/fixtures/keye-vl-8b-preview/config.json");

pub fn run(args: &BenchArgs) -> Result<()> {
    let config_text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => BUNDLED_PREVIEW_CONFIG.to_owned(),
    };
    let dir = args.dir.clone().unwrap_or_else(default_bench_dir);
    let config: KeyeConfig = serde_json::from_str(&config_text).context("parsing config.json")?;
    if args.decode_context < args.prefill_tokens {
        bail!("--decode-context must be at least --prefill-tokens");
    }
    ensure_random_checkpoint(&dir, &config_text, &config)?;

    let probe = BandwidthProbe::new();
    let (one_stream, four_streams) = probe.best_of_three();
    println!(
        "threads: {}, KV cache: {}",
        rayon::current_num_threads(),
        args.kv_cache
    );
    println!(
        "memory read bandwidth: {:.1} GB/s (best of 3, 1 GiB buffer; one stream per thread {:.1}, four {:.1})",
        one_stream.max(four_streams) / 1e9,
        one_stream / 1e9,
        four_streams / 1e9
    );

    let start = Instant::now();
    let model = KeyeModel::load_with_formats(&dir, args.quant.formats())?;
    println!(
        "load (language weights {}, vision weights {}): {:.2} s",
        args.quant.quant,
        args.quant.quant_vision,
        start.elapsed().as_secs_f64()
    );

    if !args.skip_vision {
        for (label, grid) in [
            ("448x448 image (256 tokens)", GridThw::new(1, 32, 32)),
            ("1280-token image (896x1120)", GridThw::new(1, 64, 80)),
        ] {
            let elapsed = time_vision(&model, grid)?;
            println!(
                "vision encode, {label}: {:.2} s ({:.0} patches/s)",
                elapsed.as_secs_f64(),
                grid.patches() as f64 / elapsed.as_secs_f64()
            );
        }
    }

    if !args.skip_video {
        video_figures(&model, &dir)?;
    }

    let text = model.text();
    let vocab = model.config().vocab_size as u32;
    let mut cache = model.new_cache(
        args.decode_context + args.decode_tokens + MAX_EXACT_VERIFY_ROWS,
        args.kv_cache,
    )?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_id = move || {
        state = xorshift(state);
        (state % vocab.min(150_000) as u64) as u32
    };
    // Text positions continue from the tokens already in the cache.
    let feed = |ids: &[u32], cache: &mut keye_model::KvCache| -> Result<Duration> {
        let first = cache.len() as i64;
        let positions: Vec<[i64; 3]> = (0..ids.len() as i64).map(|i| [first + i; 3]).collect();
        let start = Instant::now();
        let embeds = text.embed(ids)?;
        model.forward(
            &embeds,
            &mut [SequenceChunk {
                positions: &positions,
                cache,
            }],
        )?;
        Ok(start.elapsed())
    };

    // One untimed token first, as llama-bench warms up too: it faults in every memory-mapped
    // weight, so the prefill figure measures the products rather than the page cache.
    feed(&[next_id()], &mut model.new_cache(1, args.kv_cache)?)?;
    let prompt: Vec<u32> = (0..args.prefill_tokens).map(|_| next_id()).collect();
    let elapsed = feed(&prompt, &mut cache)?;
    println!(
        "prefill {} tokens: {:.2} s = {:.2} tokens/s",
        args.prefill_tokens,
        elapsed.as_secs_f64(),
        args.prefill_tokens as f64 / elapsed.as_secs_f64()
    );
    // Decode reads the whole context whatever its keys hold, so the rows up to the decode depth
    // count as filled instead of costing another prefill.
    cache.assume_filled(args.decode_context)?;
    // The machine's bandwidth drifts from second to second, so the roofline is read in the
    // same seconds as the tokens: a probe pass of each kind after every token, and the mean of
    // each kind (as the tokens' mean), not a best pass, which would flatter the roofline.
    let mut decode_time = Duration::ZERO;
    let mut probe_time = [Duration::ZERO; 2];
    for _ in 0..args.decode_tokens {
        decode_time += feed(&[next_id()], &mut cache)?;
        for (streams, time) in [Streams::One, Streams::Four]
            .into_iter()
            .zip(&mut probe_time)
        {
            *time += probe.pass(streams);
        }
    }
    let tokens_per_s = args.decode_tokens as f64 / decode_time.as_secs_f64();
    let [one_stream, four_streams] =
        probe_time.map(|time| args.decode_tokens as f64 * probe.bytes() / time.as_secs_f64());
    let bandwidth = one_stream.max(four_streams);
    let bytes = text.streamed_weight_bytes() as f64;
    let roofline = bandwidth / bytes;
    println!(
        "decode at {} context: {tokens_per_s:.2} tokens/s ({:.1} ms/token)",
        args.decode_context,
        1e3 / tokens_per_s
    );
    println!(
        "bandwidth while decoding: {:.1} GB/s (mean of probe passes between the tokens; one stream per thread {:.1}, four {:.1})",
        bandwidth / 1e9,
        one_stream / 1e9,
        four_streams / 1e9
    );
    println!(
        "decode vs bandwidth roofline: {:.2} GB weights/token ÷ {:.1} GB/s = {roofline:.2} tokens/s; keye reaches {:.0} %",
        bytes / 1e9,
        bandwidth / 1e9,
        100.0 * tokens_per_s / roofline
    );
    // Prompt lookup checks a draft in one pass of 1 + draft rows; what that costs against a
    // one-token step decides how long a draft pays off on this machine.
    let step_seconds = decode_time.as_secs_f64() / args.decode_tokens as f64;
    for rows in [2, 4, 8, MAX_EXACT_VERIFY_ROWS] {
        let ids: Vec<u32> = (0..rows).map(|_| next_id()).collect();
        let cached = cache.len();
        let positions: Vec<[i64; 3]> = (0..rows).map(|i| [(cached + i) as i64; 3]).collect();
        let start = Instant::now();
        model.forward_every_row(
            &text.embed(&ids)?,
            &mut [SequenceChunk {
                positions: &positions,
                cache: &mut cache,
            }],
        )?;
        let seconds = start.elapsed().as_secs_f64();
        cache.truncate(cached);
        println!(
            "verify pass of {rows} rows (--prompt-lookup): {:.1} ms = {:.2} decode steps",
            seconds * 1e3,
            seconds / step_seconds
        );
    }
    drop(cache);
    if args.long_context > 0 {
        let depth = args.long_context.saturating_sub(args.long_chunk);
        let mut cache = model.new_cache(depth + args.long_chunk, args.kv_cache)?;
        cache.assume_filled(depth)?;
        let chunk: Vec<u32> = (0..args.long_chunk).map(|_| next_id()).collect();
        let elapsed = feed(&chunk, &mut cache)?;
        println!(
            "prefill at {} context, {} KV cache of {:.2} GiB (last {} tokens after {depth}): \
             {:.2} s = {:.2} tokens/s",
            args.long_context,
            args.kv_cache,
            (text.cache_bytes_per_token(args.kv_cache) * args.long_context) as f64
                / (1u64 << 30) as f64,
            args.long_chunk,
            elapsed.as_secs_f64(),
            args.long_chunk as f64 / elapsed.as_secs_f64()
        );
    }
    println!(
        "peak RSS: {:.2} GiB",
        peak_rss_bytes()? as f64 / (1u64 << 30) as f64
    );
    Ok(())
}

fn default_bench_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("keye/bench/keye-vl-8b-preview-random-bf16")
}

fn time_vision(model: &KeyeModel, grid: GridThw) -> Result<Duration> {
    let patch = model.config().vision_config.patch_size;
    let values = grid.patches() * 3 * patch * patch;
    let mut state = 12345u64;
    let pixels: Vec<f32> = (0..values)
        .map(|_| {
            state = xorshift(state);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let pixels = Tensor::from_vec(pixels, (grid.patches(), 3 * patch * patch), &Device::Cpu)?;
    let start = Instant::now();
    model.encode_visual(&pixels, &[grid])?;
    Ok(start.elapsed())
}

/// A 60 s 1280x720 30 fps test clip with scene cuts, made once with `ffmpeg` beside the
/// checkpoint.
fn ensure_test_clip(dir: &Path) -> Result<PathBuf> {
    let clip = dir.join("clip-60s-720p.mp4");
    if clip.is_file() {
        return Ok(clip);
    }
    let partial = dir.join("clip-60s-720p.partial.mp4");
    // Four 15 s scenes of different test patterns, so slow/fast selection sees real cuts.
    let scenes = [
        "testsrc2",
        "smptehdbars",
        "mandelbrot",
        "life=s=1280x720:mold=10:ratio=0.3",
    ];
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-v", "error", "-y"]);
    for scene in scenes {
        let source = if scene.contains('=') {
            format!("{scene}:rate=30")
        } else {
            format!("{scene}=size=1280x720:rate=30")
        };
        command.args(["-f", "lavfi", "-t", "15", "-i", &source]);
    }
    let filter = "[0:v][1:v][2:v][3:v]concat=n=4:v=1:a=0,format=yuv420p[v]";
    let status = command
        .args([
            "-filter_complex",
            filter,
            "-map",
            "[v]",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ])
        .arg(&partial)
        .status()
        .context("running ffmpeg to make the test clip (install FFmpeg, or pass --skip-video)")?;
    if !status.success() {
        bail!("ffmpeg could not make the test clip ({status})");
    }
    std::fs::rename(&partial, &clip)?;
    Ok(clip)
}

/// Decoding and preprocessing a 60 s 720p clip under both models' sampling rules, then the
/// vision tower on one slow and one fast Keye-VL-1.5 frame.
fn video_figures(model: &KeyeModel, dir: &Path) -> Result<()> {
    use keye_media::{
        FrameKind, Generation, ProcessorConfig, VideoInput, VideoOptions, VideoSettings,
        load_video, plan_video, preprocess_video,
    };
    let clip = ensure_test_clip(dir.parent().unwrap_or(dir))?;
    let clip = clip.to_string_lossy();
    let mut frame_grids = Vec::new();
    for (label, generation) in [
        ("Keye-VL-1.5", Generation::V1_5),
        ("Preview", Generation::Preview),
    ] {
        let processor = ProcessorConfig::defaults(generation);
        let settings = VideoSettings::new(generation);
        let start = Instant::now();
        let sampled = load_video(
            VideoInput::File(&clip),
            None,
            &VideoOptions::default(),
            &settings,
        )?;
        let plan = plan_video(&sampled, &processor)?;
        let processed = preprocess_video(&sampled, &plan, &processor)?;
        let elapsed = start.elapsed();
        std::hint::black_box(&processed);
        println!(
            "video 60 s 720p, {label} rules: decode + preprocess {:.2} s ({} frames, {} tokens)",
            elapsed.as_secs_f64(),
            plan.frames.len(),
            plan.tokens
        );
        if generation == Generation::V1_5 {
            for kind in [FrameKind::Slow, FrameKind::Fast] {
                if let Some(frame) = plan.frames.iter().find(|f| f.kind == Some(kind)) {
                    frame_grids.push((kind, frame.grid, frame.tokens));
                }
            }
        }
    }
    for (kind, grid, tokens) in frame_grids {
        let elapsed = time_vision(model, grid)?;
        println!(
            "vision encode per {kind:?} frame ({}x{} patches, {tokens} tokens): {:.3} s",
            grid.h,
            grid.w,
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// How a probe pass's tasks read their chunks.
#[derive(Clone, Copy)]
enum Streams {
    /// Front to back.
    One,
    /// As four quarters side by side, as the decode products read four weight rows at once: on
    /// 2 Zen 5 cores that reads 5–15 % more, so a roofline of one stream only would flatter
    /// decode.
    Four,
}

/// Multi-threaded reads of a 1 GiB buffer: the memory read bandwidth that bounds decoding.
struct BandwidthProbe {
    buffer: Vec<u64>,
}

impl BandwidthProbe {
    /// Words per rayon task.
    const CHUNK: usize = 1 << 16;

    fn new() -> Self {
        let words = (1u64 << 30) / 8;
        Self {
            buffer: (0..words)
                .into_par_iter()
                .map(|i| i.wrapping_mul(0x9e37))
                .collect(),
        }
    }

    /// Bytes one pass reads.
    fn bytes(&self) -> f64 {
        (self.buffer.len() * 8) as f64
    }

    /// The time of one pass over the buffer on every thread.
    fn pass(&self, streams: Streams) -> Duration {
        let start = Instant::now();
        let sum: u64 = self
            .buffer
            .par_chunks(Self::CHUNK)
            .map(|chunk| match streams {
                Streams::One => chunk.iter().fold(0u64, |a, &b| a.wrapping_add(b)),
                Streams::Four => {
                    let quarter = chunk.len() / 4;
                    let mut sums = [0u64; 4];
                    for i in 0..quarter {
                        for (s, sum) in sums.iter_mut().enumerate() {
                            *sum = sum.wrapping_add(chunk[s * quarter + i]);
                        }
                    }
                    sums.iter().fold(0u64, |a, &b| a.wrapping_add(b))
                }
            })
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(sum);
        start.elapsed()
    }

    /// The best of three passes of each kind, one stream and four, in bytes per second.
    fn best_of_three(&self) -> (f64, f64) {
        let best = |streams| {
            let fastest = (0..3).map(|_| self.pass(streams)).min().unwrap_or_default();
            self.bytes() / fastest.as_secs_f64()
        };
        (best(Streams::One), best(Streams::Four))
    }
}

fn peak_rss_bytes() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib * 1024)
}

/// Writes a bf16 checkpoint with every tensor the model loads, unless one is already there.
fn ensure_random_checkpoint(dir: &Path, config_text: &str, config: &KeyeConfig) -> Result<()> {
    let done_marker = dir.join(".complete");
    if done_marker.is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("config.json"), config_text)?;
    let tensors = checkpoint_tensors(config);
    let total: usize = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>() * 2)
        .sum();
    eprintln!(
        "writing a random-weight bf16 checkpoint ({:.1} GB) to {} (once)",
        total as f64 / 1e9,
        dir.display()
    );
    const SHARD_BYTES: usize = 4 << 30;
    let mut shards: Vec<Vec<&TensorSpec>> = vec![Vec::new()];
    let mut shard_size = 0;
    for t in &tensors {
        let bytes = t.shape.iter().product::<usize>() * 2;
        if shard_size + bytes > SHARD_BYTES && !shards.last().expect("one shard").is_empty() {
            shards.push(Vec::new());
            shard_size = 0;
        }
        shards.last_mut().expect("one shard").push(t);
        shard_size += bytes;
    }
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len());
        write_shard(&dir.join(&name), shard, i as u64)?;
        for t in shard {
            weight_map.insert(t.name.clone(), name.clone().into());
        }
    }
    let index =
        serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index)?,
    )?;
    std::fs::write(&done_marker, b"")?;
    Ok(())
}

struct TensorSpec {
    name: String,
    shape: Vec<usize>,
    /// Norm scales are ones, everything else small random values.
    ones: bool,
}

fn checkpoint_tensors(c: &KeyeConfig) -> Vec<TensorSpec> {
    let mut out = Vec::new();
    let mut add =
        |name: String, shape: Vec<usize>, ones: bool| out.push(TensorSpec { name, shape, ones });
    let v = &c.vision_config;
    let (dv, side, p) = (v.hidden_size, v.position_grid_side(), v.patch_size);
    let pre = "visual.vision_model";
    add(
        format!("{pre}.embeddings.patch_embedding.weight"),
        vec![dv, 3, p, p],
        false,
    );
    add(
        format!("{pre}.embeddings.patch_embedding.bias"),
        vec![dv],
        false,
    );
    add(
        format!("{pre}.embeddings.position_embedding.weight"),
        vec![side * side, dv],
        false,
    );
    for i in 0..v.num_hidden_layers {
        let l = format!("{pre}.encoder.layers.{i}");
        for n in ["layer_norm1", "layer_norm2"] {
            add(format!("{l}.{n}.weight"), vec![dv], true);
            add(format!("{l}.{n}.bias"), vec![dv], false);
        }
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(format!("{l}.self_attn.{n}.weight"), vec![dv, dv], false);
            add(format!("{l}.self_attn.{n}.bias"), vec![dv], false);
        }
        add(
            format!("{l}.mlp.fc1.weight"),
            vec![v.intermediate_size, dv],
            false,
        );
        add(
            format!("{l}.mlp.fc1.bias"),
            vec![v.intermediate_size],
            false,
        );
        add(
            format!("{l}.mlp.fc2.weight"),
            vec![dv, v.intermediate_size],
            false,
        );
        add(format!("{l}.mlp.fc2.bias"), vec![dv], false);
    }
    add(format!("{pre}.post_layernorm.weight"), vec![dv], true);
    add(format!("{pre}.post_layernorm.bias"), vec![dv], false);
    let merged = dv * v.spatial_merge_size * v.spatial_merge_size;
    let norm = if c.model_type == "KeyeVL1_5" {
        merged
    } else {
        dv
    };
    add("mlp_AR.pre_norm.weight".into(), vec![norm], true);
    add("mlp_AR.pre_norm.bias".into(), vec![norm], false);
    add("mlp_AR.linear_1.weight".into(), vec![merged, merged], false);
    add("mlp_AR.linear_1.bias".into(), vec![merged], false);
    add(
        "mlp_AR.linear_2.weight".into(),
        vec![c.hidden_size, merged],
        false,
    );
    add("mlp_AR.linear_2.bias".into(), vec![c.hidden_size], false);
    let (d, hd) = (c.hidden_size, c.head_dim());
    let (hq, hkv) = (c.num_attention_heads, c.num_key_value_heads);
    add(
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, d],
        false,
    );
    for i in 0..c.num_hidden_layers {
        let l = format!("model.layers.{i}");
        add(format!("{l}.input_layernorm.weight"), vec![d], true);
        add(
            format!("{l}.post_attention_layernorm.weight"),
            vec![d],
            true,
        );
        add(
            format!("{l}.self_attn.q_proj.weight"),
            vec![hq * hd, d],
            false,
        );
        add(
            format!("{l}.self_attn.k_proj.weight"),
            vec![hkv * hd, d],
            false,
        );
        add(
            format!("{l}.self_attn.v_proj.weight"),
            vec![hkv * hd, d],
            false,
        );
        add(
            format!("{l}.self_attn.o_proj.weight"),
            vec![d, hq * hd],
            false,
        );
        add(format!("{l}.self_attn.q_norm.weight"), vec![hd], true);
        add(format!("{l}.self_attn.k_norm.weight"), vec![hd], true);
        add(
            format!("{l}.mlp.gate_proj.weight"),
            vec![c.intermediate_size, d],
            false,
        );
        add(
            format!("{l}.mlp.up_proj.weight"),
            vec![c.intermediate_size, d],
            false,
        );
        add(
            format!("{l}.mlp.down_proj.weight"),
            vec![d, c.intermediate_size],
            false,
        );
    }
    add("model.norm.weight".into(), vec![d], true);
    if !c.tie_word_embeddings {
        add("lm_head.weight".into(), vec![c.vocab_size, d], false);
    }
    out
}

/// Streams one safetensors shard: header, then each tensor's random bf16 data.
fn write_shard(path: &Path, tensors: &[&TensorSpec], seed: u64) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in tensors {
        let bytes = t.shape.iter().product::<usize>() * 2;
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": "BF16", "shape": t.shape, "data_offsets": [offset, offset + bytes] }),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&header)?;
    while (8 + header.len()) % 8 != 0 {
        header.push(b' ');
    }
    let tmp = path.with_extension("partial");
    let mut file = std::io::BufWriter::with_capacity(1 << 24, std::fs::File::create(&tmp)?);
    file.write_all(&(header.len() as u64).to_le_bytes())?;
    file.write_all(&header)?;
    let ones = half::bf16::from_f32(1.0).to_bits();
    for (ti, t) in tensors.iter().enumerate() {
        let n: usize = t.shape.iter().product();
        const CHUNK: usize = 1 << 22;
        let mut buffer = vec![0u16; CHUNK.min(n)];
        for (ci, start) in (0..n).step_by(CHUNK).enumerate() {
            let len = CHUNK.min(n - start);
            let chunk_seed = seed
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(ti as u64 * 1_000_003 + ci as u64)
                | 1;
            buffer[..len]
                .par_chunks_mut(1 << 14)
                .enumerate()
                .for_each(|(k, part)| {
                    let mut s = xorshift(chunk_seed.wrapping_add(k as u64 * 0x2545_f491));
                    for v in part {
                        if t.ones {
                            *v = ones;
                        } else {
                            s = xorshift(s);
                            // Uniform in ±0.035 (std ≈ 0.02), like an initialised checkpoint.
                            let x = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07;
                            *v = half::bf16::from_f32(x).to_bits();
                        }
                    }
                });
            file.write_all(bytemuck::cast_slice(&buffer[..len]))?;
        }
    }
    file.flush()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    Ok(())
}
