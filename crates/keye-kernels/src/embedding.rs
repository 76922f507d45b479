//! Embedding lookup: gathers table rows (widened to f32) for a list of token ids.

use crate::error::{KernelError, expect_len, expect_nonzero};
use rayon::prelude::*;

use crate::linear::{Weights, widen_serial};
use crate::quant::dequantize_blocks;
use crate::simd::SimdLevel;

/// `out[i] = table[ids[i]]` for a `[rows, dim]` table, widening bf16 exactly to f32 and decoding
/// quantized rows (`dim` a multiple of the block size).
pub fn gather_rows(
    table: Weights<'_>,
    dim: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    let stored_row = validate(table, dim, ids, out)?;
    let level = SimdLevel::detected();
    ids.par_iter()
        .zip(out.par_chunks_exact_mut(dim))
        .for_each(|(&id, out)| {
            let row = id as usize * stored_row..(id as usize + 1) * stored_row;
            match table {
                Weights::F32(table) => out.copy_from_slice(&table[row]),
                Weights::Bf16(table) => widen_serial(level, &table[row], out),
                Weights::Quantized(ty, table) => dequantize_blocks(ty, &table[row], out),
            }
        });
    Ok(())
}

/// Returns the stored elements per row (bytes for quantized tables).
fn validate(
    table: Weights<'_>,
    dim: usize,
    ids: &[u32],
    out: &[f32],
) -> Result<usize, KernelError> {
    const KERNEL: &str = "gather_rows";
    expect_nonzero(KERNEL, "dim", dim)?;
    let stored_row = match table {
        Weights::Quantized(ty, _) => ty.bytes_for(dim)?,
        _ => dim,
    };
    let rows = table.len() / stored_row;
    expect_len(KERNEL, "table", table.len(), &[rows, stored_row])?;
    expect_len(KERNEL, "out", out.len(), &[ids.len(), dim])?;
    match ids.iter().position(|&id| id as usize >= rows) {
        Some(position) => Err(KernelError::IndexOutOfRange {
            kernel: KERNEL,
            index: ids[position] as usize,
            position,
            rows,
        }),
        None => Ok(stored_row),
    }
}

/// Reference twin of [`gather_rows`]: element by element.
pub fn gather_rows_reference(
    table: Weights<'_>,
    dim: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    let stored_row = validate(table, dim, ids, out)?;
    for (&id, out) in ids.iter().zip(out.chunks_exact_mut(dim)) {
        let start = id as usize * stored_row;
        match table {
            Weights::F32(table) => {
                for (o, &v) in out.iter_mut().zip(&table[start..]) {
                    *o = v;
                }
            }
            Weights::Bf16(table) => {
                for (o, &v) in out.iter_mut().zip(&table[start..]) {
                    *o = v.to_f32();
                }
            }
            Weights::Quantized(ty, table) => {
                crate::quant::dequantize(ty, &table[start..start + stored_row], out)?
            }
        }
    }
    Ok(())
}
