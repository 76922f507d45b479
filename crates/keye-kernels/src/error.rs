//! The crate's error type: every kernel validates its shapes before touching memory.

/// Why a kernel refused its arguments. No kernel panics on inconsistent shapes; it returns one of
/// these before reading or writing anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A slice does not have the length the other arguments imply.
    #[error("{kernel}: `{operand}` has {actual} elements, expected {expected}")]
    LengthMismatch {
        kernel: &'static str,
        operand: &'static str,
        expected: usize,
        actual: usize,
    },
    /// The product of the given dimensions does not fit in `usize`.
    #[error("{kernel}: the size of `{operand}` overflows usize")]
    SizeOverflow {
        kernel: &'static str,
        operand: &'static str,
    },
    /// A dimension that must be positive is zero.
    #[error("{kernel}: `{parameter}` must be non-zero")]
    ZeroDimension {
        kernel: &'static str,
        parameter: &'static str,
    },
    /// `cu_seqlens` must start at 0, never decrease, and end at the token count.
    #[error(
        "attention_segments: cu_seqlens[{index}] = {value} is invalid (previous {previous}, tokens {tokens})"
    )]
    InvalidSegmentBounds {
        index: usize,
        value: usize,
        previous: usize,
        tokens: usize,
    },
    /// `cu_seqlens` is empty; it needs at least the leading 0.
    #[error("attention_segments: cu_seqlens is empty")]
    EmptySegmentBounds,
    /// Grouped-query attention needs the query heads to be a multiple of the key/value heads.
    #[error(
        "attention_causal: {q_heads} query heads are not a multiple of {kv_heads} key/value heads"
    )]
    HeadsNotGrouped { q_heads: usize, kv_heads: usize },
    /// The cache cannot hold the cached plus the new positions.
    #[error(
        "attention_causal: {past} cached + {new} new positions exceed the cache capacity {capacity}"
    )]
    CacheOverflow {
        past: usize,
        new: usize,
        capacity: usize,
    },
    /// A row index (for example a token id) is outside the table.
    #[error("{kernel}: index {index} at position {position} is outside the {rows} table rows")]
    IndexOutOfRange {
        kernel: &'static str,
        index: usize,
        position: usize,
        rows: usize,
    },
    /// A quantized operand's length is not a whole number of blocks.
    #[error("{quant}: {values} values are not a whole number of {block_values}-value blocks")]
    PartialBlock {
        quant: &'static str,
        values: usize,
        block_values: usize,
    },
    /// The 8-bit-cache attention keeps a head's output row on the stack.
    #[error("attention_causal_compact: head_dim {head_dim} exceeds the supported {max}")]
    HeadDimTooLarge { head_dim: usize, max: usize },
    /// A quantization type name that is not `q8_0`, `q4_0` or `q4_k`.
    #[error("unknown quantization type `{name}` (expected q8_0, q4_0 or q4_k)")]
    UnknownQuantType { name: String },
}

/// `a * b`, or the overflow error naming `operand`.
pub(crate) fn product(
    kernel: &'static str,
    operand: &'static str,
    dims: &[usize],
) -> Result<usize, KernelError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(KernelError::SizeOverflow { kernel, operand })
}

/// Checks that `actual` equals `dims` multiplied out.
pub(crate) fn expect_len(
    kernel: &'static str,
    operand: &'static str,
    actual: usize,
    dims: &[usize],
) -> Result<(), KernelError> {
    let expected = product(kernel, operand, dims)?;
    if actual == expected {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            kernel,
            operand,
            expected,
            actual,
        })
    }
}

/// Checks that a dimension is positive.
pub(crate) fn expect_nonzero(
    kernel: &'static str,
    parameter: &'static str,
    value: usize,
) -> Result<(), KernelError> {
    if value == 0 {
        Err(KernelError::ZeroDimension { kernel, parameter })
    } else {
        Ok(())
    }
}
