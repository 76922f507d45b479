//! 3-D position ids for the LLM (`get_rope_index`): a pure function of the token ids and the
//! visual grids, so budgeting and tests need no model.

use keye_media::GridThw;

use crate::error::{Error, Result};

/// One video vision block: its patch grid and, for the Preview's time-tied temporal ids, the
/// seconds covered by one temporal grid step (`1/fps`). Keye-VL-1.5 passes single frames (t = 1),
/// for which the temporal offset is always 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoBlock {
    pub grid: GridThw,
    pub seconds_per_grid: f32,
}

/// What `rope_index` needs besides the ids.
#[derive(Clone, Copy, Debug)]
pub struct PositionSpec {
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub spatial_merge_size: usize,
    pub tokens_per_second: usize,
}

/// Per-token `[t, h, w]` positions of a prompt and the delta that continues them while decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Positions {
    pub ids: Vec<[i64; 3]>,
    /// `max(position) + 1 − prompt length`: a token decoded at cache index `c` sits at `c + delta`.
    pub rope_delta: i64,
}

impl Positions {
    /// The `[3, L]` row-major layout of the references' `position_ids`.
    pub fn to_rows(&self) -> Vec<i64> {
        (0..3)
            .flat_map(|axis| self.ids.iter().map(move |p| p[axis]))
            .collect()
    }
}

/// Walks the prompt: text tokens advance all three axes together; a vision block of LLM grid
/// `(T, H, W)` places token `(τ, u, v)` at `(next + time(τ), next + u, next + v)` and continues
/// after its largest position. Blocks are matched to placeholder runs in prompt order, choosing
/// between the next image and the next video by which placeholder comes first.
pub fn rope_index(
    input_ids: &[u32],
    spec: &PositionSpec,
    images: &[GridThw],
    videos: &[VideoBlock],
) -> Result<Positions> {
    let merge = spec.spatial_merge_size;
    let mut ids: Vec<[i64; 3]> = Vec::with_capacity(input_ids.len());
    let mut next: i64 = 0;
    let mut cursor = 0usize;
    let (mut image_iter, mut video_iter) = (images.iter(), videos.iter());
    let (mut pending_image, mut pending_video) = (image_iter.next(), video_iter.next());

    let find = |token: u32, from: usize| {
        input_ids[from..]
            .iter()
            .position(|&t| t == token)
            .map(|p| p + from)
    };

    while pending_image.is_some() || pending_video.is_some() {
        let image_at = pending_image.and(find(spec.image_token_id, cursor));
        let video_at = pending_video.and(find(spec.video_token_id, cursor));
        let (start, grid, seconds_per_grid) = match (image_at, video_at) {
            (Some(i), Some(v)) if i < v => (i, *pending_image.expect("checked"), 0.0),
            (Some(i), None) => (i, *pending_image.expect("checked"), 0.0),
            (_, Some(v)) => {
                let block = pending_video.expect("checked");
                (v, block.grid, block.seconds_per_grid)
            }
            (None, None) => {
                return Err(Error::InvalidInput(
                    "fewer image/video placeholder tokens in the prompt than visual items".into(),
                ));
            }
        };
        let is_image = image_at == Some(start);
        for _ in cursor..start {
            ids.push([next; 3]);
            next += 1;
        }
        let (t, h, w) = (grid.t, grid.h / merge, grid.w / merge);
        let block_len = t * h * w;
        let token = if is_image {
            spec.image_token_id
        } else {
            spec.video_token_id
        };
        if start + block_len > input_ids.len()
            || input_ids[start..start + block_len]
                .iter()
                .any(|&id| id != token)
        {
            return Err(Error::InvalidInput(format!(
                "a visual item of grid {}x{}x{} needs {block_len} consecutive placeholder tokens at position {start}",
                grid.t, grid.h, grid.w
            )));
        }
        let mut block_max = next;
        for tau in 0..t {
            let time = if is_image {
                0
            } else {
                // The reference multiplies in f32 and truncates: `(τ·s)·tokens_per_second`.
                ((tau as f32 * seconds_per_grid) * spec.tokens_per_second as f32) as i64
            };
            for u in 0..h {
                for v in 0..w {
                    let p = [next + time, next + u as i64, next + v as i64];
                    block_max = block_max.max(p[0]).max(p[1]).max(p[2]);
                    ids.push(p);
                }
            }
        }
        next = block_max + 1;
        cursor = start + block_len;
        if is_image {
            pending_image = image_iter.next();
        } else {
            pending_video = video_iter.next();
        }
    }
    for &id in &input_ids[cursor..] {
        if id == spec.image_token_id || id == spec.video_token_id {
            return Err(Error::InvalidInput(
                "more image/video placeholder tokens in the prompt than visual items".into(),
            ));
        }
        ids.push([next; 3]);
        next += 1;
    }
    let rope_delta = next - input_ids.len() as i64;
    Ok(Positions { ids, rope_delta })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: PositionSpec = PositionSpec {
        image_token_id: 9,
        video_token_id: 8,
        spatial_merge_size: 2,
        tokens_per_second: 2,
    };

    #[test]
    fn image_block_matches_the_worked_example() {
        // 4×6 patches → 2×3 tokens after a prefix of 3 text tokens, then one text token.
        let ids = [1, 2, 3, 9, 9, 9, 9, 9, 9, 4];
        let pos = rope_index(&ids, &SPEC, &[GridThw::new(1, 4, 6)], &[]).unwrap();
        let rows: Vec<[i64; 3]> = pos.ids;
        assert_eq!(&rows[..3], &[[0; 3], [1; 3], [2; 3]]);
        assert_eq!(
            &rows[3..9],
            &[
                [3, 3, 3],
                [3, 3, 4],
                [3, 3, 5],
                [3, 4, 3],
                [3, 4, 4],
                [3, 4, 5]
            ]
        );
        assert_eq!(rows[9], [6; 3]);
        assert_eq!(pos.rope_delta, 7 - 10);
    }

    #[test]
    fn preview_video_time_ids_follow_seconds() {
        // fps 1.5 → s = 1/1.5 in f32; temporal ids trunc(τ·s·2) = 0,1,2,4,5,6 (fixtures README).
        let grid = GridThw::new(6, 2, 2);
        let ids = vec![8u32; 6];
        let block = VideoBlock {
            grid,
            seconds_per_grid: 1.0f32 / 1.5,
        };
        let pos = rope_index(&ids, &SPEC, &[], &[block]).unwrap();
        let temporal: Vec<i64> = pos.ids.iter().map(|p| p[0]).collect();
        assert_eq!(temporal, vec![0, 1, 2, 4, 5, 6]);
    }

    #[test]
    fn placeholder_count_mismatch_is_an_error() {
        let ids = [1, 9, 9, 9];
        assert!(rope_index(&ids, &SPEC, &[GridThw::new(1, 4, 4)], &[]).is_err());
        let ids = [1, 9, 9, 9, 9, 9];
        assert!(rope_index(&ids, &SPEC, &[GridThw::new(1, 2, 4)], &[]).is_err());
    }
}
