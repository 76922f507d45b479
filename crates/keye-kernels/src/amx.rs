//! Intel AMX tiles (Sapphire Rapids and later) for the many-row bf16 products.
//!
//! One `tdpbf16ps` multiplies a 16 × 32 bf16 tile by a 32 × 16 one into 16 × 16 f32 sums: 8,192
//! multiply-adds, 16 times what one AVX-512 `vdpbf16ps` does, so prefill and the vision tower
//! stop being bound by the vector units.
//!
//! Rust has no stable AMX intrinsics, so each block is one `asm!` statement that configures the
//! tiles, runs the whole depth loop and stores the sums before it ends: no tile state lives
//! across statements, and the compiler never sees a tile register.
//!
//! Linux gives a process the 8 KiB of tile state only on request (`arch_prctl`
//! `ARCH_REQ_XCOMP_PERM`), for all its threads; [`is_supported`] asks once.

use std::sync::OnceLock;

/// Weight rows and activation rows of one block: two tiles of 16 each way, four sum tiles.
pub(crate) const BLOCK: usize = 32;
/// Values of depth one step covers: a tile row of 64 bytes.
pub(crate) const STEP: usize = 32;

/// Whether the CPU has AMX tiles with bf16 and the OS lets this process use them.
pub(crate) fn is_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(request_tiles)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tiles() -> bool {
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    let features = std::arch::x86_64::__cpuid_count(7, 0).edx;
    if features & (AMX_BF16 | AMX_TILE) != AMX_BF16 | AMX_TILE {
        return false;
    }
    // SAFETY: a plain system call; it fails (non-zero) where the kernel has no AMX support.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tiles() -> bool {
    false
}

/// `ldtilecfg`'s 64-byte operand: palette 1, every tile 16 rows of 64 bytes.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

#[cfg(target_arch = "x86_64")]
static TILE_CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Where one [`bf16_block`] reads its operands.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Bf16Block {
    /// The first step of the first of [`BLOCK`] weight rows, bf16 bits: a row's step is
    /// [`STEP`] values, the next row's `row_bytes` after it, the next step's `step_bytes`.
    pub weights: *const u16,
    pub row_bytes: usize,
    pub step_bytes: usize,
    /// Steps of depth; every one is whole (a partial last step padded with zeros).
    pub steps: usize,
    /// An activation panel: per pair of depth values, one 128-byte line of [`BLOCK`] words
    /// (two bf16 values of one activation row each), `steps` × 16 lines.
    pub panel: *const u32,
}

/// Bytes of one step of a panel: 16 lines of 128 bytes.
#[cfg(target_arch = "x86_64")]
const PANEL_STEP_BYTES: usize = STEP / 2 * 4 * BLOCK;

