//! `keye media`: what the model will see of an image or a video — sampled frames, timestamps,
//! slow/fast types, sizes and token counts — without loading any weights.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use keye_chat::{FrameKind as ChatFrameKind, PromptAssembler, Tokenizer, VideoFrame, VideoLayout};
use keye_media::{
    FrameKind, Generation, ImageFormat, MediaPolicy, ProcessorConfig, UtilsLimits, VideoInput,
    VideoOrigin, VideoPlan, VideoSettings, VideoSizing, load_video, plan_video,
};
use serde_json::json;

use crate::args::{ImageArgs, VideoArgs};
use crate::run::OutputFormat;

#[derive(clap::Args, Debug)]
pub struct MediaArgs {
    /// An image or video (path, file://, http(s):// or data: URL); several images, or a folder
    /// of images, form a video given as frames.
    #[arg(required = true)]
    pub sources: Vec<String>,
    /// Checkpoint folder or keye GGUF file whose config, preprocessor settings and tokenizer to
    /// use (no weights are read). Without it, `--arch` picks the built-in rules.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Model generation whose preprocessing rules apply when no --model is given.
    #[arg(long, value_enum, default_value_t = Arch::V1_5)]
    pub arch: Arch,
    /// Treat a single source as a video even if it looks like an image.
    #[arg(long)]
    pub video: bool,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub video_options: VideoArgs,
    /// Write the sampled frames (as decoded, before resizing) to this folder as PNG files.
    #[arg(long, value_name = "DIR")]
    pub save_frames: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Keye-VL-8B-Preview (keye-vl-utils 1.0.0 rules).
    Preview,
    /// Keye-VL-1.5-8B (keye-vl-utils 1.5.2 rules, slow/fast frames).
    #[value(name = "1.5")]
    V1_5,
}

const VIDEO_EXTENSIONS: [&str; 14] = [
    "mp4", "mkv", "webm", "mov", "avi", "m4v", "flv", "ts", "mpg", "mpeg", "wmv", "3gp", "ogv",
    "mts",
];

struct Rules {
    generation: Generation,
    processor: ProcessorConfig,
    limits: UtilsLimits,
    tokenizer: Option<Tokenizer>,
    merge: usize,
}

pub fn run(args: &MediaArgs) -> Result<()> {
    let rules = rules(args)?;
    let policy = MediaPolicy::default();
    let frames_in_folder = args.sources.len() == 1 && Path::new(&args.sources[0]).is_dir();
    if args.sources.len() == 1
        && !frames_in_folder
        && !args.video
        && is_image(&args.sources[0], &policy)?
    {
        return inspect_image(&args.sources[0], args, &rules, &policy);
    }
    let source = match &args.sources[..] {
        [single] => crate::args::video_source(single),
        frames => keye_chat::VideoSource::Frames(frames.to_vec()),
    };
    let input = match &source {
        keye_chat::VideoSource::File(source) => VideoInput::File(source),
        keye_chat::VideoSource::Frames(frames) => VideoInput::Frames(frames),
    };
    let options = args.video_options.options();
    let settings = VideoSettings {
        generation: rules.generation,
        limits: rules.limits,
        policy,
        tools: Default::default(),
    };
    let sampled = load_video(input, None, &options, &settings)?;
    let plan = plan_video(&sampled, &rules.processor)?;
    if let Some(dir) = &args.save_frames {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        sampled.for_each_frame(|position, frame| {
            let name = format!(
                "frame_{position:04}_source_{:06}.png",
                sampled.frame_indices[position]
            );
            let path = dir.join(name);
            std::fs::write(&path, frame.to_png()?)
                .map_err(|error| keye_media::MediaError::Io { path, error })
        })?;
    }
    let prompt_tokens = rules
        .tokenizer
        .as_ref()
        .map(|t| video_prompt_tokens(t, rules.merge, &plan))
        .transpose()?;
    match args.output {
        OutputFormat::Json => println!("{}", video_json(&args.sources, &plan, prompt_tokens)),
        OutputFormat::Text => print_video(&args.sources, &plan, prompt_tokens, rules.generation),
    }
    Ok(())
}

