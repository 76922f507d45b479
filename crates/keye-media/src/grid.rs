/// Size of one visual item in 14-pixel patches, as one row of `image_grid_thw`/`video_grid_thw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GridThw {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl GridThw {
    pub fn new(t: usize, h: usize, w: usize) -> Self {
        Self { t, h, w }
    }

    /// Number of 14×14 patches, i.e. rows of `pixel_values` for this item.
    pub fn patches(&self) -> usize {
        self.t * self.h * self.w
    }

    /// Number of LLM placeholder tokens after the `merge`×`merge` spatial merge.
    pub fn tokens(&self, merge: usize) -> usize {
        self.patches() / (merge * merge)
    }
}
