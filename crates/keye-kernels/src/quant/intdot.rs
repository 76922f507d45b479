//! 8-bit integer dot products over 32-value blocks, the inner step of the quantized GEMV.
//!
//! One block is one 256-bit vector of 32 bytes; a dot product leaves eight i32 partial sums
//! (lane `l` holds the sum over bytes `4l..4l + 4`, the `vpdpbusd` layout), which the caller
//! scales and accumulates in f32 lanes. Every level keeps that layout, so all levels sum in the
//! same order and only the instructions differ. A `Q4_K` super-block goes whole
//! ([`IntDot::q4k_dot`]): its sub-block scales are small integers, so with one activation scale
//! per super-block the eight sub-blocks are summed in integers, into 16 lanes of one f32 step.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::matmul::q4k_activation_offset;

/// Integer dot-product instruction sets, best last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum IntLevel {
    Scalar,
    /// `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// AVX-VNNI `vpdpbusd` on 256-bit vectors (Alder Lake and later, Zen 5).
    AvxVnni,
    /// AVX-512 BW and VNNI: `vpdpbusd` on two blocks per 512-bit vector (Ice Lake, Sapphire
    /// Rapids, Zen 4).
    Avx512Vnni,
}

impl IntLevel {
    pub(crate) fn is_supported(self) -> bool {
        match self {
            IntLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            IntLevel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            IntLevel::AvxVnni => {
                IntLevel::Avx2.is_supported() && is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            IntLevel::Avx512Vnni => {
                IntLevel::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level this CPU runs, lowest first.
    #[cfg(test)]
    pub(crate) fn supported() -> Vec<IntLevel> {
        [
            IntLevel::Scalar,
            IntLevel::Avx2,
            IntLevel::AvxVnni,
            IntLevel::Avx512Vnni,
        ]
        .into_iter()
        .filter(|level| level.is_supported())
        .collect()
    }

    /// The integer level that goes with a float [`crate::SimdLevel`] (so `KEYE_SIMD=avx2` or
    /// `scalar` also caps the quantized kernels): VNNI where the CPU has it.
    pub(crate) fn for_simd(level: crate::SimdLevel) -> IntLevel {
        use crate::SimdLevel;
        let candidates: &[IntLevel] = match level {
            SimdLevel::Avx512 | SimdLevel::Amx => {
                &[IntLevel::Avx512Vnni, IntLevel::AvxVnni, IntLevel::Avx2]
            }
            SimdLevel::Avx2 => &[IntLevel::AvxVnni, IntLevel::Avx2],
            _ => &[],
        };
        candidates
            .iter()
            .copied()
            .find(|level| level.is_supported())
            .unwrap_or(IntLevel::Scalar)
    }
}

/// Runs `$body` with `$d` bound to the [`IntDot`] token of `$level`, compiled for that level;
/// an unsupported level runs the scalar code.
macro_rules! dispatch_int {
    ($level:expr, |$d:ident| $body:expr) => {{
        use $crate::quant::intdot::IntLevel;
        let level = $level;
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports the level (checked by the guard).
            IntLevel::Avx512Vnni if level.is_supported() => {
                unsafe { $crate::quant::intdot::Avx512Vnni::new_unchecked() }.vectorize(
                    #[inline(always)]
                    |$d| $body,
                )
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            IntLevel::AvxVnni if level.is_supported() => {
                unsafe { $crate::quant::intdot::AvxVnni::new_unchecked() }.vectorize(
                    #[inline(always)]
                    |$d| $body,
                )
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            IntLevel::Avx2 if level.is_supported() => {
                unsafe { $crate::quant::intdot::Avx2::new_unchecked() }.vectorize(
                    #[inline(always)]
                    |$d| $body,
                )
            }
            _ => {
                let $d = $crate::quant::intdot::Scalar;
                $body
            }
        }
    }};
}
pub(crate) use dispatch_int;

/// Block dot products and the f32 accumulation around them. Tokens exist only where the CPU
/// has the instructions; methods taking pointers are `unsafe` and read 32 bytes (16 for
/// [`IntDot::load_nibbles`]).
pub(crate) trait IntDot: Copy {
    /// Activation rows the GEMV dots with each weight row at once: as many as keep their
    /// accumulator chains in registers.
    const ROW_TILE: usize = 4;

    /// 32 bytes.
    type Bytes: Copy;
    /// 8 × i32.
    type Ints: Copy;
    /// 8 × f32.
    type Floats: Copy;

    /// # Safety
    /// 32 bytes at `p` are readable.
    unsafe fn load(self, p: *const u8) -> Self::Bytes;
    /// Unpacks 16 bytes of nibble pairs into 32 values `0..=15`: the low nibbles first (values
    /// `0..16`), then the high ones (values `16..32`), the `Q4_0` order.
    ///
    /// # Safety
    /// 16 bytes at `p` are readable.
    unsafe fn load_nibbles(self, p: *const u8) -> Self::Bytes;
    /// The low and the high nibbles of 32 bytes: two `Q4_K` sub-blocks.
    fn split_nibbles(self, packed: Self::Bytes) -> (Self::Bytes, Self::Bytes);
    /// Lane sums of signed × signed byte products.
    fn dot_signed(self, w: Self::Bytes, a: Self::Bytes) -> Self::Ints;
    /// Lane sums of unsigned `w` (at most 127, so pair sums fit i16) × signed `a`.
    fn dot_unsigned(self, w: Self::Bytes, a: Self::Bytes) -> Self::Ints;
    fn zero(self) -> Self::Floats;
    /// `acc + sums · scale`.
    fn scale_add(self, acc: Self::Floats, sums: Self::Ints, scale: f32) -> Self::Floats;
    fn reduce(self, acc: Self::Floats) -> f32;
    fn add(self, a: Self::Floats, b: Self::Floats) -> Self::Floats;
    fn mul(self, a: Self::Floats, b: Self::Floats) -> Self::Floats;
    /// `acc + a · b`.
    fn mul_add(self, a: Self::Floats, b: Self::Floats, acc: Self::Floats) -> Self::Floats;
    fn splat(self, value: f32) -> Self::Floats;
    /// The 8 bytes of `packed` (lowest first) as f32.
    fn widen_bytes(self, packed: u64) -> Self::Floats;
    /// `acc + sums · scales[lane]`; `lane < 8`.
    fn scale_add_lane(
        self,
        acc: Self::Floats,
        sums: Self::Ints,
        scales: Self::Floats,
        lane: usize,
    ) -> Self::Floats;
    /// # Safety
    /// 8 floats at `p` are readable.
    unsafe fn load_floats(self, p: *const f32) -> Self::Floats;
    /// Converts a little-endian f16 at `p` (any alignment) to f32.
    ///
    /// # Safety
    /// 2 bytes at `p` are readable.
    unsafe fn read_f16(self, p: *const u8) -> f32;

    /// The [`CHAINS`] accumulator chains of a `Q8_0` or `Q4_0` dot: chain `c` sums the blocks `b`
    /// with `b % CHAINS == c`.
    type Chains: Copy;
    fn zero_chains(self) -> Self::Chains;
    /// `((c0 + c1) + c2) + c3`, lane by lane.
    fn sum_chains(self, chains: Self::Chains) -> Self::Floats;

    /// A `Q4_K` super-block's 256 levels, unpacked from its 128 bytes of nibbles.
    type Q4kLevels: Copy;
    /// A super-block's eight 6-bit sub-block scales, laid out for [`IntDot::q4k_dot`].
    type Q4kScales: Copy;
    /// # Safety
    /// 128 bytes at `p` are readable.
    unsafe fn load_q4k_levels(self, p: *const u8) -> Self::Q4kLevels;
    /// `packed`: the eight scales, sub-block 0 in the lowest byte.
    fn q4k_scales(self, packed: u64) -> Self::Q4kScales;
    /// 16 × i32, the lanes of [`IntDot::q4k_dot`].
    type Q4kSums: Copy;
    /// 16 × f32 accumulating [`IntDot::Q4kSums`].
    type Q4kAccumulator: Copy;
    /// `Σ_j sc_j · Σ q·a` over a super-block in 16 i32 lanes: lane `l < 8` sums values
    /// `4l..4l + 4` of sub-blocks 0, 1, 4 and 5, lane `8 + l` those of sub-blocks 2, 3, 6 and 7
    /// (the halves of the AVX-512 level's vectors, so it needs no fold). `a` holds the
    /// super-block's 256 activation bytes in
    /// [`ActivationLayout::Q4KSuperBlocks`](super::matmul::ActivationLayout) order. The sums are
    /// exact (at most 4 · 4 · 15 · 127 · 63 < 2³¹), so every level returns the same lanes.
    ///
    /// # Safety
    /// 256 bytes at `a` are readable.
    unsafe fn q4k_dot(
        self,
        levels: &Self::Q4kLevels,
        scales: &Self::Q4kScales,
        a: *const u8,
    ) -> Self::Q4kSums;
    fn q4k_zero(self) -> Self::Q4kAccumulator;
    /// `acc + sums · scale`, lane by lane.
    fn q4k_scale_add(
        self,
        acc: Self::Q4kAccumulator,
        sums: Self::Q4kSums,
        scale: f32,
    ) -> Self::Q4kAccumulator;
    /// The lanes `l` and `8 + l` added, then [`IntDot::reduce`].
    fn q4k_reduce(self, acc: Self::Q4kAccumulator) -> f32;

    /// The levels of two `Q8_0` (`SIGNED`) or `Q4_0` blocks, prepared for
    /// [`IntDot::block_pair_step`].
    type BlockPair: Copy;
    /// # Safety
    /// 32 bytes (`SIGNED`) or 16 bytes of nibbles at each pointer are readable.
    unsafe fn load_block_pair<const SIGNED: bool>(
        self,
        first: *const u8,
        second: *const u8,
    ) -> Self::BlockPair;
    /// Blocks `2·pair` and `2·pair + 1` of a group of eight `Q8_0` or `Q4_0` blocks: `levels`
    /// dotted with the 64 activation bytes at `a`, scaled by lanes `2·pair` and `2·pair + 1` of
    /// `scales`, added to their chains.
    ///
    /// # Safety
    /// 64 bytes at `a` are readable; `pair < 4`.
    unsafe fn block_pair_step<const SIGNED: bool>(
        self,
        chains: Self::Chains,
        levels: Self::BlockPair,
        a: *const u8,
        scales: Self::Floats,
        pair: usize,
    ) -> Self::Chains;
    /// Chain 0 plus `sums · scale`: a block past the last whole group of [`CHAINS`].
    fn first_chain_scale_add(
        self,
        chains: Self::Chains,
        sums: Self::Ints,
        scale: f32,
    ) -> Self::Chains;
}

/// Which half of [`IntDot::q4k_dot`]'s 16 lanes sums sub-block `j`: 0 for sub-blocks 0, 1, 4
/// and 5, 1 for 2, 3, 6 and 7.
#[inline(always)]
const fn q4k_lane_half(j: usize) -> usize {
    j / 2 % 2
}

/// Accumulator chains of every GEMV sum (one chain alone would wait on each FMA in turn).
pub(super) const CHAINS: usize = 4;

/// `((c0 + c1) + c2) + c3`: the [`CHAINS`] accumulator chains of 256-bit vectors summed.
#[inline(always)]
pub(super) fn sum_chains<D: IntDot>(d: D, [c0, c1, c2, c3]: [D::Floats; CHAINS]) -> D::Floats {
    d.add(d.add(d.add(c0, c1), c2), c3)
}

/// [`IntDot::block_pair_step`] for two `Q4_0` blocks on 256-bit vectors, one chain per vector.
///
/// # Safety
/// As [`IntDot::block_pair_step`].
#[inline(always)]
unsafe fn narrow_unsigned_pair_step<D: IntDot>(
    d: D,
    mut chains: [D::Floats; CHAINS],
    (low, high): (D::Bytes, D::Bytes),
    a: *const u8,
    scales: D::Floats,
    pair: usize,
) -> [D::Floats; CHAINS] {
    let (j_low, j_high) = (2 * pair, 2 * pair + 1);
    // SAFETY: 64 readable bytes at `a`.
    let (a_low, a_high) = unsafe { (d.load(a), d.load(a.add(32))) };
    let low_sums = d.dot_unsigned(low, a_low);
    let high_sums = d.dot_unsigned(high, a_high);
    let (c_low, c_high) = (j_low % CHAINS, j_high % CHAINS);
    chains[c_low] = d.scale_add_lane(chains[c_low], low_sums, scales, j_low);
    chains[c_high] = d.scale_add_lane(chains[c_high], high_sums, scales, j_high);
    chains
}

/// [`IntDot::block_pair_step`] on 256-bit vectors, one chain per vector.
///
/// # Safety
/// As [`IntDot::block_pair_step`].
#[inline(always)]
unsafe fn narrow_block_pair_step<D: IntDot, const SIGNED: bool>(
    d: D,
    chains: [D::Floats; CHAINS],
    (first, second): (D::Bytes, D::Bytes),
    a: *const u8,
    scales: D::Floats,
    pair: usize,
) -> [D::Floats; CHAINS] {
    if !SIGNED {
        // SAFETY: forwarded.
        return unsafe { narrow_unsigned_pair_step(d, chains, (first, second), a, scales, pair) };
    }
    let mut chains = chains;
    let (j_low, j_high) = (2 * pair, 2 * pair + 1);
    // SAFETY: 64 readable bytes at `a`.
    let (a_low, a_high) = unsafe { (d.load(a), d.load(a.add(32))) };
    let (c_low, c_high) = (j_low % CHAINS, j_high % CHAINS);
    chains[c_low] = d.scale_add_lane(chains[c_low], d.dot_signed(first, a_low), scales, j_low);
    chains[c_high] = d.scale_add_lane(chains[c_high], d.dot_signed(second, a_high), scales, j_high);
    chains
}

/// The associated types and [`IntDot`]'s block-pair and `Q4_K` accumulation methods for a level
/// with one chain per 256-bit vector.
macro_rules! narrow_pairs {
    () => {
        type Chains = [Self::Floats; CHAINS];
        type BlockPair = (Self::Bytes, Self::Bytes);

        #[inline(always)]
        unsafe fn load_block_pair<const SIGNED: bool>(
            self,
            first: *const u8,
            second: *const u8,
        ) -> Self::BlockPair {
            // SAFETY: forwarded.
            unsafe {
                if SIGNED {
                    (self.load(first), self.load(second))
                } else {
                    (self.load_nibbles(first), self.load_nibbles(second))
                }
            }
        }
        #[inline(always)]
        unsafe fn block_pair_step<const SIGNED: bool>(
            self,
            chains: Self::Chains,
            levels: Self::BlockPair,
            a: *const u8,
            scales: Self::Floats,
            pair: usize,
        ) -> Self::Chains {
            // SAFETY: forwarded.
            unsafe { narrow_block_pair_step::<Self, SIGNED>(self, chains, levels, a, scales, pair) }
        }
        #[inline(always)]
        fn first_chain_scale_add(
            self,
            mut chains: Self::Chains,
            sums: Self::Ints,
            scale: f32,
        ) -> Self::Chains {
            chains[0] = self.scale_add(chains[0], sums, scale);
            chains
        }
        #[inline(always)]
        fn zero_chains(self) -> Self::Chains {
            [self.zero(); CHAINS]
        }
        #[inline(always)]
        fn sum_chains(self, chains: Self::Chains) -> Self::Floats {
            sum_chains(self, chains)
        }

        /// Sub-block `j` in element `j`.
        type Q4kLevels = [Self::Bytes; 8];
        /// Lanes `0..8`, then `8..16`.
        type Q4kSums = [Self::Ints; 2];
        type Q4kAccumulator = [Self::Floats; 2];

        #[inline(always)]
        fn q4k_zero(self) -> Self::Q4kAccumulator {
            [self.zero(); 2]
        }
        #[inline(always)]
        fn q4k_scale_add(
            self,
            [low, high]: Self::Q4kAccumulator,
            [low_sums, high_sums]: Self::Q4kSums,
            scale: f32,
        ) -> Self::Q4kAccumulator {
            [
                self.scale_add(low, low_sums, scale),
                self.scale_add(high, high_sums, scale),
            ]
        }
        #[inline(always)]
        fn q4k_reduce(self, [low, high]: Self::Q4kAccumulator) -> f32 {
            self.reduce(self.add(low, high))
        }

        #[inline(always)]
        unsafe fn load_q4k_levels(self, p: *const u8) -> Self::Q4kLevels {
            // SAFETY: caller guarantees 128 readable bytes. Each 32 bytes hold sub-block 2g in
            // their low nibbles and 2g + 1 in their high ones.
            let [(l0, h0), (l1, h1), (l2, h2), (l3, h3)] = unsafe {
                [
                    self.split_nibbles(self.load(p)),
                    self.split_nibbles(self.load(p.add(32))),
                    self.split_nibbles(self.load(p.add(64))),
                    self.split_nibbles(self.load(p.add(96))),
                ]
            };
            [l0, h0, l1, h1, l2, h2, l3, h3]
        }
    };
}

#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl IntDot for Scalar {
    type Bytes = [u8; 32];
    type Ints = [i32; 8];
    type Floats = [f32; 8];
    narrow_pairs!();
    type Q4kScales = [i32; 8];

    #[inline(always)]
    fn q4k_scales(self, packed: u64) -> [i32; 8] {
        packed.to_le_bytes().map(i32::from)
    }
    #[inline(always)]
    unsafe fn q4k_dot(
        self,
        levels: &[[u8; 32]; 8],
        scales: &[i32; 8],
        a: *const u8,
    ) -> [[i32; 8]; 2] {
        let mut lanes = [[0i32; 8]; 2];
        for (j, (&levels, &scale)) in levels.iter().zip(scales).enumerate() {
            // SAFETY: caller guarantees the super-block's 256 activation bytes.
            let activations = unsafe { self.load(a.add(q4k_activation_offset(j))) };
            let sums = self.dot_unsigned(levels, activations);
            for (lane, sum) in lanes[q4k_lane_half(j)].iter_mut().zip(sums) {
                *lane += scale * sum;
            }
        }
        lanes
    }

    #[inline(always)]
    unsafe fn load(self, p: *const u8) -> [u8; 32] {
        // SAFETY: caller guarantees 32 readable bytes; u8 has no alignment.
        unsafe { *p.cast::<[u8; 32]>() }
    }
    #[inline(always)]
    unsafe fn load_nibbles(self, p: *const u8) -> [u8; 32] {
        // SAFETY: caller guarantees 16 readable bytes.
        let packed = unsafe { *p.cast::<[u8; 16]>() };
        std::array::from_fn(|i| {
            if i < 16 {
                packed[i] & 0x0f
            } else {
                packed[i - 16] >> 4
            }
        })
    }
    #[inline(always)]
    fn split_nibbles(self, packed: [u8; 32]) -> ([u8; 32], [u8; 32]) {
        (packed.map(|b| b & 0x0f), packed.map(|b| b >> 4))
    }
    #[inline(always)]
    fn dot_signed(self, w: [u8; 32], a: [u8; 32]) -> [i32; 8] {
        std::array::from_fn(|l| {
            (4 * l..4 * l + 4)
                .map(|i| i32::from(w[i] as i8) * i32::from(a[i] as i8))
                .sum()
        })
    }
    #[inline(always)]
    fn dot_unsigned(self, w: [u8; 32], a: [u8; 32]) -> [i32; 8] {
        std::array::from_fn(|l| {
            (4 * l..4 * l + 4)
                .map(|i| i32::from(w[i]) * i32::from(a[i] as i8))
                .sum()
        })
    }
    #[inline(always)]
    fn zero(self) -> [f32; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    fn scale_add(self, acc: [f32; 8], sums: [i32; 8], scale: f32) -> [f32; 8] {
        std::array::from_fn(|l| acc[l] + sums[l] as f32 * scale)
    }
    #[inline(always)]
    fn reduce(self, acc: [f32; 8]) -> f32 {
        // Pairwise, like the vector levels' horizontal adds.
        let quad: [f32; 4] = std::array::from_fn(|l| acc[l] + acc[l + 4]);
        let pair = [quad[0] + quad[2], quad[1] + quad[3]];
        pair[0] + pair[1]
    }
    #[inline(always)]
    fn add(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    fn mul(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| a[l] * b[l])
    }
    #[inline(always)]
    fn mul_add(self, a: [f32; 8], b: [f32; 8], acc: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| acc[l] + a[l] * b[l])
    }
    #[inline(always)]
    fn splat(self, value: f32) -> [f32; 8] {
        [value; 8]
    }
    #[inline(always)]
    fn widen_bytes(self, packed: u64) -> [f32; 8] {
        packed.to_le_bytes().map(f32::from)
    }
    #[inline(always)]
    fn scale_add_lane(
        self,
        acc: [f32; 8],
        sums: [i32; 8],
        scales: [f32; 8],
        lane: usize,
    ) -> [f32; 8] {
        self.scale_add(acc, sums, scales[lane])
    }
    #[inline(always)]
    unsafe fn load_floats(self, p: *const f32) -> [f32; 8] {
        // SAFETY: caller guarantees 8 readable floats.
        unsafe { p.cast::<[f32; 8]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn read_f16(self, p: *const u8) -> f32 {
        // SAFETY: caller guarantees 2 readable bytes.
        let bytes = unsafe { [*p, *p.add(1)] };
        half::f16::from_le_bytes(bytes).to_f32()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    /// Token: AVX2, FMA and F16C.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(());
    /// Token: AVX2, FMA, F16C and AVX-VNNI.
    #[derive(Clone, Copy)]
    pub(crate) struct AvxVnni(());
    /// Token: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512Vnni(());

    /// `new_unchecked` and `vectorize` (running a closure inside a function compiled with the
    /// token's features) for each token.
    macro_rules! token {
        ($token:ident, $features:literal) => {
            impl $token {
                /// # Safety
                /// The CPU supports the token's features.
                pub(crate) unsafe fn new_unchecked() -> Self {
                    $token(())
                }

                #[inline(always)]
                pub(crate) fn vectorize<R>(self, f: impl FnOnce($token) -> R) -> R {
                    #[target_feature(enable = $features)]
                    fn run<R>(token: $token, f: impl FnOnce($token) -> R) -> R {
                        f(token)
                    }
                    // SAFETY: the token exists only if the CPU supports the features.
                    unsafe { run(self, f) }
                }
            }
        };
    }
    token!(Avx2, "avx2,fma,f16c");
    token!(AvxVnni, "avx2,fma,f16c,avxvnni");
    token!(
        Avx512Vnni,
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
    );

    // The intrinsics need `unsafe` only because these methods are not `#[target_feature]`
    // functions themselves; they are always inlined into one that is (see `dispatch_int!`),
    // and the token proves the CPU has the instructions.

    /// The operations shared by the three x86 levels; `dot_unsigned` is what differs.
    macro_rules! common_x86 {
        () => {
            type Bytes = __m256i;
            type Ints = __m256i;
            type Floats = __m256;

            #[inline(always)]
            unsafe fn load(self, p: *const u8) -> __m256i {
                // SAFETY: caller guarantees 32 readable bytes; unaligned load.
                unsafe { _mm256_loadu_si256(p.cast()) }
            }
            #[inline(always)]
            unsafe fn load_nibbles(self, p: *const u8) -> __m256i {
                // SAFETY: caller guarantees 16 readable bytes.
                unsafe {
                    let packed = _mm_loadu_si128(p.cast());
                    let high = _mm_srli_epi16(packed, 4);
                    let both = _mm256_set_m128i(high, packed);
                    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
                }
            }
            #[inline(always)]
            fn split_nibbles(self, packed: __m256i) -> (__m256i, __m256i) {
                unsafe {
                    let mask = _mm256_set1_epi8(0x0f);
                    (
                        _mm256_and_si256(packed, mask),
                        _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask),
                    )
                }
            }
            #[inline(always)]
            fn dot_signed(self, w: __m256i, a: __m256i) -> __m256i {
                // |w| as unsigned bytes (|-128| reads back as 128) times a with w's sign.
                unsafe { self.dot_unsigned(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w)) }
            }
            #[inline(always)]
            fn zero(self) -> __m256 {
                unsafe { _mm256_setzero_ps() }
            }
            #[inline(always)]
            fn scale_add(self, acc: __m256, sums: __m256i, scale: f32) -> __m256 {
                unsafe { _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(scale), acc) }
            }
            #[inline(always)]
            fn reduce(self, acc: __m256) -> f32 {
                unsafe {
                    let quad =
                        _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
                    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
                    _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
                }
            }
            #[inline(always)]
            fn add(self, a: __m256, b: __m256) -> __m256 {
                unsafe { _mm256_add_ps(a, b) }
            }
            #[inline(always)]
            fn mul(self, a: __m256, b: __m256) -> __m256 {
                unsafe { _mm256_mul_ps(a, b) }
            }
            #[inline(always)]
            fn mul_add(self, a: __m256, b: __m256, acc: __m256) -> __m256 {
                unsafe { _mm256_fmadd_ps(a, b, acc) }
            }
            #[inline(always)]
            fn splat(self, value: f32) -> __m256 {
                unsafe { _mm256_set1_ps(value) }
            }
            #[inline(always)]
            fn widen_bytes(self, packed: u64) -> __m256 {
                unsafe {
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(packed as i64)))
                }
            }
            #[inline(always)]
            fn scale_add_lane(
                self,
                acc: __m256,
                sums: __m256i,
                scales: __m256,
                lane: usize,
            ) -> __m256 {
                unsafe {
                    let scale = _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(lane as i32));
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc)
                }
            }
            #[inline(always)]
            unsafe fn load_floats(self, p: *const f32) -> __m256 {
                // SAFETY: caller guarantees 8 readable floats.
                unsafe { _mm256_loadu_ps(p) }
            }
            #[inline(always)]
            unsafe fn read_f16(self, p: *const u8) -> f32 {
                // SAFETY: caller guarantees 2 readable bytes; `vmovd` only writes a register.
                unsafe {
                    let bits = u32::from(p.cast::<u16>().read_unaligned());
                    // `vmovd` zeroes the rest of a fresh register. From intrinsics, LLVM folds
                    // the load into `vpinsrw`, which merges into whatever register it picks:
                    // in the GEMV loops one written by the previous block, which chained every
                    // block of a row to the one before (a Q4_K row took twice as long).
                    let vector: __m128i;
                    std::arch::asm!(
                        "vmovd {vector}, {bits:e}",
                        vector = lateout(xmm_reg) vector,
                        bits = in(reg) bits,
                        options(pure, nomem, nostack, preserves_flags),
                    );
                    _mm_cvtss_f32(_mm_cvtph_ps(vector))
                }
            }
        };
    }