fn rules(args: &MediaArgs) -> Result<Rules> {
    let Some(dir) = &args.model else {
        let generation = match args.arch {
            Arch::Preview => Generation::Preview,
            Arch::V1_5 => Generation::V1_5,
        };
        return Ok(Rules {
            generation,
            processor: ProcessorConfig::defaults(generation),
            limits: UtilsLimits::from_env(generation)?,
            tokenizer: None,
            merge: 2,
        });
    };
    let settings = keye::InputSettings::read(dir)?;
    let generation = settings.generation()?;
    Ok(Rules {
        generation,
        processor: settings.processor,
        limits: UtilsLimits::from_env(generation)?,
        tokenizer: Some(settings.tokenizer),
        merge: settings.config.vision_config.spatial_merge_size,
    })
}

fn is_image(source: &str, policy: &MediaPolicy) -> Result<bool> {
    let extension = Path::new(source.split(['?', '#']).next().unwrap_or(source))
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if extension
        .as_deref()
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e))
    {
        return Ok(false);
    }
    if source.starts_with("data:image") {
        return Ok(true);
    }
    if source.starts_with("http://") || source.starts_with("https://") {
        // Without a video extension, assume an image; --video overrides.
        return Ok(true);
    }
    let bytes = keye_media::fetch_bytes(source, None, policy)?;
    Ok(ImageFormat::sniff(&bytes).is_some())
}

fn inspect_image(
    source: &str,
    args: &MediaArgs,
    rules: &Rules,
    policy: &MediaPolicy,
) -> Result<()> {
    let image = keye_media::load_image(source, None, policy, rules.generation)?;
    let plan = keye_media::plan_image_with_limits(
        image.width(),
        image.height(),
        &args.image.options(),
        &rules.processor,
        rules.generation,
        &rules.limits,
    )?;
    if let Some(dir) = &args.save_frames {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("image.png"), image.to_png()?)?;
    }
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            json!({
                "source": source,
                "kind": "image",
                "original_size": [image.width(), image.height()],
                "utils_size": [plan.utils_size.width, plan.utils_size.height],
                "resized_size": [plan.resized_size.width, plan.resized_size.height],
                "grid_thw": [plan.grid.t, plan.grid.h, plan.grid.w],
                "tokens": plan.tokens,
            })
        ),
        OutputFormat::Text => {
            println!("image: {source}");
            println!("  original        {}x{}", image.width(), image.height());
            println!(
                "  keye-vl-utils   {}x{}",
                plan.utils_size.width, plan.utils_size.height
            );
            println!(
                "  processor       {}x{}",
                plan.resized_size.width, plan.resized_size.height
            );
            println!(
                "  grid (t,h,w)    {}x{}x{} patches of 14 px",
                plan.grid.t, plan.grid.h, plan.grid.w
            );
            println!("  tokens          {}", plan.tokens);
        }
    }
    Ok(())
}

/// Prompt tokens the video expands to, frame markers and timestamps included.
fn video_prompt_tokens(tokenizer: &Tokenizer, merge: usize, plan: &VideoPlan) -> Result<usize> {
    let assembler = PromptAssembler::new(tokenizer, merge)?;
    let layout = match plan.sizing {
        VideoSizing::Uniform { .. } => match plan.grid_rows[..] {
            [grid] => VideoLayout::Block(grid),
            _ => bail!("a Preview video forms one block"),
        },
        VideoSizing::SlowFast { .. } => VideoLayout::Frames(
            plan.frames
                .iter()
                .map(|f| VideoFrame {
                    grid: f.grid,
                    kind: if f.kind == Some(FrameKind::Fast) {
                        ChatFrameKind::Fast
                    } else {
                        ChatFrameKind::Slow
                    },
                    timestamp: f.timestamp,
                })
                .collect(),
        ),
    };
    let ids = assembler.assemble(
        "<|vision_start|><|video_pad|><|vision_end|>",
        &[],
        &[layout],
    )?;
    Ok(ids.len())
}

fn kind_name(kind: Option<FrameKind>) -> &'static str {
    match kind {
        Some(FrameKind::Slow) => "slow",
        Some(FrameKind::Fast) => "fast",
        None => "-",
    }
}

