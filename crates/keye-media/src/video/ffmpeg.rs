//! Video probing and decoding with FFmpeg's command-line programs.
//!
//! Running `ffprobe` and `ffmpeg` as subprocesses instead of linking the FFmpeg libraries
//! (`ffmpeg-next`) means no build-time dependency (no headers, no bindgen/libclang, no version
//! pinning), any FFmpeg the user has works, and a crashing or hanging decoder cannot take the
//! process down: it is killed at the policy's time limit. The cost is a process start per
//! probe and per decode pass (a few milliseconds) and one pipe copy of the sampled frames. An
//! in-process decoder would save those and could seek per frame, but would tie the build to
//! one FFmpeg major version and run untrusted bitstreams inside the server process.
//!
//! Frames are addressed by index exactly like decord, which keye-vl-utils uses: the frame
//! count is the number of packets of the video stream (decord's `len(vr)`), the rate is the
//! stream's average frame rate (`get_avg_fps()`), and frame `i` is the `i`-th decoded frame in
//! presentation order. FFmpeg's default RGB24 conversion (swscale with its default flags, as
//! decord's bundled FFmpeg runs it) gives the fixture clip's decord pixels exactly: maximum and
//! mean difference 0. The conversion is what matters: the same decode with `accurate_rnd` and
//! `full_chroma_int` differs from decord by up to 69 levels (mean 1.05), so another YUV→RGB
//! implementation, or an FFmpeg build whose SIMD paths round differently, would move pixels
//! by a level or two.
//!
//! Only the `file` protocol is allowed: a playlist inside a local file cannot make FFmpeg
//! fetch URLs (it can still name other local files).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{MediaError, Result};
use crate::image::RgbImage;

/// The FFmpeg programs to run. The default finds `ffmpeg` and `ffprobe` on the `PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FfmpegTools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

