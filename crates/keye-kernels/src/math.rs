//! Vectorised transcendental functions over [`Simd`], accurate to a few f32 ulp, and exact
//! rounding that vectorises.

use crate::simd::Simd;

/// Largest magnitude accepted by [`exp`]: `2^127` is the biggest scale `pow2_int` can build
/// without overflowing, and below `-88` the result is flushed to exactly zero.
const EXP_INPUT_LIMIT: f32 = 88.0;
/// `ln 2` split so that `n * LN2_HIGH` is exact for every `|n| <= 128` (Cody–Waite reduction).
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = -2.121_944_4e-4;

/// `e^x` per lane; exactly 0 at `-inf` (and below -88), saturating at `e^88` above.
#[inline(always)]
pub(crate) fn exp<S: Simd>(s: S, x: S::V) -> S::V {
    let x = s.min(
        s.max(x, s.splat(-EXP_INPUT_LIMIT)),
        s.splat(EXP_INPUT_LIMIT),
    );
    let n = s.round(s.mul(x, s.splat(std::f32::consts::LOG2_E)));
    let r = s.mul_add(n, s.splat(-LN2_HIGH), x);
    let r = s.mul_add(n, s.splat(-LN2_LOW), r);
    // Taylor series of e^r to degree 7: |r| <= ln2/2 makes the truncation error ~5e-9.
    let mut p = s.splat(1.0 / 5040.0);
    for coefficient in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = s.mul_add(p, r, s.splat(coefficient));
    }
    s.mul(p, s.pow2_int(n))
}

/// Inputs of [`exp2`] are clamped to `±EXP2_INPUT_LIMIT`: `2^127` is the biggest scale
/// `pow2_int` builds, and an exponent rounding to `-127` builds exactly zero.
const EXP2_INPUT_LIMIT: f32 = 127.0;

/// `2^r` on `|r| <= 1/2` as `1 + r·q(r)`, `q` of degree 4 with `q(0) = ln 2`: a near-minimax
/// fit of relative error 1.1e-7 (below one f32 ulp) that keeps `2^0 = 1` exact, so a row's
/// largest score weighs 1.
const EXP2_REDUCED: [f32; 5] = [
    std::f32::consts::LN_2,
    0.240_222_83,
    0.055_505_585,
    0.009_669_691,
    0.001_330_059_6,
];

/// `2^y` per lane, for the softmax, which folds `log2(e)` into the score scale
/// (FlashAttention's trick): with no range reduction by `ln 2` to do, it costs two operations
/// and one polynomial term less than [`exp`]. Exactly 0 at `-inf` (and below about -126.5),
/// saturating at `2^127` above.
#[inline(always)]
pub(crate) fn exp2<S: Simd>(s: S, y: S::V) -> S::V {
    let y = s.min(
        s.max(y, s.splat(-EXP2_INPUT_LIMIT)),
        s.splat(EXP2_INPUT_LIMIT),
    );
    let n = s.round(y);
    let r = s.sub(y, n);
    let p = s.mul_add(polynomial(s, &EXP2_REDUCED, r), r, s.splat(1.0));
    s.mul(p, s.pow2_int(n))
}

/// `1 / (1 + e^-x)`, written so that it neither overflows nor loses precision for large `|x|`.
#[inline(always)]
pub(crate) fn sigmoid<S: Simd>(s: S, x: S::V) -> S::V {
    let one = s.splat(1.0);
    s.div(one, s.add(one, exp(s, s.sub(s.zero(), x))))
}

/// `erf(z) / z` on `z² ∈ [0, 1]` as a polynomial in `z²`: a Chebyshev interpolant of degree 6,
/// converted to monomials (max relative error 1.4e-9 before f32 rounding).
const ERF_SMALL: [f32; 7] = [
    std::f32::consts::FRAC_2_SQRT_PI,
    -0.376_126_26,
    0.112_835_97,
    -0.026_854_329,
    0.005_189_312,
    -0.000_801_885_5,
    7.882_497e-5,
];

/// `z·e^(z²)·erfc(z)` for `z >= 1`, as a polynomial in `y = 2/z - 1 ∈ (-1, 1]`: a Chebyshev
/// interpolant of degree 12 (max relative error 7.7e-8 when evaluated in f32).
const ERFC_SCALED_LARGE: [f32; 13] = [
    0.510_791_36,
    -0.083_605_476,
    -0.009_158_574,
    0.014_869_738,
    -0.006_793_217_7,
    0.001_331_239_8,
    0.000_612_244_9,
    -0.000_819_041_16,
    0.000_534_494_6,
    -0.000_177_631_08,
    -7.190_757_6e-5,
    9.817_341e-5,
    -2.781_853_3e-5,
];

#[inline(always)]
fn polynomial<S: Simd>(s: S, coefficients: &[f32], x: S::V) -> S::V {
    coefficients
        .iter()
        .rev()
        .fold(s.zero(), |acc, &c| s.mul_add(acc, x, s.splat(c)))
}

/// `erfc(z)` per lane with small relative error everywhere, including the far tails where
/// `1 - erf(z)` would cancel catastrophically.
#[inline(always)]
pub(crate) fn erfc<S: Simd>(s: S, z: S::V) -> S::V {
    let one = s.splat(1.0);
    let a = s.abs(z);

    let near_zero = s.sub(one, s.mul(z, polynomial(s, &ERF_SMALL, s.mul(z, z))));

    // e^(-a²) with a² split into a rounded square and its exact rounding error, so the
    // exponential does not inherit the square's rounding (it grows with a²).
    let square = s.mul(a, a);
    let square_error = s.mul_add(a, a, s.sub(s.zero(), square));
    let gaussian = s.mul(exp(s, s.sub(s.zero(), square)), s.sub(one, square_error));
    let inverse = s.div(one, a);
    let y = s.sub(s.add(inverse, inverse), one);
    let tail = s.mul(
        gaussian,
        s.mul(inverse, polynomial(s, &ERFC_SCALED_LARGE, y)),
    );
    let signed_tail = s.select_lt(z, s.zero(), s.sub(s.splat(2.0), tail), tail);

    s.select_lt(a, one, near_zero, signed_tail)
}

/// `x.round() as i32` (ties away from zero, C's `roundf`) for `|x| < 2^31`, in operations that
/// vectorise on every x86-64 (a truncating conversion and compares): `f32::round` is a call
/// to libm's `roundf` per value without SSE4.1, which made the 8-bit quantizers a third of a
/// quantized prefill. `x − trunc(x)` is exact, so the result is `roundf`'s bit for bit; NaN
/// gives 0, as `roundf(NaN) as i32` does.
#[inline(always)]
pub(crate) fn round_half_away(x: f32) -> i32 {
    let truncated = x as i32;
    let fraction = x - truncated as f32;
    truncated + i32::from(fraction >= 0.5) - i32::from(fraction <= -0.5)
}