fn print_video(
    sources: &[String],
    plan: &VideoPlan,
    prompt_tokens: Option<usize>,
    generation: Generation,
) {
    let name = if sources.len() == 1 {
        sources[0].clone()
    } else {
        format!("{} frames", sources.len())
    };
    match &plan.origin {
        VideoOrigin::File(info) => println!(
            "video: {name} ({} {}x{}, {} frames, {:.3} fps{})",
            info.codec,
            info.width,
            info.height,
            info.frame_count,
            info.avg_fps,
            info.duration
                .map(|d| format!(", {d:.2} s"))
                .unwrap_or_default()
        ),
        VideoOrigin::FrameList { frame_count, fps } => println!(
            "video: {name} (frame list of {frame_count} images{})",
            fps.map(|f| format!(", {f} fps")).unwrap_or_default()
        ),
    }
    let rules = match generation {
        Generation::Preview => "Keye-VL-8B-Preview (keye-vl-utils 1.0.0)",
        Generation::V1_5 => "Keye-VL-1.5 (keye-vl-utils 1.5.2)",
    };
    println!("rules: {rules}");
    match plan.sizing {
        VideoSizing::SlowFast {
            slow_size,
            fast_size,
        } => {
            let fast = plan
                .frames
                .iter()
                .filter(|f| f.kind == Some(FrameKind::Fast))
                .count();
            println!(
                "sampled {} frames: {} slow at {}x{}, {fast} fast at {}x{}",
                plan.frames.len(),
                plan.frames.len() - fast,
                slow_size.width,
                slow_size.height,
                fast_size.width,
                fast_size.height
            );
        }
        VideoSizing::Uniform {
            utils_size,
            second_per_grid,
        } => println!(
            "sampled {} frames at {}x{} ({:.4} s per frame in the temporal positions)",
            plan.frames.len(),
            utils_size.width,
            utils_size.height,
            second_per_grid
        ),
    }
    println!(
        "{:>5} {:>8} {:>7} {:>5} {:>10} {:>9} {:>7}",
        "frame", "source", "time", "type", "size", "grid", "tokens"
    );
    for (i, f) in plan.frames.iter().enumerate() {
        println!(
            "{:>5} {:>8} {:>7} {:>5} {:>10} {:>9} {:>7}",
            i,
            f.source_index,
            f.timestamp_text().unwrap_or_else(|| "-".into()),
            kind_name(f.kind),
            format!("{}x{}", f.size.width, f.size.height),
            format!("{}x{}x{}", f.grid.t, f.grid.h, f.grid.w),
            f.tokens
        );
    }
    let grid_rows: Vec<String> = plan
        .grid_rows
        .iter()
        .map(|g| format!("[{},{},{}]", g.t, g.h, g.w))
        .collect();
    println!("video_grid_thw: {}", grid_rows.join(" "));
    println!("visual tokens: {}", plan.tokens);
    if let Some(tokens) = prompt_tokens {
        println!("prompt tokens for this video (markers and timestamps included): {tokens}");
    }
}

fn video_json(
    sources: &[String],
    plan: &VideoPlan,
    prompt_tokens: Option<usize>,
) -> serde_json::Value {
    let origin = match &plan.origin {
        VideoOrigin::File(info) => json!({
            "codec": info.codec, "width": info.width, "height": info.height,
            "frame_count": info.frame_count, "fps": info.avg_fps, "duration": info.duration,
        }),
        VideoOrigin::FrameList { frame_count, fps } => {
            json!({ "frame_count": frame_count, "fps": fps })
        }
    };
    json!({
        "sources": sources,
        "kind": "video",
        "origin": origin,
        "frames": plan.frames.iter().map(|f| json!({
            "source_index": f.source_index,
            "timestamp": f.timestamp,
            "timestamp_text": f.timestamp_text(),
            "type": kind_name(f.kind),
            "size": [f.size.width, f.size.height],
            "grid_thw": [f.grid.t, f.grid.h, f.grid.w],
            "tokens": f.tokens,
        })).collect::<Vec<_>>(),
        "video_grid_thw": plan.grid_rows.iter().map(|g| [g.t, g.h, g.w]).collect::<Vec<_>>(),
        "visual_tokens": plan.tokens,
        "prompt_tokens": prompt_tokens,
    })
}
