//! Vision attention with bf16 products: [`crate::attention_segments`] with `q`, `k`, `v` and the
//! softmax weights rounded to bf16 before they are multiplied, as a bf16 PyTorch model computes
//! them; scores, softmax bookkeeping and sums stay f32.
//!
//! On CPUs with AVX-512 BF16 both products of each key block (scores `q·k` and the weighted sum
//! of values) run on `vdpbf16ps`, in the wide layout of [`crate::attention`] (query rows along the
//! lanes): keys are rounded once per call and their pairs broadcast, values are rounded and
//! transposed once per call (`[head][dim][token]`) so their pairs along the keys are adjacent.
//! Elsewhere, or for an odd head dimension or one above 128, `q`, `k` and `v` are rounded and the
//! f32 kernel runs (the softmax weights then stay f32).

use std::cell::RefCell;

use crate::attention::validate_segments;
use crate::bf16_products::round_to_bf16;
use crate::error::KernelError;
use crate::simd::SimdLevel;

thread_local! {
    static ROUNDED: RefCell<[Vec<f32>; 3]> = RefCell::default();
}

/// [`crate::attention_segments`] with bf16 products (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn attention_segments_bf16_products(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    head_dim: usize,
    cu_seqlens: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_segments_bf16_products_at(
        SimdLevel::detected(),
        q,
        k,
        v,
        heads,
        head_dim,
        cu_seqlens,
        scale,
        out,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_segments_bf16_products_at(
    level: SimdLevel,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    head_dim: usize,
    cu_seqlens: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate_segments(q, k, v, heads, head_dim, cu_seqlens, out)?;
    #[cfg(target_arch = "x86_64")]
    if head_dim.is_multiple_of(2) && head_dim <= x86::MAX_HEAD_DIM && x86::is_supported(level) {
        let problem = x86::Problem {
            q,
            k,
            v,
            heads,
            head_dim,
            cu_seqlens,
            scale,
        };
        if level >= SimdLevel::Amx && SimdLevel::Amx.is_supported() {
            x86::attention_amx(&problem, out);
        } else {
            x86::attention(&problem, out);
        }
        return Ok(());
    }
    // Taken out of the cell, not borrowed, so a nested call on this thread allocates its own.
    let mut rounded = ROUNDED.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    for (target, source) in rounded.iter_mut().zip([q, k, v]) {
        target.clear();
        target.extend(source.iter().map(|&x| round_to_bf16(x)));
    }
    let [q, k, v] = &rounded;
    let result = crate::attention::attention_segments_at(
        level, q, k, v, heads, head_dim, cu_seqlens, scale, out,
    );
    ROUNDED.with(|cell| *cell.borrow_mut() = rounded);
    result
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_and_si512, _mm512_dpbf16_ps, _mm512_fmadd_ps,
        _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mul_ps, _mm512_or_si512, _mm512_set1_epi32,
        _mm512_setzero_ps, _mm512_srli_epi32, _mm512_storeu_ps, _mm512_storeu_si512,
    };
    use std::arch::x86_64::{_mm512_cvtne2ps_pbh, _mm512_permutexvar_epi16};
    use std::ops::Range;

    use rayon::prelude::*;

    use super::*;
    use crate::amx;
    use crate::attention::{MAX_ROWS, RowSet, SoftmaxColumns, segment_tasks, softmax_block_wide};
    use crate::bf16_products::bf16_bits;
    use crate::bf16_products::x86::rounded_bits;
    use crate::math::exp2;
    use crate::parallel::SharedMut;
    use crate::simd::Simd;
    use crate::simd::x86::Avx512;

    const LANES: usize = 16;
    /// Keys per online-softmax step.
    const KEY_BLOCK: usize = 128;
    /// Keys per online-softmax step on AMX tiles.
    const AMX_KEY_BLOCK: usize = 128;
    /// Query panels of [`amx::BLOCK`] rows that take each block of keys and values in turn.
    const PANEL_GROUP: usize = 4;
    /// Tokens one task rounds (and transposes) at a time in the operands' preparation.
    const TOKEN_BLOCK: usize = 64;
    /// Largest head dimension the per-task buffers (on the stack) hold.
    pub(super) const MAX_HEAD_DIM: usize = 128;

    pub(super) fn is_supported(level: SimdLevel) -> bool {
        level >= SimdLevel::Avx512 && is_x86_feature_detected!("avx512bf16")
    }

    thread_local! {
        static OPERANDS: RefCell<[Vec<u16>; 3]> = RefCell::default();
    }

    /// Keys and values rounded once per call, shared by every task.
    struct Operands<'a> {
        /// Keys as `k` lays them out, `[tokens, heads, head_dim]`.
        keys: &'a [u16],
        /// Values transposed: value `(t, h, c)` at `(h·head_dim + c)·value_stride + t`; each row
        /// ends with a zero so that a pair starting at the last token stays inside it.
        values: &'a [u16],
        value_stride: usize,
        heads: usize,
        head_dim: usize,
        scale: f32,
    }

    /// The arguments of one call, validated.
    pub(super) struct Problem<'a> {
        pub q: &'a [f32],
        pub k: &'a [f32],
        pub v: &'a [f32],
        pub heads: usize,
        pub head_dim: usize,
        pub cu_seqlens: &'a [usize],
        pub scale: f32,
    }

    /// Shapes validated; `head_dim` even; the CPU has AVX-512 F and BF16.
    pub(super) fn attention(problem: &Problem<'_>, out: &mut [f32]) {
        let &Problem {
            q,
            k,
            v,
            heads,
            head_dim,
            cu_seqlens,
            scale,
        } = problem;
        let tokens = q.len() / (heads * head_dim);
        let value_stride = tokens + 1;
        let mut buffers = OPERANDS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
        let [_, keys, values] = &mut buffers;
        keys.clear();
        keys.par_extend(k.par_iter().map(|&x| bf16_bits(x)));
        transpose_values(v, heads, head_dim, head_dim, value_stride, values);
        let operands = Operands {
            keys,
            values,
            value_stride,
            heads,
            head_dim,
            scale,
        };
        let row_stride = heads * head_dim;
        let out = SharedMut::new(out);
        segment_tasks(heads, cu_seqlens, MAX_ROWS)
            .into_par_iter()
            .for_each(|(segment, head, queries)| {
                let rows =
                    RowSet::new(queries.map(|t| (t * row_stride + head * head_dim, segment.end)));
                // SAFETY: the CPU supports the instructions (the caller checked); each task owns
                // the output rows of its own (head, queries).
                unsafe { attend(&operands, q, head, &rows, segment, out.get()) };
            });
        OPERANDS.with(|cell| *cell.borrow_mut() = buffers);
    }

    /// Attends `rows` of head `head` to the keys of `segment` and stores the normalised rows.
    ///
    /// # Safety
    /// AVX-512 F and BF16 are supported; no other task writes these rows of `out`.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl,avx2,fma")]
    unsafe fn attend(
        o: &Operands<'_>,
        q: &[f32],
        head: usize,
        rows: &RowSet,
        segment: Range<usize>,
        out: *mut f32,
    ) {
        let d = o.head_dim;
        let pairs = d / 2;
        let padded = rows.len.next_multiple_of(LANES);
        // SAFETY: the CPU has AVX-512 F/BW/VL (the caller checked).
        let s = unsafe { Avx512::new_unchecked() };
        // Queries rounded and transposed into pairs: `[pairs][padded]` words.
        let mut queries = [0u32; MAX_HEAD_DIM / 2 * MAX_ROWS];
        for (r, &offset) in rows.offsets[..rows.len].iter().enumerate() {
            let row = &q[offset..offset + d];
            for p in 0..pairs {
                queries[p * padded + r] =
                    u32::from(bf16_bits(row[2 * p])) | (u32::from(bf16_bits(row[2 * p + 1])) << 16);
            }
        }
        let mut outputs = [0.0f32; MAX_HEAD_DIM * MAX_ROWS];
        let mut scores = [0.0f32; KEY_BLOCK * MAX_ROWS];
        let mut weights = [0u32; KEY_BLOCK / 2 * MAX_ROWS];
        let mut columns = SoftmaxColumns::new();
        let vectors = padded / LANES;

        let mut block = segment.start;
        while block < segment.end {
            let count = KEY_BLOCK.min(segment.end - block);
            // SAFETY: every index below is inside the operands and buffers sized above.
            unsafe {
                let mut j = 0;
                while j < count {
                    let keys = if count - j >= 4 { 4 } else { 1 };
                    let key_rows: [usize; 4] = std::array::from_fn(|i| {
                        ((block + j + i.min(keys - 1)) * o.heads + head) * d
                    });
                    let args = (o.keys, key_rows, queries.as_ptr(), pairs, padded);
                    let target = scores.as_mut_ptr().add(j * padded);
                    pair_sums_of::<false>(keys, vectors, args, target, &[0.0; MAX_ROWS]);
                    j += keys;
                }
                softmax_block_wide(
                    s,
                    &mut scores[..count * padded],
                    padded,
                    count,
                    block,
                    rows,
                    o.scale,
                    &mut columns,
                );
                let weight_pairs = count.div_ceil(2);
                pack_weights(&scores, count, padded, &mut weights);
                let mut c = 0;
                while c < d {
                    let dims = if d - c >= 4 { 4 } else { 1 };
                    let value_rows: [usize; 4] = std::array::from_fn(|i| {
                        (head * d + c + i.min(dims - 1)) * o.value_stride + block
                    });
                    let args = (o.values, value_rows, weights.as_ptr(), weight_pairs, padded);
                    let target = outputs.as_mut_ptr().add(c * padded);
                    pair_sums_of::<true>(dims, vectors, args, target, &columns.correction);
                    c += dims;
                }
            }
            block += count;
        }
        let sums = columns.sums();
        for (r, &offset) in rows.offsets[..rows.len].iter().enumerate() {
            let inverse = 1.0 / sums[r];
            for c in 0..d {
                // SAFETY: this task owns the row at `offset`, `d` floats.
                unsafe { *out.add(offset + c) = outputs[c * padded + r] * inverse };
            }
        }
    }

    /// `values` `[head][rows][stride]`: `v` (`[token][head][head_dim]`) rounded to bf16 and
    /// transposed, zeros in the rows past `head_dim` and the columns past the tokens.
    fn transpose_values(
        v: &[f32],
        heads: usize,
        head_dim: usize,
        rows: usize,
        stride: usize,
        values: &mut Vec<u16>,
    ) {
        let tokens = v.len() / (heads * head_dim);
        values.clear();
        values.resize(heads * rows * stride, 0);
        let target = SharedMut::new(values);
        for_each_token_head(tokens, heads, |t, h| {
            let source = &v[(t * heads + h) * head_dim..][..head_dim];
            for (c, &x) in source.iter().enumerate() {
                // SAFETY: inside `values` ([heads][rows][stride], c < head_dim <= rows,
                // t < tokens <= stride); only this task writes token `t`.
                unsafe { *target.get().add((h * rows + c) * stride + t) = bf16_bits(x) };
            }
        });
    }

    /// `f(token, head)` for every token and head, in parallel by blocks of [`TOKEN_BLOCK`]
    /// tokens, each token in one task: the token-major `[token][head][dim]` operands are read
    /// in order (one value per row at a time, down a column of `v`, missed the cache at every
    /// read: 10 % of the attention's time).
    fn for_each_token_head(tokens: usize, heads: usize, f: impl Fn(usize, usize) + Sync) {
        (0..tokens.div_ceil(TOKEN_BLOCK))
            .into_par_iter()
            .for_each(|block| {
                for t in block * TOKEN_BLOCK..((block + 1) * TOKEN_BLOCK).min(tokens) {
                    for h in 0..heads {
                        f(t, h);
                    }
                }
            });
    }

    /// Queries, keys and values rounded once per call for the AMX tiles, shared by every task.
    /// All are padded with zeros: the head dimension to whole depth steps ([`amx::STEP`]) and
    /// the tokens by one block ([`amx::BLOCK`]), so that a block of keys at the end of a segment
    /// reads only zeros or finite values past it (whose weights are zero).
    struct TileOperands<'a> {
        /// `[head][tokens + BLOCK][depth]`, as the keys.
        queries: &'a [u16],
        /// `[head][tokens + BLOCK][depth]`.
        keys: &'a [u16],
        /// Transposed: `[head][depth][tokens + BLOCK]`.
        values: &'a [u16],
        tokens: usize,
        depth: usize,
    }

    impl TileOperands<'_> {
        fn key_row(&self, head: usize, token: usize) -> usize {
            (head * (self.tokens + amx::BLOCK) + token) * self.depth
        }

        fn value_row(&self, head: usize, dim: usize) -> usize {
            (head * self.depth + dim) * (self.tokens + amx::BLOCK)
        }
    }

    /// [`attention`] with both products of each key block on AMX tiles ([`amx::bf16_blocks`]):
    /// scores of 32 keys × 32 queries land in the wide layout `[key][query]` of the online
    /// softmax, whose weights, rounded into pair words, are the panel of the weighted sum of
    /// values. Queries, keys and values are rounded (the values transposed) once per call, by
    /// blocks of tokens so that `q`, `k` and `v` are read in order; a task takes up to
    /// [`PANEL_GROUP`] panels of 32 queries of one head.
    ///
    /// Shapes validated; `head_dim` even and at most [`MAX_HEAD_DIM`]; AMX is usable.
    pub(super) fn attention_amx(problem: &Problem<'_>, out: &mut [f32]) {
        let &Problem {
            k,
            v,
            heads,
            head_dim,
            cu_seqlens,
            ..
        } = problem;
        let tokens = k.len() / (heads * head_dim);
        let depth = head_dim.next_multiple_of(amx::STEP);
        let padded_tokens = tokens + amx::BLOCK;
        let mut buffers = OPERANDS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
        let [queries, keys, values] = &mut buffers;
        for rows in [&mut *queries, &mut *keys] {
            rows.clear();
            rows.resize(heads * padded_tokens * depth, 0);
        }
        let (query_rows, key_rows) = (SharedMut::new(queries), SharedMut::new(keys));
        for_each_token_head(tokens, heads, |t, h| {
            let source = (t * heads + h) * head_dim;
            let target = (h * padded_tokens + t) * depth;
            for (rows, operand) in [(query_rows, problem.q), (key_rows, k)] {
                for (c, &x) in operand[source..source + head_dim].iter().enumerate() {
                    // SAFETY: inside the buffers sized above; only this task writes token
                    // `t`'s rows.
                    unsafe { *rows.get().add(target + c) = bf16_bits(x) };
                }
            }
        });
        transpose_values(v, heads, head_dim, depth, padded_tokens, values);
        let operands = TileOperands {
            queries,
            keys,
            values,
            tokens,
            depth,
        };
        let row_stride = heads * head_dim;
        let out = SharedMut::new(out);
        segment_tasks(heads, cu_seqlens, PANEL_GROUP * amx::BLOCK)
            .into_par_iter()
            .for_each(|(segment, head, queries)| {
                let panels: [Range<usize>; PANEL_GROUP] = std::array::from_fn(|p| {
                    let first = (queries.start + p * amx::BLOCK).min(queries.end);
                    first..(first + amx::BLOCK).min(queries.end)
                });
                let used = queries.len().div_ceil(amx::BLOCK);
                // SAFETY: AVX-512 and AMX are usable (the caller checked); each task owns the
                // output rows of its own (head, queries).
                unsafe {
                    let out_rows = OutputRows {
                        out: out.get(),
                        row_stride,
                        first: head * head_dim,
                    };
                    attend_amx(&operands, problem, head, &panels[..used], segment, out_rows)
                };
            });
        OPERANDS.with(|cell| *cell.borrow_mut() = buffers);
    }

    /// [`attend`] on AMX tiles for panels of at most [`amx::BLOCK`] rows, at most
    /// [`PANEL_GROUP`] of them: each block of keys and values is multiplied with every panel in
    /// turn while it is in cache.
    ///
    /// # Safety
    /// AVX-512 F/BW/BF16 and AMX are usable; no other task writes these rows of `out`.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl,avx2,fma")]
    unsafe fn attend_amx(
        o: &TileOperands<'_>,
        problem: &Problem<'_>,
        head: usize,
        panels: &[Range<usize>],
        segment: Range<usize>,
        out: OutputRows,
    ) {
        const PANEL: usize = amx::BLOCK;
        const KEY_TILES: usize = AMX_KEY_BLOCK / amx::BLOCK;
        const DIM_BLOCKS: usize = MAX_HEAD_DIM / amx::BLOCK;
        let d = problem.head_dim;
        // SAFETY: the CPU has AVX-512 F/BW/VL (the caller checked).
        let s = unsafe { Avx512::new_unchecked() };
        // Each panel's rounded queries transposed into `[depth / 2][PANEL]`, zeros past `d`
        // and past the rows.
        let mut queries = [[0u32; MAX_HEAD_DIM / 2 * PANEL]; PANEL_GROUP];
        for (queries, tokens) in queries.iter_mut().zip(panels) {
            for (r, t) in tokens.clone().enumerate() {
                let row = &o.queries[o.key_row(head, t)..][..d];
                for (p, pair) in row.chunks_exact(2).enumerate() {
                    queries[p * PANEL + r] = u32::from(pair[0]) | (u32::from(pair[1]) << 16);
                }
            }
        }
        let mut outputs = [[[[0.0f32; PANEL]; amx::BLOCK]; DIM_BLOCKS]; PANEL_GROUP];
        let mut columns: [SoftmaxColumns; PANEL_GROUP] =
            std::array::from_fn(|_| SoftmaxColumns::new());
        let mut scores = [[[0.0f32; PANEL]; amx::BLOCK]; KEY_TILES];
        let mut weights = [0u32; AMX_KEY_BLOCK / 2 * PANEL];
        let mut sums = [[[0.0f32; PANEL]; amx::BLOCK]; DIM_BLOCKS];
        let dim_blocks = o.depth / amx::BLOCK;

        let mut block = segment.start;
        while block < segment.end {
            let count = AMX_KEY_BLOCK.min(segment.end - block);
            let key_tiles = count.div_ceil(amx::BLOCK);
            let value_row_bytes = 2 * (o.tokens + amx::BLOCK);
            for p in 0..panels.len() {
                let columns = &mut columns[p];
                // SAFETY: every operand read is inside the padded keys, values and local
                // buffers (a block's last tile reads at most `BLOCK - 1` tokens past the
                // segment); AMX is usable.
                unsafe {
                    let keys = amx::Bf16Blocks {
                        weights: o.keys[o.key_row(head, block)..].as_ptr(),
                        row_bytes: 2 * o.depth,
                        block_bytes: 2 * o.depth * amx::BLOCK,
                        steps: o.depth / amx::STEP,
                        panel: queries[p].as_ptr(),
                        half_last: false,
                    };
                    amx::bf16_blocks(&keys, &mut scores[..key_tiles]);
                    let flat = scores.as_flattened().as_flattened();
                    softmax_into_pairs(
                        s,
                        &flat[..count * PANEL],
                        problem.scale,
                        columns,
                        &mut weights,
                    );
                    // The tiles read whole steps of keys: the pairs past `count` weigh nothing.
                    weights[count.div_ceil(2) * PANEL..key_tiles * amx::STEP / 2 * PANEL].fill(0);
                    let values = amx::Bf16Blocks {
                        weights: o.values[o.value_row(head, 0) + block..].as_ptr(),
                        row_bytes: value_row_bytes,
                        block_bytes: value_row_bytes * amx::BLOCK,
                        steps: key_tiles,
                        panel: weights.as_ptr(),
                        // 72 dimensions (SigLIP): the third block of 32 holds only 8, its upper
                        // 16 rows are padding.
                        half_last: d + amx::BLOCK / 2 <= o.depth,
                    };
                    amx::bf16_blocks(&values, &mut sums[..dim_blocks]);
                    let correction = [
                        _mm512_loadu_ps(columns.correction.as_ptr()),
                        _mm512_loadu_ps(columns.correction.as_ptr().add(LANES)),
                    ];
                    for (outputs, sums) in outputs[p][..dim_blocks].iter_mut().zip(&sums) {
                        for (output, sum) in outputs.iter_mut().zip(sums) {
                            for (half, &correction) in correction.iter().enumerate() {
                                let at = output.as_mut_ptr().add(half * LANES);
                                let sum = _mm512_loadu_ps(sum.as_ptr().add(half * LANES));
                                _mm512_storeu_ps(
                                    at,
                                    _mm512_fmadd_ps(_mm512_loadu_ps(at), correction, sum),
                                );
                            }
                        }
                    }
                }
            }
            block += count;
        }
        for ((tokens, columns), outputs) in panels.iter().zip(&columns).zip(&outputs) {
            let totals = columns.sums();
            for (r, t) in tokens.clone().enumerate() {
                let inverse = 1.0 / totals[r];
                for c in 0..d {
                    // SAFETY: this task owns query `t`'s output row of this head, `d` floats.
                    unsafe {
                        *out.row(t).add(c) = outputs[c / amx::BLOCK][c % amx::BLOCK][r] * inverse
                    };
                }
            }
        }
    }

    /// Where the attention writes one head's output rows: row `t` at `out + t·row_stride +
    /// first`.
    struct OutputRows {
        out: *mut f32,
        row_stride: usize,
        first: usize,
    }

    impl OutputRows {
        /// # Safety
        /// Token `t` is inside the output.
        unsafe fn row(&self, t: usize) -> *mut f32 {
            // SAFETY: as the caller guarantees.
            unsafe { self.out.add(t * self.row_stride + self.first) }
        }
    }

    /// [`softmax_block_wide`] for a panel of [`amx::BLOCK`] rows that all see every key of the
    /// block (segments without masks, as the vision tower's), fused with [`pack_weights`]: each
    /// pair of keys' weights is rounded into the panel words of the value product as it is
    /// computed, so the f32 weights never go back to memory. The same operations in the same
    /// order as those two, so the same sums and rounded weights (but for weights below the
    /// smallest normal f32, which become 0 here and which the tiles count as 0 either way).
    ///
    /// # Safety
    /// AVX-512 F; `scores` is `[count][amx::BLOCK]` and `weights` holds `count.div_ceil(2)`
    /// rows of [`amx::BLOCK`] words.
    #[inline(always)]
    unsafe fn softmax_into_pairs(
        s: Avx512,
        scores: &[f32],
        scale: f32,
        columns: &mut SoftmaxColumns,
        weights: &mut [u32],
    ) {
        const PANEL: usize = amx::BLOCK;
        let count = scores.len() / PANEL;
        let scale_log2_e = s.splat(scale * std::f32::consts::LOG2_E);
        let scale = s.splat(scale);
        // SAFETY: every access is inside the first `count` score rows and the word rows, and
        // the lanes inside the columns.
        unsafe {
            for lane0 in (0..PANEL).step_by(LANES) {
                let mut block_max = s.splat(f32::NEG_INFINITY);
                for j in 0..count {
                    let x = s.load(scores.as_ptr().add(j * PANEL + lane0));
                    block_max = s.max(block_max, s.mul(x, scale));
                }
                let shift = columns.fold_max(s, lane0, block_max);
                let shift = s.sub(s.zero(), shift);
                let row = |j: usize| scores.as_ptr().add(j * PANEL + lane0);
                let mut block_sum = s.zero();
                for p in 0..count.div_ceil(2) {
                    let low = exp2(s, s.mul_add(s.load(row(2 * p)), scale_log2_e, shift));
                    block_sum = s.add(block_sum, low);
                    let high = if 2 * p + 1 < count {
                        let high = exp2(s, s.mul_add(s.load(row(2 * p + 1)), scale_log2_e, shift));
                        block_sum = s.add(block_sum, high);
                        high
                    } else {
                        s.zero()
                    };
                    // `vcvtne2ps2bf16` rounds to nearest even as `rounded_bits` does; a weight
                    // below the smallest normal f32 becomes 0 instead of a bf16 denormal, which
                    // the tiles count as 0 anyway.
                    let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
                    let word = _mm512_permutexvar_epi16(interleave_halves(), halves);
                    _mm512_storeu_si512(weights.as_mut_ptr().add(p * PANEL + lane0).cast(), word);
                }
                columns.add_sum(s, lane0, block_sum);
            }
        }
    }

    /// Indices that interleave the two halves of 32 values: `[a0, b0, a1, b1, …]` from
    /// `[a0 … a15, b0 … b15]`, so lane `i` holds the pair `(a_i, b_i)`.
    #[inline(always)]
    fn interleave_halves() -> __m512i {
        let indices: [u16; 32] = std::array::from_fn(|i| (i / 2 + 16 * (i % 2)) as u16);
        // SAFETY: 64 bytes of plain data.
        unsafe { std::mem::transmute(indices) }
    }

    /// `(pairs source, the R row starts in it, lane words [pairs][padded], pairs, padded)`.
    type PairProduct<'a> = (&'a [u16], [usize; 4], *const u32, usize, usize);

    /// `target[i][lanes] (+)= Σ_p lanes[p] · pair p of row i` for `R` broadcast rows and `V` lane
    /// vectors; rows of `target` are `padded` apart. When `ACCUMULATE`, adds to `target` scaled
    /// by `correction` per lane: the online softmax's rescaling of earlier outputs, folded into
    /// the load of the accumulators it needs anyway.
    ///
    /// # Safety
    /// AVX-512 F and BF16; every pair and lane word addressed exists.
    #[inline(always)]
    unsafe fn pair_sums<const R: usize, const V: usize, const ACCUMULATE: bool>(
        (source, starts, lanes, pairs, padded): PairProduct<'_>,
        target: *mut f32,
        correction: &[f32; MAX_ROWS],
    ) {
        // SAFETY: forwarded.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            if ACCUMULATE {
                for (i, acc) in acc.iter_mut().enumerate() {
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_mul_ps(
                            _mm512_loadu_ps(target.add(i * padded + v * LANES)),
                            _mm512_loadu_ps(correction.as_ptr().add(v * LANES)),
                        );
                    }
                }
            }
            pair_products::<R, V>(&mut acc, source, starts, lanes, pairs, padded);
            for (i, acc) in acc.iter().enumerate() {
                for (v, &a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(target.add(i * padded + v * LANES), a);
                }
            }
        }
    }

    /// [`pair_sums`] for `rows` (4 or 1) broadcast rows and `vectors` (1 to 4) lane vectors.
    ///
    /// # Safety
    /// As [`pair_sums`].
    #[inline(always)]
    unsafe fn pair_sums_of<const ACCUMULATE: bool>(
        rows: usize,
        vectors: usize,
        args: PairProduct<'_>,
        target: *mut f32,
        correction: &[f32; MAX_ROWS],
    ) {
        // SAFETY: forwarded.
        unsafe {
            match (rows, vectors) {
                (4, 4) => pair_sums::<4, 4, ACCUMULATE>(args, target, correction),
                (4, 3) => pair_sums::<4, 3, ACCUMULATE>(args, target, correction),
                (4, 2) => pair_sums::<4, 2, ACCUMULATE>(args, target, correction),
                (4, _) => pair_sums::<4, 1, ACCUMULATE>(args, target, correction),
                (_, 4) => pair_sums::<1, 4, ACCUMULATE>(args, target, correction),
                (_, 3) => pair_sums::<1, 3, ACCUMULATE>(args, target, correction),
                (_, 2) => pair_sums::<1, 2, ACCUMULATE>(args, target, correction),
                _ => pair_sums::<1, 1, ACCUMULATE>(args, target, correction),
            }
        }
    }

    /// The shared inner loop: no closures, which would not inherit the target features.
    ///
    /// # Safety
    /// As [`pair_sums`].
    #[inline(always)]
    unsafe fn pair_products<const R: usize, const V: usize>(
        acc: &mut [[__m512; V]; R],
        source: &[u16],
        starts: [usize; 4],
        lanes: *const u32,
        pairs: usize,
        padded: usize,
    ) {
        let source = source.as_ptr();
        // SAFETY: as the callers guarantee.
        unsafe {
            for p in 0..pairs {
                let mut words = [_mm512_setzero_ps(); V];
                for (v, word) in words.iter_mut().enumerate() {
                    *word = std::mem::transmute::<__m512i, __m512>(_mm512_loadu_si512(
                        lanes.add(p * padded + v * LANES).cast(),
                    ));
                }
                for (i, acc) in acc.iter_mut().enumerate() {
                    let pair = source.add(starts[i] + 2 * p).cast::<i32>().read_unaligned();
                    let pair = bh(_mm512_set1_epi32(pair));
                    for (a, &word) in acc.iter_mut().zip(&words) {
                        *a = _mm512_dpbf16_ps(
                            *a,
                            bh(std::mem::transmute::<__m512, __m512i>(word)),
                            pair,
                        );
                    }
                }
            }
        }
    }

    /// Rounds the softmax weights `scores` (`[count, padded]`) to bf16 pairs of consecutive
    /// keys, `[count.div_ceil(2)][padded]` words; the pair past an odd `count` gets a zero.
    ///
    /// # Safety
    /// AVX-512 F; the buffers hold `KEY_BLOCK × padded` floats and half as many words.
    #[inline(always)]
    unsafe fn pack_weights(scores: &[f32], count: usize, padded: usize, weights: &mut [u32]) {
        // SAFETY: every access is inside the first `count` score rows and the word rows.
        unsafe {
            for p in 0..count.div_ceil(2) {
                for lane0 in (0..padded).step_by(LANES) {
                    let low =
                        rounded_bits(_mm512_loadu_ps(scores.as_ptr().add(2 * p * padded + lane0)));
                    let high = if 2 * p + 1 < count {
                        rounded_bits(_mm512_loadu_ps(
                            scores.as_ptr().add((2 * p + 1) * padded + lane0),
                        ))
                    } else {
                        _mm512_set1_epi32(0)
                    };
                    let word = _mm512_or_si512(
                        _mm512_srli_epi32::<16>(low),
                        _mm512_and_si512(high, _mm512_set1_epi32(0xffff_0000u32 as i32)),
                    );
                    _mm512_storeu_si512(weights.as_mut_ptr().add(p * padded + lane0).cast(), word);
                }
            }
        }
    }

    #[inline(always)]
    fn bh(v: __m512i) -> __m512bh {
        // SAFETY: both are 512 bits of plain data.
        unsafe { std::mem::transmute(v) }
    }
}