    /// [`IntDot::q4k_dot`] on 256-bit vectors: per sub-block, `vpmaddubsw` pair sums (at most
    /// 2 · 15 · 127, no saturation) times the sub-block's scale in `vpmaddwd` (`VNNI`:
    /// `vpdpwssd`, which also adds).
    ///
    /// # Safety
    /// As [`IntDot::q4k_dot`]; the CPU has AVX2 (and AVX-VNNI if `VNNI`).
    #[inline(always)]
    unsafe fn narrow_q4k_dot<D: IntDot<Bytes = __m256i>, const VNNI: bool>(
        d: D,
        levels: &[__m256i; 8],
        scales: __m256i,
        a: *const u8,
    ) -> [__m256i; 2] {
        // SAFETY: as the caller guarantees.
        unsafe {
            let mut lanes = [_mm256_setzero_si256(); 2];
            for (j, &levels) in levels.iter().enumerate() {
                let pairs = _mm256_maddubs_epi16(levels, d.load(a.add(q4k_activation_offset(j))));
                let scale =
                    _mm256_shuffle_epi8(scales, _mm256_set1_epi16(0x0100 + 0x0202 * j as i16));
                let half = &mut lanes[q4k_lane_half(j)];
                *half = if VNNI {
                    _mm256_dpwssd_avx_epi32(*half, pairs, scale)
                } else {
                    _mm256_add_epi32(*half, _mm256_madd_epi16(pairs, scale))
                };
            }
            lanes
        }
    }