/// `sums[r][t]`: weight row `r` of the block dotted with activation row `t` of the panel, each
/// sum in f32 (the products of bf16 pairs are exact; denormal inputs count as zero).
///
/// The panel is prefetched two steps ahead: the panels of a pass stream from the last-level
/// cache once per weight block, and waiting on them at each tile load cost a fifth of the speed
/// (a product of 512 rows of 4096 by 12288, weights packed as [`crate::bf16_products`] packs
/// them, ran at 450 GFLOP/s on one Xeon core without the prefetches, 550 with them).
///
/// # Safety
/// [`is_supported`] is true and the pointers of `block` cover what its fields say.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn bf16_block(block: &Bf16Block, sums: &mut [[f32; BLOCK]; BLOCK]) {
    const PANEL_LINE: usize = 4 * BLOCK;
    const SUM_ROW: usize = 4 * BLOCK;
    const PREFETCH_STEPS: usize = 2;
    let out = sums.as_mut_ptr().cast::<f32>();
    // Sum tiles: tmm0 = weight rows 0–15 × activation rows 0–15, tmm1 = 0–15 × 16–31,
    // tmm2 = 16–31 × 0–15, tmm3 = 16–31 × 16–31. Weight tiles tmm4 (rows 0–15) and tmm5
    // (16–31); activation tiles tmm6 (rows 0–15: the low 64 bytes of each panel line), tmm7.
    // SAFETY: the caller guarantees the operands (a prefetch past them never faults); the
    // statement leaves no tile state behind.
    unsafe {
        std::arch::asm!(
            "ldtilecfg [{config}]",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "test {steps}, {steps}",
            "jz 3f",
            "2:",
            "tileloadd tmm4, [{weights} + {row_bytes}*1]",
            "tileloadd tmm6, [{panel} + {panel_line}*1]",
            "tileloadd tmm7, [{panel} + {panel_line}*1 + 64]",
            "tileloadd tmm5, [{weights_high} + {row_bytes}*1]",
            "prefetcht0 [{ahead}]",
            "prefetcht0 [{ahead} + 64]",
            "prefetcht0 [{ahead} + 128]",
            "prefetcht0 [{ahead} + 192]",
            "prefetcht0 [{ahead} + 256]",
            "prefetcht0 [{ahead} + 320]",
            "prefetcht0 [{ahead} + 384]",
            "prefetcht0 [{ahead} + 448]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "prefetcht0 [{ahead} + 512]",
            "prefetcht0 [{ahead} + 576]",
            "prefetcht0 [{ahead} + 640]",
            "prefetcht0 [{ahead} + 704]",
            "prefetcht0 [{ahead} + 768]",
            "prefetcht0 [{ahead} + 832]",
            "prefetcht0 [{ahead} + 896]",
            "prefetcht0 [{ahead} + 960]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "prefetcht0 [{ahead} + 1024]",
            "prefetcht0 [{ahead} + 1088]",
            "prefetcht0 [{ahead} + 1152]",
            "prefetcht0 [{ahead} + 1216]",
            "prefetcht0 [{ahead} + 1280]",
            "prefetcht0 [{ahead} + 1344]",
            "prefetcht0 [{ahead} + 1408]",
            "prefetcht0 [{ahead} + 1472]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "prefetcht0 [{ahead} + 1536]",
            "prefetcht0 [{ahead} + 1600]",
            "prefetcht0 [{ahead} + 1664]",
            "prefetcht0 [{ahead} + 1728]",
            "prefetcht0 [{ahead} + 1792]",
            "prefetcht0 [{ahead} + 1856]",
            "prefetcht0 [{ahead} + 1920]",
            "prefetcht0 [{ahead} + 1984]",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {weights}, {step_bytes}",
            "add {weights_high}, {step_bytes}",
            "add {panel}, {panel_step}",
            "add {ahead}, {panel_step}",
            "dec {steps}",
            "jnz 2b",
            "3:",
            "tilestored [{out} + {sum_row}*1], tmm0",
            "tilestored [{out} + {sum_row}*1 + 64], tmm1",
            "tilestored [{out} + {sum_row}*1 + 2048], tmm2",
            "tilestored [{out} + {sum_row}*1 + 2112], tmm3",
            "tilerelease",
            config = in(reg) &TILE_CONFIG,
            steps = inout(reg) block.steps => _,
            weights = inout(reg) block.weights => _,
            weights_high = inout(reg) block.weights.wrapping_byte_add(16 * block.row_bytes) => _,
            row_bytes = in(reg) block.row_bytes,
            step_bytes = in(reg) block.step_bytes,
            panel = inout(reg) block.panel => _,
            ahead = inout(reg) block.panel.wrapping_byte_add(PREFETCH_STEPS * PANEL_STEP_BYTES) => _,
            panel_line = in(reg) PANEL_LINE,
            panel_step = in(reg) PANEL_STEP_BYTES,
            out = in(reg) out,
            sum_row = in(reg) SUM_ROW,
            options(nostack),
        );
    }
}

