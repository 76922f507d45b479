#!/usr/bin/env python3
"""keye against llama.cpp (and the vision tower against PyTorch) on one random-weight
full-size Keye-VL checkpoint, alternating and idle-gated. Run by hand, not by CI; see README.md.

Steps, each cached under ~/.cache/keye (nothing here is committed):
  1. llama.cpp's llama-bench and llama-quantize, built from the llama-cpp-python sdist.
  2. The random checkpoint `keye bench` writes, its language model converted to a llama.cpp
     `qwen3` GGUF (bf16), then quantised per format; one format on disk at a time.
  3. Per format and round: keye bench, then llama-bench, each after the machine is idle.
  4. The vision tower on a 1280-token image: PyTorch CPU (f32 and bf16) on the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "keye"
LLAMA = CACHE / "llama.cpp"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = CACHE / "bench" / "keye-vl-8b-preview-random-bf16"
REAL_TOKENIZER = REPO / "tests" / "fixtures" / "keye-vl-8b-preview" / "tokenizer.json"

# keye's --quant name -> llama-quantize type (None: the converted bf16 file itself).
# `--pure` keeps every matrix in that type, as keye does, instead of llama.cpp's mixtures.
FORMATS = {"bf16": None, "q8_0": "Q8_0", "q4_k": "Q4_K_M"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    shown = [str(c) if "\n" not in str(c) else "<inline script>" for c in cmd]
    log("$ " + " ".join(shown))
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


# ---------------------------------------------------------------------------------------------
# 1. llama.cpp


def venv_python() -> Path:
    """A virtual environment for the build tools, gguf-py and (optionally) torch."""
    venv = LLAMA / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        run([python, "-m", "pip", "install", "--quiet", "cmake", "ninja", "numpy"])
    return python


def llama_sources() -> Path:
    sources = LLAMA / "src"
    if (sources / "CMakeLists.txt").exists():
        return sources
    sdist_dir = LLAMA / "sdist"
    if not list(sdist_dir.glob("llama_cpp_python-*.tar.gz")):
        # Only llama-cpp-python itself as source; its build backend may come as wheels.
        run([sys.executable, "-m", "pip", "download", "llama-cpp-python",
             "--no-binary", "llama-cpp-python", "--no-deps", "-d", sdist_dir])
    sdist = sorted(sdist_dir.glob("llama_cpp_python-*.tar.gz"))[-1]
    staging = LLAMA / "src.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
        # The "data" filter refuses links and paths outside the target (Python >= 3.11.4).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(staging, members=members, **safe)
    vendored = next(staging.glob("*/vendor/llama.cpp"))
    vendored.rename(sources)
    shutil.rmtree(staging)
    (LLAMA / "VERSION").write_text(sdist.name + "\n")
    return sources


def build_llama(python: Path) -> Path:
    bin_dir = LLAMA / "build" / "bin"
    if (bin_dir / "llama-bench").exists() and (bin_dir / "llama-quantize").exists():
        return bin_dir
    sources = llama_sources()
    tools = python.parent
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}")
    run([tools / "cmake", "-S", sources, "-B", LLAMA / "build", "-G", "Ninja",
         "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
        env=env)
    run([tools / "cmake", "--build", LLAMA / "build", "--target", "llama-bench",
         "llama-quantize", "-j", str(os.cpu_count() or 2)], env=env)
    return bin_dir


def ensure_gguf_py(python: Path) -> None:
    """gguf-py from the same llama.cpp sources, so the file matches the binaries."""
    probe = subprocess.run([python, "-c", "import gguf"], capture_output=True)
    if probe.returncode != 0:
        run([python, "-m", "pip", "install", "--quiet", llama_sources() / "gguf-py"])


# ---------------------------------------------------------------------------------------------
# 2. Checkpoint -> GGUF


def safetensors_entries(checkpoint: Path):
    """(name, dtype, shape, file, offset) of every tensor of a (sharded) safetensors folder."""
    for path in sorted(checkpoint.glob("*.safetensors")):
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, _ = info["data_offsets"]
            yield name, info["dtype"], info["shape"], path, 8 + header_len + start


def gguf_name(hf_name: str) -> str | None:
    """The llama.cpp `qwen3` name of a language-model tensor (None: not part of the LLM)."""
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf_name in fixed:
        return fixed[hf_name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.weight", hf_name)
    if not m:
        return None
    per_layer = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "self_attn.q_norm": "attn_q_norm",
        "self_attn.k_norm": "attn_k_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    return f"blk.{m.group(1)}.{per_layer[m.group(2)]}.weight"


CONVERT = r'''
import json, sys
import numpy as np
import gguf

out, config_path, tokenizer_path, entries_path = sys.argv[1:5]
config = json.load(open(config_path))
entries = json.load(open(entries_path))
w = gguf.GGUFWriter(out, "qwen3")
w.add_name("keye-random-llm")
w.add_context_length(config["max_position_embeddings"])
w.add_embedding_length(config["hidden_size"])
w.add_feed_forward_length(config["intermediate_size"])
w.add_block_count(config["num_hidden_layers"])
w.add_head_count(config["num_attention_heads"])
w.add_head_count_kv(config["num_key_value_heads"])
head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
w.add_key_length(head_dim)
w.add_value_length(head_dim)
w.add_rope_freq_base(float(config["rope_theta"]))
w.add_layer_norm_rms_eps(config["rms_norm_eps"])
w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)

# The checkpoint's (else the real Keye) Qwen2 BPE vocabulary, padded to the embedding rows like
# convert_hf_to_gguf.
tok = json.load(open(tokenizer_path))
vocab = dict(tok["model"]["vocab"])
special = set()
for added in tok.get("added_tokens", []):
    vocab[added["content"]] = added["id"]
    special.add(added["id"])
by_id = {i: t for t, i in vocab.items()}
tokens, types = [], []
for i in range(config["vocab_size"]):
    if i in by_id:
        tokens.append(by_id[i])
        types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    else:
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre("qwen2")
w.add_token_list(tokens)
w.add_token_types(types)
w.add_token_merges(merges)
w.add_eos_token_id(config["eos_token_id"])
w.add_bos_token_id(config["bos_token_id"])

for name, shape, path, offset in entries:
    count = int(np.prod(shape))
    raw = np.memmap(path, dtype=np.uint16, mode="r", offset=offset, shape=(count,))
    if len(shape) == 1:
        # Norm weights in f32, as llama.cpp's converter writes them.
        w.add_tensor(name, (raw.astype(np.uint32) << 16).view(np.float32))
    else:
        w.add_tensor(name, raw.reshape(shape).view(np.uint8),
                     raw_dtype=gguf.GGMLQuantizationType.BF16)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file(progress=False)
w.close()
'''


def convert_to_gguf(python: Path, checkpoint: Path, out: Path) -> None:
    if out.exists():
        return
    entries = []
    for name, dtype, shape, path, offset in safetensors_entries(checkpoint):
        target = gguf_name(name)
        if target is None:
            continue
        if dtype != "BF16":
            sys.exit(f"{name} is {dtype}; the bench checkpoint is expected to be bf16")
        entries.append((target, shape, str(path), offset))
    out.parent.mkdir(parents=True, exist_ok=True)
    need = sum(2 * prod(shape) for _, shape, _, _ in entries)
    ensure_disk(out.parent, need, "the bf16 GGUF")
    entries_file = out.with_suffix(".entries.json")
    entries_file.write_text(json.dumps(entries))
    partial = out.with_suffix(".partial")
    tokenizer = checkpoint / "tokenizer.json"
    if not tokenizer.exists():
        tokenizer = REAL_TOKENIZER
    run([python, "-c", CONVERT, partial, checkpoint / "config.json", tokenizer, entries_file])
    entries_file.unlink()
    partial.rename(out)


def quantize(bin_dir: Path, source: Path, out: Path, llama_type: str) -> None:
    if out.exists():
        return
    # Q8_0 takes 34 bytes per 32 weights, 17/32 of bf16; Q4_K less.
    ensure_disk(out.parent, source.stat().st_size * 17 // 32, f"the {llama_type} GGUF")
    partial = out.with_suffix(".partial")
    run([bin_dir / "llama-quantize", "--pure", source, partial, llama_type])
    partial.rename(out)


def prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def ensure_disk(folder: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < need + (1 << 30):
        sys.exit(f"{what} needs about {need / 1e9:.1f} GB but {folder} has {free / 1e9:.1f} GB "
                 "free; free some space or pass fewer --formats")


def streamed_bytes(python: Path, gguf_file: Path) -> int:
    """Bytes of weights read per decoded token: every tensor but the embedding table."""
    code = ("import sys, gguf; r = gguf.GGUFReader(sys.argv[1]); "
            "print(sum(int(t.n_bytes) for t in r.tensors if t.name != 'token_embd.weight'))")
    result = subprocess.run([python, "-c", code, gguf_file], check=True, capture_output=True,
                            text=True)
    return int(result.stdout.strip())


# ---------------------------------------------------------------------------------------------
# 3. Measurements


def wait_for_idle(max_load: float, timeout: float) -> None:
    """Waits until the 1-minute load average is below `max_load` (other builds, other runs)."""
    started = time.time()
    while os.getloadavg()[0] > max_load:
        if time.time() - started > timeout:
            log(f"load still {os.getloadavg()[0]:.2f} after {timeout:.0f} s; measuring anyway")
            return
        time.sleep(5)


def keye_bench(keye: Path, checkpoint: Path, fmt: str, args, vision: str | None,
               text: bool = True) -> dict:
    # Only what llama-bench measures too (and the vision tower, in `vision` format): `keye bench`
    # alone gives the video and long-context figures. Without `text` the language model runs
    # one token at one token of context, to get a vision figure quickly.
    prefill, context, tokens = (args.prefill, args.context, args.decode_tokens) if text \
        else ("1", "1", "1")
    cmd = [keye, "bench", "--dir", checkpoint, "--prefill-tokens", prefill,
           "--decode-context", context, "--decode-tokens", tokens,
           "--skip-video", "--long-context", "0"]
    if args.config:
        cmd += ["--config", args.config]
    if fmt != "bf16":
        cmd += ["--quant", fmt]
    cmd += ["--matmul-precision", args.matmul_precision, "--kv-cache", args.kv_cache]
    if vision is None:
        cmd.append("--skip-vision")
    elif vision != "stored":
        cmd += ["--quant-vision", vision]
    out = run(cmd, stdout=subprocess.PIPE, text=True).stdout
    sys.stderr.write(out)

    def number(pattern: str) -> float | None:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None

    return {
        "prefill": number(r"prefill \d+ tokens: .* = ([\d.]+) tokens/s"),
        "decode": number(r"decode at \d+ context: ([\d.]+) tokens/s"),
        # Read between the decoded tokens, so each run's roofline is of its own seconds.
        "bandwidth": number(r"bandwidth while decoding: ([\d.]+) GB/s"),
        "weights_gb": number(r"decode vs bandwidth roofline: ([\d.]+) GB weights/token"),
        "vision_1280": number(r"vision encode, 1280-token image[^:]*: ([\d.]+) s"),
    }


def llama_bench(bin_dir: Path, model: Path, args) -> dict:
    """llama-bench's prefill and decode. Where its repacked weights (llama.cpp's default: the
    AMX int8 kernels on CPUs with AMX) die of a signal, as they did in a KVM guest with AMX
    (SIGILL at a `tileloadd` in a worker thread, for `Q8_0`), the run is repeated with
    `--repack 0` (its AVX-512 kernels) and the report says so."""
    threads = str(args.threads or os.cpu_count() or 2)
    common = [bin_dir / "llama-bench", "-m", model, "-t", threads, "-r", args.repetitions,
              "-o", "json"]
    tests = {"prefill": ["-p", args.prefill, "-n", "0"],
             "decode": ["-p", "0", "-n", args.decode_tokens, "-d", args.context]}
    result = {"repack_died": None}
    for name, test in tests.items():
        cmd = common + test + (["--repack", "0"] if result["repack_died"] else [])
        try:
            out = run(cmd, stdout=subprocess.PIPE, text=True)
        except subprocess.CalledProcessError as error:
            if error.returncode >= 0 or result["repack_died"]:
                raise
            result["repack_died"] = signal.Signals(-error.returncode).name
            log(f"llama-bench died of {result['repack_died']}; again with --repack 0")
            out = run(common + test + ["--repack", "0"], stdout=subprocess.PIPE, text=True)
        result[name] = json.loads(out.stdout)[0]["avg_ts"]
    return result


# ---------------------------------------------------------------------------------------------
# 4. Vision tower in PyTorch

TORCH_VISION = r'''
import json, sys, time
import torch
import torch.nn.functional as F
from safetensors import safe_open

checkpoint, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
config = json.load(open(f"{checkpoint}/config.json"))
vc = config["vision_config"]
weights = {}
index = json.load(open(f"{checkpoint}/model.safetensors.index.json"))["weight_map"]
for name, shard in index.items():
    if name.startswith(("visual.vision_model.", "mlp_AR.")) and ".head." not in name:
        with safe_open(f"{checkpoint}/{shard}", framework="pt") as f:
            weights[name] = f.get_tensor(name)

d, heads, layers = vc["hidden_size"], vc["num_attention_heads"], vc["num_hidden_layers"]
hd, patch, merge = d // heads, vc["patch_size"], vc["spatial_merge_size"]
side = int(round(weights["visual.vision_model.embeddings.position_embedding.weight"].shape[0] ** 0.5))
gh, gw = 64, 80  # 896 x 1120 pixels: 5120 patches, 1280 tokens after the 2x2 merge
preview = config.get("model_type") != "KeyeVL1_5"

def rope_tables(dtype):
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd // 2, 2, dtype=torch.float32) / (hd // 2)))
    rows = torch.arange(gh).repeat_interleave(gw).float()
    cols = torch.arange(gw).repeat(gh).float()
    angles = torch.cat([rows[:, None] * inv, cols[:, None] * inv], dim=1)
    angles = torch.cat([angles, angles], dim=1)
    return angles.cos().to(dtype), angles.sin().to(dtype)

def rotate(x, cos, sin):
    a, b = x.chunk(2, dim=-1)
    return x * cos[:, None] + torch.cat([-b, a], dim=-1) * sin[:, None]

def forward(pixels, w, cos, sin):
    p = "visual.vision_model"
    x = F.linear(pixels, w[f"{p}.embeddings.patch_embedding.weight"].reshape(d, -1),
                 w[f"{p}.embeddings.patch_embedding.bias"])
    table = w[f"{p}.embeddings.position_embedding.weight"].reshape(1, side, side, d).permute(0, 3, 1, 2)
    pos = F.interpolate(table.float(), size=(gh, gw), mode="bilinear", align_corners=False)
    x = x + pos.to(x.dtype).permute(0, 2, 3, 1).reshape(-1, d)
    n = x.shape[0]
    for i in range(layers):
        l = f"{p}.encoder.layers.{i}"
        h = F.layer_norm(x, (d,), w[f"{l}.layer_norm1.weight"], w[f"{l}.layer_norm1.bias"], 1e-6)
        q, k, v = (F.linear(h, w[f"{l}.self_attn.{n_}_proj.weight"], w[f"{l}.self_attn.{n_}_proj.bias"]).view(n, heads, hd)
                   for n_ in ("q", "k", "v"))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        o = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
        x = x + F.linear(o.transpose(0, 1).reshape(n, d), w[f"{l}.self_attn.out_proj.weight"], w[f"{l}.self_attn.out_proj.bias"])
        h = F.layer_norm(x, (d,), w[f"{l}.layer_norm2.weight"], w[f"{l}.layer_norm2.bias"], 1e-6)
        h = F.gelu(F.linear(h, w[f"{l}.mlp.fc1.weight"], w[f"{l}.mlp.fc1.bias"]), approximate="tanh")
        x = x + F.linear(h, w[f"{l}.mlp.fc2.weight"], w[f"{l}.mlp.fc2.bias"])
    x = F.layer_norm(x, (d,), w[f"{p}.post_layernorm.weight"], w[f"{p}.post_layernorm.bias"], 1e-6)
    # mlp_AR: 2x2 merge around the pre-norm, then two linears with GELU.
    merged = lambda t: t.view(gh // merge, merge, gw // merge, merge, -1).permute(0, 2, 1, 3, 4).reshape(n // merge**2, -1)
    norm_w, norm_b = w["mlp_AR.pre_norm.weight"], w["mlp_AR.pre_norm.bias"]
    if preview:
        x = merged(F.layer_norm(x, (d,), norm_w, norm_b, 1e-5))
    else:
        x = merged(x)
        x = F.layer_norm(x, (x.shape[-1],), norm_w, norm_b, 1e-5)
    x = F.gelu(F.linear(x, w["mlp_AR.linear_1.weight"], w["mlp_AR.linear_1.bias"]))
    return F.linear(x, w["mlp_AR.linear_2.weight"], w["mlp_AR.linear_2.bias"])

results = {}
for label, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
    w = {k: t.to(dtype) for k, t in weights.items()}
    cos, sin = rope_tables(dtype)
    pixels = (torch.rand(gh * gw, 3 * patch * patch) * 2 - 1).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(2):
            start = time.perf_counter()
            forward(pixels, w, cos, sin)
            best = min(best, time.perf_counter() - start)
    results[label] = best
print(json.dumps(results))
'''


def torch_vision(python: Path, checkpoint: Path, threads: int) -> dict | None:
    probe = subprocess.run([python, "-c", "import torch, safetensors"], capture_output=True)
    if probe.returncode != 0:
        # The CPU-only wheel is small; where its index is unreachable, PyPI's default build
        # (CUDA libraries included, a few GB) runs on the CPU just the same.
        for index in (["--index-url", "https://download.pytorch.org/whl/cpu"], []):
            try:
                run([python, "-m", "pip", "install", "--quiet", "torch", *index])
                break
            except subprocess.CalledProcessError:
                log("PyTorch could not be installed from " + (index[-1] if index else "PyPI"))
        else:
            return None
        run([python, "-m", "pip", "install", "--quiet", "safetensors"])
    out = run([python, "-c", TORCH_VISION, checkpoint, threads], stdout=subprocess.PIPE,
              text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------


def keye_binary(path: str | None) -> Path:
    if path:
        return Path(path)
    binary = REPO / "target" / "release" / "keye"
    run(["cargo", "build", "--release", "-p", "keye-cli"], cwd=REPO)
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="bf16,q8_0,q4_k",
                        help="comma-separated subset of bf16,q8_0,q4_k")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating keye/llama.cpp rounds per format (best is kept)")
    parser.add_argument("--repetitions", default="3", help="llama-bench -r")
    parser.add_argument("--threads", type=int, help="llama-bench and torch threads (default: all)")
    parser.add_argument("--prefill", default="512", help="prefill prompt length")
    parser.add_argument("--context", default="1024", help="context at which decode is measured")
    parser.add_argument("--decode-tokens", default="16")
    parser.add_argument("--kv-cache", default="bf16",
                        help="keye's KV cache (f32, bf16 or q8); bf16 reads as many bytes as "
                             "llama.cpp's default f16 cache")
    parser.add_argument("--keye", help="keye binary (default: cargo build --release)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="keye bench's random checkpoint folder (written if absent)")
    parser.add_argument("--config", type=Path,
                        help="config.json for keye bench to imitate when it writes the "
                             "checkpoint (default: the real Keye-VL-8B-Preview's); a smaller "
                             "one makes a quick smoke run")
    parser.add_argument("--max-load", type=float, default=0.5,
                        help="1-minute load average under which a measurement may start")
    parser.add_argument("--idle-timeout", type=float, default=900)
    parser.add_argument("--skip-vision", action="store_true")
    parser.add_argument("--quant-vision", default="stored,q8_0",
                        help="keye vision weight formats to time against PyTorch, comma-separated")
    parser.add_argument("--matmul-precision", choices=["bf16", "f32"], default="bf16",
                        help="keye's products with bf16 weights: bf16 rounds the activations "
                             "as llama.cpp's bf16 path does (default); f32 keeps them exact")
    parser.add_argument("--keep-gguf", action="store_true",
                        help="keep every GGUF instead of one format at a time")
    parser.add_argument("--build-only", action="store_true", help="only build llama.cpp")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        sys.exit(f"unknown formats {unknown}; choose from {list(FORMATS)}")

    python = venv_python()
    bin_dir = build_llama(python)
    log(f"llama.cpp from {(LLAMA / 'VERSION').read_text().strip()}: {bin_dir}")
    if args.build_only:
        return
    ensure_gguf_py(python)
    keye = keye_binary(args.keye)
    threads = args.threads or os.cpu_count() or 2

    # The first keye run writes the checkpoint if needed and gives the first vision figure.
    vision_formats = [] if args.skip_vision else \
        [f.strip() for f in args.quant_vision.split(",") if f.strip()]
    wait_for_idle(args.max_load, args.idle_timeout)
    first = keye_bench(keye, args.checkpoint, "bf16", args,
                       vision=vision_formats[0] if vision_formats else None)
    vision_times = {vision_formats[0]: first["vision_1280"]} if vision_formats else {}
    for fmt in vision_formats[1:]:
        wait_for_idle(args.max_load, args.idle_timeout)
        vision_times[fmt] = keye_bench(keye, args.checkpoint, "bf16", args, vision=fmt,
                                       text=False)["vision_1280"]
    bf16_gguf = LLAMA / "models" / "keye-llm-bf16.gguf"
    if formats:
        convert_to_gguf(python, args.checkpoint, bf16_gguf)

    rows = []
    for fmt in formats:
        llama_type = FORMATS[fmt]
        model = bf16_gguf if llama_type is None else LLAMA / "models" / f"keye-llm-{fmt}.gguf"
        if llama_type is not None:
            quantize(bin_dir, bf16_gguf, model, llama_type)
        keye_runs, llama_runs = [], []
        for round_ in range(args.rounds):
            if fmt == "bf16" and round_ == 0:
                keye_runs.append(first)
            else:
                wait_for_idle(args.max_load, args.idle_timeout)
                keye_runs.append(keye_bench(keye, args.checkpoint, fmt, args, vision=None))
            wait_for_idle(args.max_load, args.idle_timeout)
            llama_runs.append(llama_bench(bin_dir, model, args))
        llama_bytes = streamed_bytes(python, model)
        if model != bf16_gguf and not args.keep_gguf:
            model.unlink()
        rows.append((fmt, keye_runs, llama_runs, llama_bytes))
    if not args.keep_gguf:
        bf16_gguf.unlink(missing_ok=True)

    vision = None if args.skip_vision else torch_vision(python, args.checkpoint, threads)
    report(rows, first, vision_times, vision, args)


def best(runs: list, key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key)]
    return max(values) if values else None


def report(rows, first, vision_times, vision, args) -> None:
    bandwidths = [r["bandwidth"] for _, k, _, _ in rows for r in k if r.get("bandwidth")]
    bandwidth = statistics.median(bandwidths) if bandwidths else first["bandwidth"]
    print(f"\nmemory read bandwidth while keye decoded (median of runs): {bandwidth:.1f} GB/s")
    print(f"keye --matmul-precision {args.matmul_precision} (bf16 weights only), "
          f"--kv-cache {args.kv_cache}")
    print(f"decode at {args.context} context, prefill of {args.prefill} tokens; tokens/s, "
          "best of the rounds; roofline = bandwidth / weight bytes per token; keye's % is the "
          "mean over its runs, each against the bandwidth read between its own tokens; "
          "llama.cpp's is against the median\n")
    header = ("| format | keye decode | llama.cpp decode | ratio | keye % roofline | "
              "llama.cpp % roofline | keye prefill | llama.cpp prefill | ratio |")
    print(header)
    print("|" + "---|" * 9)
    fmt_num = lambda v, spec=".2f": "n/a" if v is None else format(v, spec)
    for fmt, keye_runs, llama_runs, llama_bytes in rows:
        kd, kp = best(keye_runs, "decode"), best(keye_runs, "prefill")
        ld, lp = best(llama_runs, "decode"), best(llama_runs, "prefill")
        keye_roofs = [100 * r["decode"] * r["weights_gb"] / r["bandwidth"] for r in keye_runs
                      if r.get("decode") and r.get("weights_gb") and r.get("bandwidth")]
        keye_roof = statistics.mean(keye_roofs) if keye_roofs else None
        llama_roof = 100 * ld / (bandwidth * 1e9 / llama_bytes) if ld else None
        print(f"| {fmt} | {fmt_num(kd)} | {fmt_num(ld)} | {fmt_num(kd / ld if kd and ld else None)} "
              f"| {fmt_num(keye_roof, '.0f')} | {fmt_num(llama_roof, '.0f')} | {fmt_num(kp)} "
              f"| {fmt_num(lp)} | {fmt_num(kp / lp if kp and lp else None)} |")
    for fmt, _, llama_runs, _ in rows:
        died = {r["repack_died"] for r in llama_runs if r.get("repack_died")}
        if died:
            print(f"\nllama.cpp {fmt}: its repacked weights died of {', '.join(sorted(died))}; "
                  "measured with --repack 0")
    if vision is not None and any(vision_times.values()):
        print(f"\nvision tower + projector, 1280-token image: PyTorch f32 {vision['f32']:.2f} s, "
              f"bf16 {vision['bf16']:.2f} s\n")
        print("| keye vision weights | keye | vs PyTorch f32 | vs PyTorch bf16 |")
        print("|---|---|---|---|")
        for fmt, k in vision_times.items():
            if k:
                print(f"| {fmt} | {k:.2f} s | {vision['f32'] / k:.2f}x | "
                      f"{vision['bf16'] / k:.2f}x |")
    elif not args.skip_vision:
        print("\nvision: PyTorch unavailable or keye printed no 1280-token figure")


if __name__ == "__main__":
    main()
