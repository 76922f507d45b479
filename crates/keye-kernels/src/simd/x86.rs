//! x86-64 levels: AVX2 + FMA and AVX-512 (F, BW, VL).

use std::arch::x86_64::*;

use half::bf16;

use super::Simd;

/// Token proving the CPU has AVX2 and FMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

/// Token proving the CPU has AVX-512 F/BW/VL (and so AVX2 and FMA).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

impl Avx2 {
    pub(crate) fn is_supported() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA ([`Avx2::is_supported`]).
    pub(crate) unsafe fn new_unchecked() -> Self {
        Avx2(())
    }

    /// Runs `f` inside a function compiled with AVX2 and FMA enabled.
    #[inline(always)]
    pub(crate) fn vectorize<R>(self, f: impl FnOnce(Avx2) -> R) -> R {
        #[target_feature(enable = "avx2,fma")]
        fn run<R>(token: Avx2, f: impl FnOnce(Avx2) -> R) -> R {
            f(token)
        }
        // SAFETY: the token exists only if the CPU supports the features.
        unsafe { run(self, f) }
    }
}

impl Avx512 {
    pub(crate) fn is_supported() -> bool {
        Avx2::is_supported()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
    }

    /// # Safety
    /// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA ([`Avx512::is_supported`]).
    pub(crate) unsafe fn new_unchecked() -> Self {
        Avx512(())
    }

    /// Runs `f` inside a function compiled with AVX-512 F/BW/VL enabled.
    #[inline(always)]
    pub(crate) fn vectorize<R>(self, f: impl FnOnce(Avx512) -> R) -> R {
        #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
        fn run<R>(token: Avx512, f: impl FnOnce(Avx512) -> R) -> R {
            f(token)
        }
        // SAFETY: the token exists only if the CPU supports the features.
        unsafe { run(self, f) }
    }
}

// The value intrinsics below need `unsafe` only because these methods are not themselves
// `#[target_feature]` functions; they are always inlined into one that is, and the token in
// `self` proves the CPU supports the instructions.

impl Simd for Avx2 {
    const LANES: usize = 8;
    const REGISTERS: usize = 16;

    type V = __m256;

    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, len: usize) -> __m256 {
        unsafe { _mm256_maskload_ps(p, avx2_lane_mask(len)) }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: __m256, len: usize) {
        unsafe { _mm256_maskstore_ps(p, avx2_lane_mask(len), v) }
    }

    #[inline(always)]
    unsafe fn load_bf16(self, p: *const bf16) -> __m256 {
        unsafe {
            let raw = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)))
        }
    }

    #[inline(always)]
    unsafe fn load_bf16_partial(self, p: *const bf16, len: usize) -> __m256 {
        // AVX2 has no 16-bit masked load; stage the tail through a zeroed buffer.
        let mut raw = [bf16::ZERO; 8];
        unsafe {
            std::ptr::copy_nonoverlapping(p, raw.as_mut_ptr(), len.min(8));
            self.load_bf16(raw.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn load_i8(self, p: *const i8) -> __m256 {
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
    }
    #[inline(always)]
    unsafe fn load_i8_partial(self, p: *const i8, len: usize) -> __m256 {
        let mut raw = [0i8; 8];
        unsafe {
            std::ptr::copy_nonoverlapping(p, raw.as_mut_ptr(), len.min(8));
            self.load_i8(raw.as_ptr())
        }
    }

    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, b) }
    }

    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }

    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_div_ps(a, b) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_max_ps(a, b) }
    }

    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_min_ps(a, b) }
    }

    #[inline(always)]
    fn abs(self, a: __m256) -> __m256 {
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }

    #[inline(always)]
    fn round(self, a: __m256) -> __m256 {
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }

    #[inline(always)]
    fn pow2_int(self, n: __m256) -> __m256 {
        unsafe {
            let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased))
        }
    }

    #[inline(always)]
    fn select_lt(self, a: __m256, b: __m256, if_less: __m256, otherwise: __m256) -> __m256 {
        unsafe { _mm256_blendv_ps(otherwise, if_less, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
    }

    #[inline(always)]
    fn reduce_sum(self, a: __m256) -> f32 {
        unsafe {
            let quad = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
        }
    }

    #[inline(always)]
    fn reduce_max(self, a: __m256) -> f32 {
        unsafe {
            let quad = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let pair = _mm_max_ps(quad, _mm_movehl_ps(quad, quad));
            _mm_cvtss_f32(_mm_max_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
        }
    }
}

/// All-ones in the first `len` 32-bit lanes.
#[inline(always)]
fn avx2_lane_mask(len: usize) -> __m256i {
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(len as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

/// Upper 8 lanes, with AVX-512 F only (the f32x8 extract needs DQ).
#[inline(always)]
fn upper_half(a: __m512) -> __m256 {
    unsafe { _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a))) }
}

/// Bit mask of the first `len < 16` lanes.
#[inline(always)]
fn avx512_lane_mask(len: usize) -> u16 {
    ((1u32 << len) - 1) as u16
}

impl Simd for Avx512 {
    const LANES: usize = 16;
    const REGISTERS: usize = 32;

    type V = __m512;

    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, len: usize) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(avx512_lane_mask(len), p) }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: __m512, len: usize) {
        unsafe { _mm512_mask_storeu_ps(p, avx512_lane_mask(len), v) }
    }

    #[inline(always)]
    unsafe fn load_bf16(self, p: *const bf16) -> __m512 {
        unsafe {
            let raw = _mm256_loadu_si256(p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw)))
        }
    }

    #[inline(always)]
    unsafe fn load_bf16_partial(self, p: *const bf16, len: usize) -> __m512 {
        unsafe {
            let raw = _mm256_maskz_loadu_epi16(avx512_lane_mask(len), p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw)))
        }
    }
    #[inline(always)]
    unsafe fn load_i8(self, p: *const i8) -> __m512 {
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
    }
    #[inline(always)]
    unsafe fn load_i8_partial(self, p: *const i8, len: usize) -> __m512 {
        unsafe {
            let raw = _mm_maskz_loadu_epi8(avx512_lane_mask(len), p.cast());
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw))
        }
    }

    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }

    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }

    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_div_ps(a, b) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }

    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_min_ps(a, b) }
    }

    #[inline(always)]
    fn abs(self, a: __m512) -> __m512 {
        unsafe { _mm512_abs_ps(a) }
    }

    #[inline(always)]
    fn round(self, a: __m512) -> __m512 {
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }

    #[inline(always)]
    fn pow2_int(self, n: __m512) -> __m512 {
        unsafe {
            let biased = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased))
        }
    }

    #[inline(always)]
    fn select_lt(self, a: __m512, b: __m512, if_less: __m512, otherwise: __m512) -> __m512 {
        unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), otherwise, if_less) }
    }

    #[inline(always)]
    fn reduce_sum(self, a: __m512) -> f32 {
        unsafe {
            let oct = _mm256_add_ps(_mm512_castps512_ps256(a), upper_half(a));
            Avx2(()).reduce_sum(oct)
        }
    }

    #[inline(always)]
    fn reduce_max(self, a: __m512) -> f32 {
        unsafe {
            let oct = _mm256_max_ps(_mm512_castps512_ps256(a), upper_half(a));
            Avx2(()).reduce_max(oct)
        }
    }
}
