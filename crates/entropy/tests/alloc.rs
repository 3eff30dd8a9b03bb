//! Decoding allocates nothing before the header is checked, and then only what the input justifies: a counting
//! global allocator watches every request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use entropy::{decode, DecodeError};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        LARGEST.fetch_max(layout.size(), Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        LARGEST.fetch_max(new_size, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made and the largest request while `f` runs. The test binary runs its tests on other threads too,
/// so there is one test in this file.
fn watch<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    LARGEST.store(0, Ordering::SeqCst);
    let value = f();
    (
        value,
        ALLOCATIONS.load(Ordering::SeqCst),
        LARGEST.load(Ordering::SeqCst),
    )
}

#[test]
fn hostile_headers_are_refused_before_allocating() {
    // 2^60 symbols claimed in 13 bytes; a payload of 2^62 bytes claimed in 13; a table past the end.
    let huge_count = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 0, 0x10, 0];
    let huge_payload = [1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0, 0x10, 0];
    let (result, allocations, _) = watch(|| decode(&huge_count));
    assert!(
        matches!(result, Err(DecodeError::CountExceedsPayload { .. })),
        "{result:?}"
    );
    assert_eq!(allocations, 0);
    let (result, allocations, _) = watch(|| decode(&huge_payload));
    assert!(
        matches!(result, Err(DecodeError::TruncatedPayload { .. })),
        "{result:?}"
    );
    assert_eq!(allocations, 0);
    let (result, allocations, _) = watch(|| decode(&[5, 1, 200, 0]));
    assert!(matches!(result, Err(DecodeError::Truncated { .. })), "{result:?}");
    assert_eq!(allocations, 0);

    // The most a valid header can claim: 8 one-bit symbols a payload byte. The decoder allocates the output and
    // its 8 KiB lookup table, nothing larger.
    let payload = vec![0u8; 100_000];
    let mut bytes = vec![0x80, 0xea, 0x30, 0xa0, 0x8d, 0x06, 0, 0x10];
    bytes.extend_from_slice(&payload);
    let (result, _, largest) = watch(|| decode(&bytes));
    assert_eq!(result.map(|symbols| symbols.len()), Ok(800_000));
    assert_eq!(largest, 800_000);
}
