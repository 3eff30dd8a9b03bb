//! Fewer page faults on large buffers: transparent huge pages for large fresh buffers (outputs,
//! scratch space), and whole ranges faulted in by one system call for buffers of a few megabytes.
//!
//! The first write to each 4 KiB page of a fresh allocation is a page fault. On this project's
//! virtual machines that costs about 2 us a page: filling a fresh 52 MB vector took 26.6 ms with
//! 4 KiB pages and 7 ms once the range was advised for 2 MiB transparent huge pages; the encoded
//! output of a 100 M-weight blob is about that size. A buffer too small to hold an aligned huge
//! page is faulted in by one `madvise` instead: filling a fresh 1.6 MB vector (LeNet's ip1) took
//! about 450-600 us page by page and 170-240 us after `MADV_POPULATE_WRITE`. Linux only; a no-op
//! on other systems.

/// Below this many bytes the advice is not worth a system call.
const MIN_BYTES: usize = 8 << 20;

/// Size of a transparent huge page on x86_64 and most aarch64 kernels.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the capacity of `v` with transparent huge pages. Call it before the
/// memory is first written: pages already touched keep their 4 KiB backing.
pub fn advise_huge_pages<T>(v: &mut Vec<T>) {
    let bytes = v.capacity().saturating_mul(size_of::<T>());
    if bytes >= MIN_BYTES {
        #[cfg(target_os = "linux")]
        advise(v.as_mut_ptr() as usize, bytes, HUGE_PAGE, libc::MADV_HUGEPAGE);
    }
}

/// Below this many bytes faulting a range in ahead is not worth a system call.
const MIN_PREFAULT_BYTES: usize = 64 << 10;

/// Faults in the whole capacity of `v` with one system call, so that the writes that follow
/// take no page faults. For a vector about to be filled to its capacity (a copy, a decode):
/// pages that will never be written would be allocated for nothing.
pub fn prefault_for_writing<T>(v: &mut Vec<T>) {
    let bytes = v.capacity().saturating_mul(size_of::<T>());
    if bytes >= MIN_PREFAULT_BYTES {
        #[cfg(target_os = "linux")]
        advise(v.as_mut_ptr() as usize, bytes, PAGE, libc::MADV_POPULATE_WRITE);
    }
}

/// Maps in, with one system call, the pages under `data` that are not mapped yet: for a large
/// read of a memory-mapped file, which would otherwise fault once per few pages.
pub fn prefault_for_reading<T>(data: &[T]) {
    let bytes = size_of_val(data);
    if bytes >= MIN_PREFAULT_BYTES {
        #[cfg(target_os = "linux")]
        advise(data.as_ptr() as usize, bytes, PAGE, libc::MADV_POPULATE_READ);
    }
}

/// The base page size on x86_64 and the common aarch64 kernels.
#[cfg(target_os = "linux")]
const PAGE: usize = 4 << 10;

/// Gives the kernel `advice` for the whole `unit`-sized, `unit`-aligned blocks inside the `bytes`
/// at `start`, which belong to one allocation or mapping. Blocks at the ends that the range covers
/// only in part (shared with other allocations) are left alone.
#[cfg(target_os = "linux")]
fn advise(start: usize, bytes: usize, unit: usize, advice: libc::c_int) {
    let first = start.next_multiple_of(unit);
    let end = (start + bytes) / unit * unit;
    if end > first {
        // SAFETY: [first, end) lies inside the caller's allocation. MADV_HUGEPAGE and
        // MADV_POPULATE_WRITE/READ change how the kernel backs the range (huge pages, pages
        // faulted in ahead; fresh pages read as zero either way), never what it holds, so no
        // Rust-visible memory changes. A refusal (an old kernel, huge pages disabled) leaves the
        // range as it was, which is why the result is not checked.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, advice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_vectors_keep_their_contents_and_capacity() {
        let mut small: Vec<u8> = Vec::with_capacity(16);
        advise_huge_pages(&mut small);
        small.extend([1, 2, 3]);
        assert_eq!(small, [1, 2, 3]);

        let mut large = vec![7u32; 5 << 20];
        let capacity = large.capacity();
        advise_huge_pages(&mut large);
        assert_eq!(large.capacity(), capacity);
        assert!(large.iter().all(|&x| x == 7));
        large.iter_mut().step_by(4096).for_each(|x| *x = 9);
        assert_eq!(large.iter().filter(|&&x| x == 9).count(), (5 << 20) / 4096);
    }

    #[test]
    fn prefaulted_vectors_keep_their_contents_and_capacity() {
        let mut v: Vec<f32> = Vec::with_capacity(400_000);
        let capacity = v.capacity();
        prefault_for_writing(&mut v);
        assert_eq!(v.capacity(), capacity);
        assert!(v.is_empty());
        v.extend((0..400_000).map(|i| i as f32));
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
        prefault_for_reading(&v[3..]);
        prefault_for_reading(&v[..10]);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
    }
}
