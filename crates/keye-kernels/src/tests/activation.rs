use half::bf16;

use super::{assert_close, rng, uniform};
use crate::activation::{gelu_erf_at, gelu_tanh_at, silu_mul_at};
use crate::{
    KernelError, SimdLevel, Weights, gather_rows, gather_rows_reference, gelu_erf_reference,
    gelu_tanh_reference, silu_mul_reference,
};

/// Allowed relative error of an activation value.
const RELATIVE_TOLERANCE: f32 = 1e-5;
/// Below this magnitude the bound becomes absolute: such outputs are negligible downstream.
const ABSOLUTE_FLOOR: f32 = 1e-6;

fn inputs(len: usize) -> Vec<f32> {
    let mut x = uniform(&mut rng(len as u64), len, -12.0, 12.0);
    let specials = [
        0.0, -0.0, 1e-30, -1e-30, 1e-4, -1e-4, 30.0, -30.0, 90.0, -90.0, 1e4, -1e4,
    ];
    for (slot, value) in x.iter_mut().zip(specials) {
        *slot = value;
    }
    x
}

fn relative(expected: &[f32]) -> impl Fn(usize) -> f32 + '_ {
    |i| expected[i].abs().max(ABSOLUTE_FLOOR)
}

#[test]
fn gelu_tanh_matches_reference() {
    for level in SimdLevel::supported() {
        for len in [1, 7, 16, 33, 20_000] {
            let mut got = inputs(len);
            let mut expected = got.clone();
            gelu_tanh_at(level, &mut got);
            gelu_tanh_reference(&mut expected);
            assert_close(
                &got,
                &expected,
                relative(&expected),
                RELATIVE_TOLERANCE,
                &format!("gelu_tanh {level} {len}"),
            );
        }
    }
}

#[test]
fn gelu_erf_matches_reference() {
    for level in SimdLevel::supported() {
        for len in [1, 7, 16, 33, 20_000] {
            let mut got = inputs(len);
            let mut expected = got.clone();
            gelu_erf_at(level, &mut got);
            gelu_erf_reference(&mut expected);
            assert_close(
                &got,
                &expected,
                relative(&expected),
                RELATIVE_TOLERANCE,
                &format!("gelu_erf {level} {len}"),
            );
        }
    }
}

#[test]
fn gelu_erf_matches_independent_values() {
    // 0.5·u·erfc(-u/√2) from Python's math.erfc (double precision).
    let table: [(f32, f64); 12] = [
        (-8.0, -4.976_768_459_417_455_5e-15),
        (-5.0, -1.433_257_859_395_973_1e-6),
        (-3.0, -0.004_049_694_094_890_287),
        (-1.5, -0.100_210_801_903_287_13),
        (-0.5, -0.154_268_769_362_993_44),
        (-0.001, -0.000_499_601_057_786_089),
        (0.0, 0.0),
        (0.001, 0.000_500_398_942_213_911),
        (0.7, 0.530_625_443_443_848_9),
        (1.5, 1.399_789_198_096_713),
        (3.0, 2.995_950_305_905_11),
        (6.0, 5.999_999_994_080_474),
    ];
    let inputs: Vec<f32> = table.iter().map(|&(u, _)| u).collect();
    let expected: Vec<f32> = table.iter().map(|&(_, g)| g as f32).collect();
    for level in SimdLevel::supported() {
        let mut got = inputs.clone();
        gelu_erf_at(level, &mut got);
        // Relative bound without a floor: the far negative tail must be accurate too.
        assert_close(
            &got,
            &expected,
            |i| expected[i].abs(),
            RELATIVE_TOLERANCE,
            &format!("gelu_erf {level}"),
        );
    }
    let mut reference = inputs;
    gelu_erf_reference(&mut reference);
    assert_close(
        &reference,
        &expected,
        |i| expected[i].abs(),
        1e-6,
        "gelu_erf_reference",
    );
}

#[test]
fn silu_mul_matches_reference() {
    for level in SimdLevel::supported() {
        for len in [1, 9, 64, 20_001] {
            let mut got = inputs(len);
            let up = uniform(&mut rng(99), len, -2.0, 2.0);
            let mut expected = got.clone();
            silu_mul_at(level, &mut got, &up).unwrap();
            silu_mul_reference(&mut expected, &up).unwrap();
            assert_close(
                &got,
                &expected,
                relative(&expected),
                RELATIVE_TOLERANCE,
                &format!("silu_mul {level} {len}"),
            );
        }
    }
    let err = crate::silu_mul(&mut [0.0; 3], &[0.0; 2]).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch { operand: "up", .. }
    ));
}

#[test]
fn gather_rows_widens_exactly_and_checks_ids() {
    let (rows, dim) = (50, 37);
    let table_f32 = uniform(&mut rng(5), rows * dim, -1.0, 1.0);
    let table_bf16: Vec<bf16> = table_f32.iter().map(|&v| bf16::from_f32(v)).collect();
    let ids = [3, 0, 49, 3, 17];
    for table in [Weights::F32(&table_f32), Weights::Bf16(&table_bf16)] {
        let mut got = vec![f32::NAN; ids.len() * dim];
        let mut expected = vec![0.0; ids.len() * dim];
        gather_rows(table, dim, &ids, &mut got).unwrap();
        gather_rows_reference(table, dim, &ids, &mut expected).unwrap();
        assert_eq!(got, expected);
    }
    assert_eq!(table_bf16[49 * dim + 2].to_f32(), {
        let mut out = vec![0.0; dim];
        gather_rows(Weights::Bf16(&table_bf16), dim, &[49], &mut out).unwrap();
        out[2]
    });
    let mut out = vec![0.0; 2 * dim];
    let err = gather_rows(Weights::F32(&table_f32), dim, &[1, 50], &mut out).unwrap_err();
    assert_eq!(
        err,
        KernelError::IndexOutOfRange {
            kernel: "gather_rows",
            index: 50,
            position: 1,
            rows
        }
    );
}
