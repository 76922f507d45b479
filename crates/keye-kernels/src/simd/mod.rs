//! Instruction-set levels and the vector abstraction every kernel is written against.
//!
//! Each kernel body is one generic `#[inline(always)]` function over [`Simd`]. The `dispatch!`
//! macro instantiates it once per level inside a `#[target_feature]` entry point, so the whole body
//! is compiled with that level's instructions, and picks the instance at run time. Every level
//! therefore runs the same blocking and summation structure; only the vector width differs.

use std::sync::OnceLock;

use half::bf16;

mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

pub(crate) use portable::Portable;

/// The vector instruction set the kernels run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SimdLevel {
    /// Plain Rust on 8-lane arrays; runs on every target.
    Scalar,
    /// x86-64 AVX2 with FMA: 8 f32 lanes, 16 registers.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL: 16 f32 lanes, 32 registers.
    Avx512,
    /// [`SimdLevel::Avx512`] plus AMX tiles with bf16 (Sapphire Rapids and later), which only
    /// the many-row bf16 products use; every other kernel runs its AVX-512 code.
    Amx,
}

/// Environment variable that caps the detected level (`scalar`, `avx2`, `avx512` or `amx`), for
/// comparing levels and for ruling out a miscompiled SIMD path when chasing a numeric difference.
pub const SIMD_LEVEL_ENV: &str = "KEYE_SIMD";

impl SimdLevel {
    /// The level the public kernels use: the best this CPU supports, lowered to the value of
    /// [`SIMD_LEVEL_ENV`] when that is set to a known level name. Detected once per process.
    pub fn detected() -> SimdLevel {
        static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let best = Self::best_supported();
            match std::env::var(SIMD_LEVEL_ENV)
                .ok()
                .as_deref()
                .and_then(Self::from_name)
            {
                Some(cap) => best.min(cap),
                None => best,
            }
        })
    }

    /// Every level this CPU can run, lowest first.
    pub fn supported() -> Vec<SimdLevel> {
        Self::ALL
            .into_iter()
            .filter(|level| level.is_supported())
            .collect()
    }

    /// Whether this CPU has every instruction the level uses.
    pub fn is_supported(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => x86::Avx2::is_supported(),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => x86::Avx512::is_supported(),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Amx => x86::Avx512::is_supported() && crate::amx::is_supported(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Lower-case name, as accepted by [`SIMD_LEVEL_ENV`].
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Amx => "amx",
        }
    }

    fn from_name(name: &str) -> Option<SimdLevel> {
        Self::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(name.trim()))
    }

    const ALL: [SimdLevel; 4] = [
        SimdLevel::Scalar,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
        SimdLevel::Amx,
    ];

    fn best_supported() -> SimdLevel {
        Self::supported().pop().unwrap_or(SimdLevel::Scalar)
    }

    /// The token of the level to actually run: `self` when the CPU supports it, otherwise the
    /// best level it does. Checking here is what makes dispatching on any value sound.
    #[inline]
    pub(crate) fn token(self) -> Token {
        let runnable = if self.is_supported() {
            self
        } else {
            Self::best_supported().min(self)
        };
        match runnable {
            // SAFETY: `runnable` is supported by this CPU.
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Amx => {
                Token::Avx512(unsafe { x86::Avx512::new_unchecked() })
            }
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => Token::Avx2(unsafe { x86::Avx2::new_unchecked() }),
            _ => Token::Portable(Portable),
        }
    }
}

/// A vector token for the level chosen at run time.
pub(crate) enum Token {
    Portable(Portable),
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Avx512),
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `$body` with `$s` bound to the vector token of `$level`, compiled for that level.
///
/// `$body` should call `#[inline(always)]` generic code only: anything it calls out of line is
/// compiled without the level's instructions.
macro_rules! dispatch {
    ($level:expr, |$s:ident| $body:expr) => {
        match $crate::simd::SimdLevel::token($level) {
            #[cfg(target_arch = "x86_64")]
            $crate::simd::Token::Avx512(token) => token.vectorize(
                #[inline(always)]
                |$s| $body,
            ),
            #[cfg(target_arch = "x86_64")]
            $crate::simd::Token::Avx2(token) => token.vectorize(
                #[inline(always)]
                |$s| $body,
            ),
            $crate::simd::Token::Portable($s) => $body,
        }
    };
}
pub(crate) use dispatch;

