//! Embedding lookup: gathers table rows (widened to f32) for a list of token ids.

use crate::error::{KernelError, expect_len, expect_nonzero};
use rayon::prelude::*;

use crate::linear::{Weights, widen_serial};
use crate::simd::SimdLevel;

/// `out[i] = table[ids[i]]` for a `[rows, dim]` table, widening bf16 exactly to f32.
pub fn gather_rows(
    table: Weights<'_>,
    dim: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate(table, dim, ids, out)?;
    let level = SimdLevel::detected();
    ids.par_iter()
        .zip(out.par_chunks_exact_mut(dim))
        .for_each(|(&id, out)| {
            let row = id as usize * dim..(id as usize + 1) * dim;
            match table {
                Weights::F32(table) => out.copy_from_slice(&table[row]),
                Weights::Bf16(table) => widen_serial(level, &table[row], out),
            }
        });
    Ok(())
}

fn validate(table: Weights<'_>, dim: usize, ids: &[u32], out: &[f32]) -> Result<(), KernelError> {
    const KERNEL: &str = "gather_rows";
    expect_nonzero(KERNEL, "dim", dim)?;
    let rows = table.len() / dim;
    expect_len(KERNEL, "table", table.len(), &[rows, dim])?;
    expect_len(KERNEL, "out", out.len(), &[ids.len(), dim])?;
    match ids.iter().position(|&id| id as usize >= rows) {
        Some(position) => Err(KernelError::IndexOutOfRange {
            kernel: KERNEL,
            index: ids[position] as usize,
            position,
            rows,
        }),
        None => Ok(()),
    }
}

/// Reference twin of [`gather_rows`]: element by element.
pub fn gather_rows_reference(
    table: Weights<'_>,
    dim: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate(table, dim, ids, out)?;
    for (&id, out) in ids.iter().zip(out.chunks_exact_mut(dim)) {
        for (c, o) in out.iter_mut().enumerate() {
            let at = id as usize * dim + c;
            *o = match table {
                Weights::F32(table) => table[at],
                Weights::Bf16(table) => table[at].to_f32(),
            };
        }
    }
    Ok(())
}