impl Default for FfmpegTools {
    fn default() -> Self {
        Self {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

/// What decord reports about a video's stream, plus what a user wants to see about it.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Index of the video stream in the container.
    pub stream_index: u32,
    /// FFmpeg's codec name (`h264`, `hevc`, `vp9`, …).
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Number of frames as decord counts them (`len(vr)`: packets of the stream).
    pub frame_count: u64,
    /// Average frame rate (`vr.get_avg_fps()`).
    pub avg_fps: f64,
    /// Duration in seconds, when the container states one.
    pub duration: Option<f64>,
}

/// Longest stderr excerpt kept for error messages.
const STDERR_KEEP: usize = 4096;
/// Largest ffprobe JSON accepted (a few hundred bytes per stream).
const PROBE_OUTPUT_LIMIT: usize = 1 << 20;

/// Probes `path` with `ffprobe`: picks the video stream decord would read (the first one that
/// is not an attached cover picture) and counts its packets.
pub(crate) fn probe(
    path: &Path,
    tools: &FfmpegTools,
    timeout: Duration,
    source_desc: &str,
) -> Result<VideoInfo> {
    let mut args: Vec<OsString> = [
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-select_streams",
        "v",
        "-count_packets",
        "-show_entries",
        "stream=index,codec_name,width,height,avg_frame_rate,r_frame_rate,nb_read_packets,\
         duration:stream_disposition=attached_pic:format=duration",
        "-of",
        "json",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(file_url(path));
    let mut child = Supervised::spawn(&tools.ffprobe, &args, timeout, source_desc)?;
    let mut stdout = Vec::new();
    let read = child
        .stdout()
        .take(PROBE_OUTPUT_LIMIT as u64 + 1)
        .read_to_end(&mut stdout);
    let outcome = if stdout.len() > PROBE_OUTPUT_LIMIT {
        child.kill_and_finish()?
    } else {
        child.finish()?
    };
    let program = tools.ffprobe.display().to_string();
    if outcome.timed_out {
        return Err(timeout_error(&program, source_desc, timeout));
    }
    if !outcome.status.success() || read.is_err() {
        return Err(MediaError::InvalidVideo {
            source_desc: source_desc.to_owned(),
            reason: format!(
                "not a readable video ({})",
                failure_reason(&outcome.status, &outcome.stderr)
            ),
        });
    }
    if stdout.len() > PROBE_OUTPUT_LIMIT {
        return Err(invalid(source_desc, "ffprobe output is implausibly large"));
    }
    parse_probe(&stdout, source_desc)
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    index: u32,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_read_packets: Option<String>,
    duration: Option<String>,
    disposition: Option<ProbeDisposition>,
}

#[derive(Deserialize)]
struct ProbeDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

fn parse_probe(json: &[u8], source_desc: &str) -> Result<VideoInfo> {
    let output: ProbeOutput = serde_json::from_slice(json)
        .map_err(|e| invalid(source_desc, &format!("unexpected ffprobe output: {e}")))?;
    let stream = output
        .streams
        .into_iter()
        .find(|s| s.disposition.as_ref().is_none_or(|d| d.attached_pic == 0))
        .ok_or_else(|| invalid(source_desc, "no video stream"))?;
    // ffprobe names every codec its FFmpeg build knows, decodable or not.
    let codec = stream.codec_name.ok_or_else(|| {
        invalid(
            source_desc,
            "the video stream's codec is unknown to FFmpeg (unsupported codec)",
        )
    })?;
    let (width, height) = match (stream.width, stream.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(invalid(
                source_desc,
                &format!("the {codec} video stream has no frame size"),
            ));
        }
    };
    let frame_count = stream
        .nb_read_packets
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if frame_count == 0 {
        return Err(invalid(source_desc, "the video stream has no frames"));
    }
    // decord divides by the average rate; streams without one fall back to the nominal rate.
    let avg_fps = [&stream.avg_frame_rate, &stream.r_frame_rate]
        .into_iter()
        .filter_map(|rate| rate.as_deref().and_then(parse_rate))
        .next()
        .ok_or_else(|| invalid(source_desc, "the video stream has no frame rate"))?;
    let seconds = |text: Option<&str>| {
        text.and_then(|t| t.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d >= 0.0)
    };
    let duration = seconds(stream.duration.as_deref())
        .or_else(|| seconds(output.format.as_ref().and_then(|f| f.duration.as_deref())));
    Ok(VideoInfo {
        stream_index: stream.index,
        codec,
        width,
        height,
        frame_count,
        avg_fps,
        duration,
    })
}

/// A positive `num/den` rate.
fn parse_rate(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/')?;
    let (num, den): (f64, f64) = (num.trim().parse().ok()?, den.trim().parse().ok()?);
    let rate = num / den;
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

/// Decodes the frames at `indices` (sorted, distinct) and hands each to `on_frame` with its
/// position in `indices`, in order. Frames are streamed: only one is in memory at a time, and
/// FFmpeg stops as soon as the last wanted frame has arrived.
pub(crate) fn decode_frames(
    path: &Path,
    info: &VideoInfo,
    indices: &[u64],
    tools: &FfmpegTools,
    timeout: Duration,
    source_desc: &str,
    mut on_frame: impl FnMut(usize, RgbImage) -> Result<()>,
) -> Result<()> {
    if indices.is_empty() {
        return Ok(());
    }
    let mut args: Vec<OsString> = [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        // decord returns frames as stored; FFmpeg would apply the rotation metadata.
        "-noautorotate",
        "-protocol_whitelist",
        "file",
        "-i",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(file_url(path));
    args.extend(["-map".into(), format!("0:{}", info.stream_index).into()]);
    args.extend(["-an", "-sn", "-dn"].map(OsString::from));
    let filter = format!("select='{}'", select_expression(indices));
    // Linux caps one argument at 128 KiB; thousands of indices go through a script file.
    let _script = if filter.len() > MAX_FILTER_ARGUMENT {
        let script = write_filter_script(&filter)?;
        args.push("-filter_script:v".into());
        args.push(script.path().into());
        Some(script)
    } else {
        args.push("-vf".into());
        args.push(filter.into());
        None
    };
    args.extend(
        [
            // Without passthrough, rawvideo output is constant-rate and would duplicate frames
            // to fill the gaps the selection leaves.
            "-vsync",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]
        .map(OsString::from),
    );
    let program = tools.ffmpeg.display().to_string();
    let mut child = Supervised::spawn(&tools.ffmpeg, &args, timeout, source_desc)?;
    let frame_bytes = info.width as usize * info.height as usize * 3;
    let mut received = 0;
    let mut callback_error = None;
    let mut read_error = None;
    while received < indices.len() {
        let mut data = vec![0u8; frame_bytes];
        match read_full(child.stdout(), &mut data) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
        let frame = RgbImage::new(info.width, info.height, data)?;
        if let Err(e) = on_frame(received, frame) {
            callback_error = Some(e);
            break;
        }
        received += 1;
    }
    let complete = received == indices.len();
    // The remaining stream is not needed: stop decoding it.
    let outcome = if complete || callback_error.is_some() {
        child.kill_and_finish()?
    } else {
        child.finish()?
    };
    if let Some(error) = callback_error {
        return Err(error);
    }
    if outcome.timed_out {
        return Err(timeout_error(&program, source_desc, timeout));
    }
    if complete {
        return Ok(());
    }
    let reason = match (read_error, outcome.status.success()) {
        (Some(e), _) => format!("reading decoded frames: {e}"),
        (None, false) => failure_reason(&outcome.status, &outcome.stderr),
        (None, true) => format!(
            "the stream ended after {received} of the {} sampled frames (frame {} is missing); \
             the file may be truncated{}",
            indices.len(),
            indices[received],
            stderr_suffix(&outcome.stderr)
        ),
    };
    Err(MediaError::ToolFailed {
        program,
        source_desc: source_desc.to_owned(),
        reason,
    })
}

/// Longest filter passed on the command line.
const MAX_FILTER_ARGUMENT: usize = 64 * 1024;

fn write_filter_script(filter: &str) -> Result<tempfile::NamedTempFile> {
    let io_error = |error| MediaError::Io {
        path: std::env::temp_dir(),
        error,
    };
    let mut script = tempfile::NamedTempFile::new().map_err(io_error)?;
    std::io::Write::write_all(script.as_file_mut(), filter.as_bytes()).map_err(io_error)?;
    Ok(script)
}

/// An expression for FFmpeg's `select` filter that is true for the frame numbers in `indices`:
/// a balanced tree of comparisons, so each frame costs O(log k) evaluations, not O(k).
fn select_expression(indices: &[u64]) -> String {
    match indices {
        [] => "0".to_owned(),
        [single] => format!("eq(n\\,{single})"),
        _ => {
            let (left, right) = indices.split_at(indices.len() / 2);
            format!(
                "if(lt(n\\,{})\\,{}\\,{})",
                right[0],
                select_expression(left),
                select_expression(right)
            )
        }
    }
}

/// FFmpeg input URL for a local path: the explicit `file:` protocol, so that a file name with a
/// colon is never taken for another protocol.
fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// Fills `buffer` completely; `Ok(false)` on a clean end of stream before any byte, an
/// `UnexpectedEof` error on a partial frame.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("partial frame ({filled} of {} bytes)", buffer.len()),
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn invalid(source_desc: &str, reason: &str) -> MediaError {
    MediaError::InvalidVideo {
        source_desc: source_desc.to_owned(),
        reason: reason.to_owned(),
    }
}

fn timeout_error(program: &str, source_desc: &str, timeout: Duration) -> MediaError {
    MediaError::ToolTimeout {
        program: program.to_owned(),
        source_desc: source_desc.to_owned(),
        seconds: timeout.as_secs_f64(),
    }
}

fn failure_reason(status: &ExitStatus, stderr: &str) -> String {
    format!("{status}{}", stderr_suffix(stderr))
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// A child process under a time limit, its stderr collected on a side thread.
struct Supervised {
    program: String,
    source_desc: String,
    child: Arc<Mutex<Child>>,
    stdout: std::process::ChildStdout,
    stderr_reader: Option<std::thread::JoinHandle<String>>,
    watchdog: Option<(mpsc::Sender<()>, std::thread::JoinHandle<bool>)>,
    deadline: Instant,
}

struct Outcome {
    status: ExitStatus,
    stderr: String,
    timed_out: bool,
}

impl Supervised {
    fn spawn(
        program: &Path,
        args: &[OsString],
        timeout: Duration,
        source_desc: &str,
    ) -> Result<Self> {
        let name = program.display().to_string();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| MediaError::ToolMissing {
                program: name.clone(),
                reason: if e.kind() == std::io::ErrorKind::NotFound {
                    "program not found".into()
                } else {
                    e.to_string()
                },
            })?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MediaError::ToolFailed {
                program: name,
                source_desc: source_desc.to_owned(),
                reason: "its output pipes could not be opened".into(),
            });
        };
        let stderr_reader = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * STDERR_KEEP {
                    kept.drain(..kept.len() - STDERR_KEEP);
                }
            }
            let start = kept.len().saturating_sub(STDERR_KEEP);
            String::from_utf8_lossy(&kept[start..]).into_owned()
        });
        let child = Arc::new(Mutex::new(child));
        let (stop, stopped) = mpsc::channel::<()>();
        let watched = Arc::clone(&child);
        let watchdog = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(timeout) {
                // Killing closes the pipes, which ends the reads the caller is blocked in.
                let _ = lock(&watched).kill();
                return true;
            }
            false
        });
        Ok(Self {
            program: name,
            source_desc: source_desc.to_owned(),
            child,
            stdout,
            stderr_reader: Some(stderr_reader),
            watchdog: Some((stop, watchdog)),
            deadline: Instant::now() + timeout,
        })
    }

    fn stdout(&mut self) -> &mut std::process::ChildStdout {
        &mut self.stdout
    }

    /// Waits for the process to exit (killing it at the deadline).
    fn finish(self) -> Result<Outcome> {
        self.wait(false)
    }

    /// Kills the process (its remaining output is not wanted) and reaps it.
    fn kill_and_finish(self) -> Result<Outcome> {
        self.wait(true)
    }

    fn wait(mut self, kill: bool) -> Result<Outcome> {
        if kill {
            let _ = lock(&self.child).kill();
        }
        let mut killed_at_deadline = false;
        let status = loop {
            let polled = lock(&self.child).try_wait();
            match polled {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= self.deadline => {
                    killed_at_deadline = true;
                    let _ = lock(&self.child).kill();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    return Err(MediaError::ToolFailed {
                        program: self.program.clone(),
                        source_desc: self.source_desc.clone(),
                        reason: format!("waiting for it to exit failed: {e}"),
                    });
                }
            }
        };
        let watchdog_fired = match self.watchdog.take() {
            Some((stop, handle)) => {
                let _ = stop.send(());
                handle.join().unwrap_or(false)
            }
            None => false,
        };
        let stderr = self
            .stderr_reader
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        Ok(Outcome {
            status,
            stderr,
            timed_out: watchdog_fired || killed_at_deadline,
        })
    }
}

impl Drop for Supervised {
    /// A caller that returns early (an error while reading) must not leave the child running.
    fn drop(&mut self) {
        let mut child = lock(&self.child);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_expression_is_a_balanced_tree() {
        assert_eq!(select_expression(&[7]), "eq(n\\,7)");
        assert_eq!(
            select_expression(&[1, 5, 9]),
            "if(lt(n\\,5)\\,eq(n\\,1)\\,if(lt(n\\,9)\\,eq(n\\,5)\\,eq(n\\,9)))"
        );
    }

    #[test]
    fn rates_parse_as_ffprobe_prints_them() {
        assert_eq!(parse_rate("8/1"), Some(8.0));
        assert_eq!(parse_rate("24000/1001"), Some(24000.0 / 1001.0));
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(parse_rate("garbage"), None);
    }
}
