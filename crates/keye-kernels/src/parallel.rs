//! Plumbing shared by the parallel kernels: disjoint writes from rayon tasks and reusable
//! per-thread scratch memory.

use std::cell::RefCell;

/// A raw output pointer that rayon tasks share to write *disjoint* elements of one slice, where
/// the disjoint parts are strided and `split_at_mut` cannot express them.
pub(crate) struct SharedMut<T = f32>(*mut T);

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedMut<T> {}

// SAFETY: the pointer is only dereferenced through `SharedMut::get`, whose callers guarantee
// that concurrent tasks write disjoint elements and that the slice outlives the tasks.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub(crate) fn new(slice: &mut [T]) -> Self {
        SharedMut(slice.as_mut_ptr())
    }

    /// # Safety
    /// No other task writes the elements this pointer is used for, and the slice is still
    /// borrowed by the call that created `self`.
    pub(crate) unsafe fn get(self) -> *mut T {
        self.0
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a zeroed scratch slice of `len` floats, reusing this thread's buffer so that
/// hot paths do not allocate once warm. Callers keep `len` bounded by their block sizes.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // Taking the buffer out (instead of borrowing it) keeps a nested call sound: it simply
    // finds an empty buffer and allocates its own.
    let mut buffer = SCRATCH.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    buffer.clear();
    buffer.resize(len, 0.0);
    let result = f(&mut buffer);
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.capacity() < buffer.capacity() {
            *slot = buffer;
        }
    });
    result
}

/// Worker threads available to rayon (at least 1).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}
