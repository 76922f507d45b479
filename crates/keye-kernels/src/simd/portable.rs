//! The portable level: 8-lane arrays in plain Rust, which compilers turn into whatever vector
//! instructions the target baseline has (SSE2, NEON) without any runtime detection.

use half::bf16;

use super::Simd;

const LANES: usize = 8;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Portable;

type Lanes = [f32; LANES];

#[inline(always)]
fn map(a: Lanes, f: impl Fn(f32) -> f32) -> Lanes {
    a.map(f)
}

#[inline(always)]
fn zip(a: Lanes, b: Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
    std::array::from_fn(|i| f(a[i], b[i]))
}

impl Simd for Portable {
    const LANES: usize = LANES;
    const REGISTERS: usize = 16;

    type V = Lanes;

    #[inline(always)]
    fn splat(self, x: f32) -> Lanes {
        [x; LANES]
    }

    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> Lanes {
        // SAFETY: caller guarantees LANES readable f32; arrays of f32 have f32 alignment.
        unsafe { p.cast::<Lanes>().read_unaligned() }
    }

    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, len: usize) -> Lanes {
        let mut v = [0.0; LANES];
        // SAFETY: caller guarantees `len` readable f32.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len.min(LANES)) };
        v
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: Lanes) {
        // SAFETY: caller guarantees LANES writable f32.
        unsafe { p.cast::<Lanes>().write_unaligned(v) }
    }

    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: Lanes, len: usize) {
        // SAFETY: caller guarantees `len` writable f32.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p, len.min(LANES)) };
    }

    #[inline(always)]
    unsafe fn load_bf16(self, p: *const bf16) -> Lanes {
        // SAFETY: caller guarantees LANES readable bf16.
        let raw = unsafe { p.cast::<[bf16; LANES]>().read_unaligned() };
        raw.map(bf16::to_f32)
    }

    #[inline(always)]
    unsafe fn load_bf16_partial(self, p: *const bf16, len: usize) -> Lanes {
        let mut raw = [bf16::ZERO; LANES];
        // SAFETY: caller guarantees `len` readable bf16.
        unsafe { std::ptr::copy_nonoverlapping(p, raw.as_mut_ptr(), len.min(LANES)) };
        raw.map(bf16::to_f32)
    }
    #[inline(always)]
    unsafe fn load_i8(self, p: *const i8) -> Lanes {
        // SAFETY: caller guarantees `LANES` readable bytes.
        let raw = unsafe { *p.cast::<[i8; LANES]>() };
        raw.map(f32::from)
    }
    #[inline(always)]
    unsafe fn load_i8_partial(self, p: *const i8, len: usize) -> Lanes {
        let mut raw = [0i8; LANES];
        // SAFETY: caller guarantees `len` readable bytes.
        unsafe { std::ptr::copy_nonoverlapping(p, raw.as_mut_ptr(), len.min(LANES)) };
        raw.map(f32::from)
    }

    #[inline(always)]
    fn add(self, a: Lanes, b: Lanes) -> Lanes {
        zip(a, b, |a, b| a + b)
    }

    #[inline(always)]
    fn sub(self, a: Lanes, b: Lanes) -> Lanes {
        zip(a, b, |a, b| a - b)
    }

    #[inline(always)]
    fn mul(self, a: Lanes, b: Lanes) -> Lanes {
        zip(a, b, |a, b| a * b)
    }

    #[inline(always)]
    fn div(self, a: Lanes, b: Lanes) -> Lanes {
        zip(a, b, |a, b| a / b)
    }

    // Unfused on purpose: without hardware FMA, `f32::mul_add` is a slow library call.
    #[inline(always)]
    fn mul_add(self, a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }

    #[inline(always)]
    fn max(self, a: Lanes, b: Lanes) -> Lanes {
        zip(a, b, |a, b| if a > b { a } else { b })
    }

    #[inline(always)]
    fn min(self, a: Lanes, b: Lanes) -> Lanes {
        zip(a, b, |a, b| if a < b { a } else { b })
    }

    #[inline(always)]
    fn abs(self, a: Lanes) -> Lanes {
        map(a, f32::abs)
    }

    #[inline(always)]
    fn round(self, a: Lanes) -> Lanes {
        map(a, f32::round_ties_even)
    }

    #[inline(always)]
    fn pow2_int(self, n: Lanes) -> Lanes {
        map(n, |n| f32::from_bits(((n as i32 + 127) as u32) << 23))
    }

    #[inline(always)]
    fn select_lt(self, a: Lanes, b: Lanes, if_less: Lanes, otherwise: Lanes) -> Lanes {
        std::array::from_fn(|i| {
            if a[i] < b[i] {
                if_less[i]
            } else {
                otherwise[i]
            }
        })
    }

    #[inline(always)]
    fn reduce_sum(self, a: Lanes) -> f32 {
        // Pairwise, like the hardware levels' shuffle trees.
        let quad: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
        (quad[0] + quad[2]) + (quad[1] + quad[3])
    }

    #[inline(always)]
    fn reduce_max(self, a: Lanes) -> f32 {
        a.into_iter().fold(f32::NEG_INFINITY, f32::max)
    }
}