/// Where one [`bf16_blocks`] reads its operands: consecutive blocks of [`BLOCK`] weight rows that
/// hold their depth contiguously (each step [`STEP`] values after the one before), all against
/// one panel laid out as in [`Bf16Block`].
#[cfg(target_arch = "x86_64")]
pub(crate) struct Bf16Blocks {
    /// The first row of the first block, bf16 bits; the next row `row_bytes` after it.
    pub weights: *const u16,
    pub row_bytes: usize,
    /// From the first row of one block to the first row of the next.
    pub block_bytes: usize,
    /// Steps of depth per block; every one is whole.
    pub steps: usize,
    pub panel: *const u32,
    /// Whether the last block's rows 16–31 are all padding: its upper weight tile is then
    /// neither loaded nor multiplied, and those sums are zeros.
    pub half_last: bool,
}

/// [`bf16_block`] for `sums.len()` blocks of weight rows against the same panel, block `b`'s
/// sums in `sums[b]`: one tile configuration for all of them, and no prefetches, since the
/// attention's panels (queries, softmax weights) are a few KiB that stay in L1, where
/// prefetching them only takes load slots.
///
/// # Safety
/// [`is_supported`] is true and the pointers of `blocks` cover what its fields say for every
/// block.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn bf16_blocks(blocks: &Bf16Blocks, sums: &mut [[[f32; BLOCK]; BLOCK]]) {
    const LINE: usize = 4 * BLOCK;
    if sums.is_empty() {
        return;
    }
    // The first row of the block whose upper half is skipped; no block starts at the null
    // address.
    let half_block = if blocks.half_last {
        blocks
            .weights
            .wrapping_byte_add((sums.len() - 1) * blocks.block_bytes)
    } else {
        std::ptr::null()
    };
    // Tiles as in `bf16_block`.
    // SAFETY: the caller guarantees the operands; the statement leaves no tile state behind.
    unsafe {
        std::arch::asm!(
            "ldtilecfg [rip + {config}]",
            "2:",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "mov {steps}, {step_count}",
            "mov {weights}, {block_start}",
            "mov {weights_high}, {row_bytes}",
            "shl {weights_high}, 4",
            "add {weights_high}, {block_start}",
            "mov {panel}, {panel_start}",
            "test {steps}, {steps}",
            "jz 4f",
            "3:",
            "tileloadd tmm4, [{weights} + {row_bytes}*1]",
            "tileloadd tmm6, [{panel} + {line}*1]",
            "tileloadd tmm7, [{panel} + {line}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "cmp {block_start}, {half_block}",
            "je 5f",
            "tileloadd tmm5, [{weights_high} + {row_bytes}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "5:",
            "add {weights}, {step_bytes}",
            "add {weights_high}, {step_bytes}",
            "add {panel}, {panel_step}",
            "dec {steps}",
            "jnz 3b",
            "4:",
            "tilestored [{out} + {line}*1], tmm0",
            "tilestored [{out} + {line}*1 + 64], tmm1",
            "tilestored [{out} + {line}*1 + 2048], tmm2",
            "tilestored [{out} + {line}*1 + 2112], tmm3",
            "add {out}, {sums_bytes}",
            "add {block_start}, {block_bytes}",
            "dec {blocks}",
            "jnz 2b",
            "tilerelease",
            config = sym TILE_CONFIG,
            blocks = inout(reg) sums.len() => _,
            block_start = inout(reg) blocks.weights => _,
            block_bytes = in(reg) blocks.block_bytes,
            step_count = in(reg) blocks.steps,
            steps = out(reg) _,
            weights = out(reg) _,
            weights_high = out(reg) _,
            row_bytes = in(reg) blocks.row_bytes,
            panel_start = in(reg) blocks.panel,
            panel = out(reg) _,
            line = in(reg) LINE,
            half_block = in(reg) half_block,
            out = inout(reg) sums.as_mut_ptr() => _,
            step_bytes = const 2 * STEP,
            panel_step = const PANEL_STEP_BYTES,
            sums_bytes = const 4 * BLOCK * BLOCK,
            options(nostack),
        );
    }
}