/// A vector of f32 lanes and the operations the kernels need on it.
///
/// Implemented by zero-sized tokens that can only be obtained when the CPU supports the
/// instructions, so the safe methods are sound. Pointer methods are `unsafe`: the caller
/// guarantees the addressed elements are readable (or writable).
pub(crate) trait Simd: Copy + Send + Sync + 'static {
    /// f32 lanes per vector.
    const LANES: usize;
    /// Architectural vector registers; sizes the register tiles.
    const REGISTERS: usize;

    type V: Copy;

    fn splat(self, x: f32) -> Self::V;
    fn zero(self) -> Self::V {
        self.splat(0.0)
    }

    /// # Safety
    /// `LANES` f32 at `p` are readable.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// Loads the first `len < LANES` lanes and zeroes the rest.
    ///
    /// # Safety
    /// `len` f32 at `p` are readable.
    unsafe fn load_partial(self, p: *const f32, len: usize) -> Self::V;
    /// # Safety
    /// `LANES` f32 at `p` are writable.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// Stores the first `len < LANES` lanes.
    ///
    /// # Safety
    /// `len` f32 at `p` are writable.
    unsafe fn store_partial(self, p: *mut f32, v: Self::V, len: usize);
    /// Loads `LANES` bf16 and widens them exactly to f32.
    ///
    /// # Safety
    /// `LANES` bf16 at `p` are readable.
    unsafe fn load_bf16(self, p: *const bf16) -> Self::V;
    /// Widens the first `len < LANES` bf16 and zeroes the rest.
    ///
    /// # Safety
    /// `len` bf16 at `p` are readable.
    unsafe fn load_bf16_partial(self, p: *const bf16, len: usize) -> Self::V;

    /// Loads `LANES` i8 and converts them to f32.
    ///
    /// # Safety
    /// `LANES` bytes at `p` are readable.
    unsafe fn load_i8(self, p: *const i8) -> Self::V;
    /// Converts the first `len < LANES` i8 and zeroes the rest.
    ///
    /// # Safety
    /// `len` bytes at `p` are readable.
    unsafe fn load_i8_partial(self, p: *const i8, len: usize) -> Self::V;

    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, fused where the level has FMA.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn abs(self, a: Self::V) -> Self::V;
    /// Round to nearest, ties to even.
    fn round(self, a: Self::V) -> Self::V;
    /// `2^n` for lanes holding integers in `-127..=127`; `-127` gives exactly zero.
    fn pow2_int(self, n: Self::V) -> Self::V;
    /// Per lane: `if a < b { if_less } else { otherwise }`.
    fn select_lt(self, a: Self::V, b: Self::V, if_less: Self::V, otherwise: Self::V) -> Self::V;

    fn reduce_sum(self, a: Self::V) -> f32;
    fn reduce_max(self, a: Self::V) -> f32;
}

/// Loads vectors from either weight storage type; lets one kernel serve f32 and bf16 weights.
pub(crate) trait Element: Copy + Send + Sync + 'static {
    /// # Safety
    /// As [`Simd::load`].
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::V;
    /// # Safety
    /// As [`Simd::load_partial`].
    unsafe fn load_partial<S: Simd>(s: S, p: *const Self, len: usize) -> S::V;
}

impl Element for f32 {
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const f32) -> S::V {
        // SAFETY: forwarded caller contract.
        unsafe { s.load(p) }
    }
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const f32, len: usize) -> S::V {
        // SAFETY: forwarded caller contract.
        unsafe { s.load_partial(p, len) }
    }
}

impl Element for bf16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const bf16) -> S::V {
        // SAFETY: forwarded caller contract.
        unsafe { s.load_bf16(p) }
    }
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const bf16, len: usize) -> S::V {
        // SAFETY: forwarded caller contract.
        unsafe { s.load_bf16_partial(p, len) }
    }
}

impl Element for i8 {
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const i8) -> S::V {
        // SAFETY: forwarded caller contract.
        unsafe { s.load_i8(p) }
    }
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const i8, len: usize) -> S::V {
        // SAFETY: forwarded caller contract.
        unsafe { s.load_i8_partial(p, len) }
    }
}

/// Loads `len <= LANES` elements, choosing the full load when it can.
///
/// # Safety
/// `len` elements at `p` are readable.
#[inline(always)]
pub(crate) unsafe fn load_upto<S: Simd, E: Element>(s: S, p: *const E, len: usize) -> S::V {
    // SAFETY: forwarded caller contract.
    unsafe {
        if len == S::LANES {
            E::load(s, p)
        } else {
            E::load_partial(s, p, len)
        }
    }
}

/// Stores `len <= LANES` lanes, choosing the full store when it can.
///
/// # Safety
/// `len` f32 at `p` are writable.
#[inline(always)]
pub(crate) unsafe fn store_upto<S: Simd>(s: S, p: *mut f32, v: S::V, len: usize) {
    // SAFETY: forwarded caller contract.
    unsafe {
        if len == S::LANES {
            s.store(p, v)
        } else {
            s.store_partial(p, v, len)
        }
    }
}