    /// [`IntDot`]'s `Q4_K` scales and dot of a 256-bit level: the eight scales as i16 in both
    /// 128-bit halves, and [`narrow_q4k_dot`] (`VNNI`: with `vpdpwssd`).
    macro_rules! narrow_q4k {
        ($vnni:literal) => {
            type Q4kScales = __m256i;

            #[inline(always)]
            fn q4k_scales(self, packed: u64) -> __m256i {
                unsafe {
                    _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(packed as i64)))
                }
            }
            #[inline(always)]
            unsafe fn q4k_dot(
                self,
                levels: &[__m256i; 8],
                scales: &__m256i,
                a: *const u8,
            ) -> [__m256i; 2] {
                // SAFETY: forwarded; the token proves the level's instructions.
                unsafe { narrow_q4k_dot::<Self, $vnni>(self, levels, *scales, a) }
            }
        };
    }

    impl IntDot for Avx2 {
        common_x86!();
        narrow_pairs!();
        narrow_q4k!(false);
        #[inline(always)]
        fn dot_unsigned(self, w: __m256i, a: __m256i) -> __m256i {
            // Pair sums are at most 2 · 128 · 127 (|a| <= 127), inside i16: no saturation.
            unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1)) }
        }
    }

    impl IntDot for AvxVnni {
        common_x86!();
        narrow_pairs!();
        narrow_q4k!(true);
        #[inline(always)]
        fn dot_unsigned(self, w: __m256i, a: __m256i) -> __m256i {
            unsafe { _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w, a) }
        }
    }

    /// `vpshufb` controls spreading the eight `Q4_K` sub-block scales (as i16, in every 128-bit
    /// lane) over [`Avx512Vnni::Q4kLevels`]: the first sub-block's scale in the low 256 bits, the
    /// second's in the high.
    const Q4K_SCALE_BYTES: [[u8; 64]; 4] = [
        scale_bytes(0, 2),
        scale_bytes(1, 3),
        scale_bytes(4, 6),
        scale_bytes(5, 7),
    ];

    const fn scale_bytes(first: u8, second: u8) -> [u8; 64] {
        let mut bytes = [0; 64];
        let mut i = 0;
        while i < 64 {
            let scale = if i < 32 { first } else { second };
            bytes[i] = 2 * scale + (i % 2) as u8;
            i += 1;
        }
        bytes
    }

    /// Adds the sums of sub-blocks (or blocks) `2·pair` and `2·pair + 1`, the low and the high
    /// half of `sums`, scaled by those lanes of `scales`, to their chains in `chains[pair % 2]`.
    #[inline(always)]
    fn add_pair(chains: &mut [__m512; 2], sums: __m512i, scales: __m256, pair: usize) {
        unsafe {
            let lanes = _mm512_inserti64x4::<1>(
                _mm512_set1_epi32(2 * pair as i32),
                _mm256_set1_epi32(2 * pair as i32 + 1),
            );
            let scale = _mm512_permutexvar_ps(lanes, _mm512_castps256_ps512(scales));
            let chain = &mut chains[pair % 2];
            *chain = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, *chain);
        }
    }

    /// A pair of `Q4_K` sub-blocks, or of `Q8_0`/`Q4_0` blocks, is one 512-bit vector, two
    /// chains per register (low half chain `2·(pair % 2)`, high half the next): half the
    /// instructions of two 256-bit steps, and every lane does the same arithmetic in the same
    /// order, so the results are the 256-bit levels' bit for bit.
    impl IntDot for Avx512Vnni {
        /// 32 registers: 8 rows × 2 chain registers (8 rows took a third less time than two
        /// tiles of 4 for `Q4_0`, 5–10 % less for `Q8_0` and `Q4_K`).
        const ROW_TILE: usize = 8;
        common_x86!();
        #[inline(always)]
        fn dot_unsigned(self, w: __m256i, a: __m256i) -> __m256i {
            unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a) }
        }

        type Chains = [__m512; 2];

        #[inline(always)]
        fn zero_chains(self) -> [__m512; 2] {
            unsafe { [_mm512_setzero_ps(); 2] }
        }

        /// Sub-blocks `[0 | 2]`, `[1 | 3]`, `[4 | 6]`, `[5 | 7]`: the low and the high nibbles
        /// of 64 bytes at a time.
        type Q4kLevels = [__m512i; 4];
        /// The scales of [`Avx512Vnni::Q4kLevels`]' sub-blocks as i16, 16 lanes each.
        type Q4kScales = [__m512i; 4];

        #[inline(always)]
        unsafe fn load_q4k_levels(self, p: *const u8) -> [__m512i; 4] {
            // SAFETY: caller guarantees 128 readable bytes.
            unsafe {
                let mask = _mm512_set1_epi8(0x0f);
                let first = _mm512_loadu_si512(p.cast());
                let second = _mm512_loadu_si512(p.add(64).cast());
                [
                    _mm512_and_si512(first, mask),
                    _mm512_and_si512(_mm512_srli_epi16(first, 4), mask),
                    _mm512_and_si512(second, mask),
                    _mm512_and_si512(_mm512_srli_epi16(second, 4), mask),
                ]
            }
        }
        #[inline(always)]
        fn q4k_scales(self, packed: u64) -> [__m512i; 4] {
            unsafe {
                let scales =
                    _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(packed as i64)));
                let controls = Q4K_SCALE_BYTES.as_ptr().cast::<__m512i>();
                [
                    _mm512_shuffle_epi8(scales, _mm512_loadu_si512(controls)),
                    _mm512_shuffle_epi8(scales, _mm512_loadu_si512(controls.add(1))),
                    _mm512_shuffle_epi8(scales, _mm512_loadu_si512(controls.add(2))),
                    _mm512_shuffle_epi8(scales, _mm512_loadu_si512(controls.add(3))),
                ]
            }
        }
        #[inline(always)]
        unsafe fn q4k_dot(
            self,
            levels: &[__m512i; 4],
            scales: &[__m512i; 4],
            a: *const u8,
        ) -> __m512i {
            // SAFETY: caller guarantees 256 readable bytes at `a`, whose order matches the
            // levels' (see `ActivationLayout::Q4KSuperBlocks`).
            unsafe {
                let activations = a.cast::<__m512i>();
                let pairs = [
                    _mm512_maddubs_epi16(levels[0], _mm512_loadu_si512(activations)),
                    _mm512_maddubs_epi16(levels[1], _mm512_loadu_si512(activations.add(1))),
                    _mm512_maddubs_epi16(levels[2], _mm512_loadu_si512(activations.add(2))),
                    _mm512_maddubs_epi16(levels[3], _mm512_loadu_si512(activations.add(3))),
                ];
                let zero = _mm512_setzero_si512();
                let first = _mm512_dpwssd_epi32(zero, pairs[0], scales[0]);
                let first = _mm512_dpwssd_epi32(first, pairs[1], scales[1]);
                let second = _mm512_dpwssd_epi32(zero, pairs[2], scales[2]);
                let second = _mm512_dpwssd_epi32(second, pairs[3], scales[3]);
                _mm512_add_epi32(first, second)
            }
        }
        type Q4kSums = __m512i;
        type Q4kAccumulator = __m512;

        #[inline(always)]
        fn q4k_zero(self) -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn q4k_scale_add(self, acc: __m512, sums: __m512i, scale: f32) -> __m512 {
            unsafe { _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_set1_ps(scale), acc) }
        }
        #[inline(always)]
        fn q4k_reduce(self, acc: __m512) -> f32 {
            unsafe {
                let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
                self.reduce(_mm256_add_ps(_mm512_castps512_ps256(acc), high))
            }
        }
        /// `(levels, negative)`: `Q8_0` levels as magnitudes, their signs moved to the
        /// activations by a masked negation (AVX-512 has no `vpsignb`); `Q4_0` nibbles as they are.
        type BlockPair = (__m512i, __mmask64);

        #[inline(always)]
        unsafe fn load_block_pair<const SIGNED: bool>(
            self,
            first: *const u8,
            second: *const u8,
        ) -> (__m512i, __mmask64) {
            // SAFETY: forwarded.
            unsafe {
                if SIGNED {
                    let both = _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(self.load(first)),
                        self.load(second),
                    );
                    (_mm512_abs_epi8(both), _mm512_movepi8_mask(both))
                } else {
                    let both = _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(self.load_nibbles(first)),
                        self.load_nibbles(second),
                    );
                    (both, 0)
                }
            }
        }
        #[inline(always)]
        unsafe fn block_pair_step<const SIGNED: bool>(
            self,
            mut chains: [__m512; 2],
            (levels, negative): (__m512i, __mmask64),
            a: *const u8,
            scales: __m256,
            pair: usize,
        ) -> [__m512; 2] {
            // SAFETY: caller guarantees 64 readable bytes at `a`.
            unsafe {
                // |-128| reads back as 128 unsigned; activations are within ±127.
                let activations = _mm512_loadu_si512(a.cast());
                let signed = if SIGNED {
                    _mm512_mask_sub_epi8(activations, negative, _mm512_setzero_si512(), activations)
                } else {
                    activations
                };
                let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), levels, signed);
                add_pair(&mut chains, sums, scales, pair);
            }
            chains
        }
        #[inline(always)]
        fn first_chain_scale_add(
            self,
            [even, odd]: [__m512; 2],
            sums: __m256i,
            scale: f32,
        ) -> [__m512; 2] {
            unsafe {
                let low = self.scale_add(_mm512_castps512_ps256(even), sums, scale);
                [
                    _mm512_mask_mov_ps(even, 0x00ff, _mm512_castps256_ps512(low)),
                    odd,
                ]
            }
        }
        #[inline(always)]
        fn sum_chains(self, [even, odd]: [__m512; 2]) -> __m256 {
            unsafe {
                let high =
                    |v: __m512| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                let c0_c1 = _mm256_add_ps(_mm512_castps512_ps256(even), high(even));
                _mm256_add_ps(_mm256_add_ps(c0_c1, _mm512_castps512_ps256(odd)), high(odd))
            }
        }
    }
}
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512Vnni, AvxVnni};
