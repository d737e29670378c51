//! The reader never allocates more than a small multiple of the file's size, whatever the file claims.
//! A counting global allocator records the peak bytes live while parsing; everything runs in one test so no
//! other thread allocates meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{tt, vt, Raw};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use quarrel_gguf::Gguf;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated, at peak, beyond what was live before, while parsing `bytes` (the file itself excluded).
fn parse_peak(bytes: &[u8]) -> usize {
    let copy = bytes.to_vec();
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let result = Gguf::from_bytes(copy);
    let peak = PEAK.load(Ordering::SeqCst) - before;
    drop(result);
    peak.saturating_sub(bytes.len())
}

/// The bound: each file byte may become at most one 32-byte `Value` plus index overhead.
fn bound(file_len: usize) -> usize {
    64 * file_len + 64 * 1024
}

fn hostile_files() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    // Claims of many entries or elements, backed by few bytes.
    files.push(Raw::header(3, 1 << 20, 1 << 20).build());
    let mut r = Raw::header(3, 0, 1);
    r.key("k", vt::ARRAY).u32(vt::U8).u64(1 << 24).zeros(1000);
    files.push(r.build());
    let mut r = Raw::header(3, 0, 1);
    r.key("k", vt::STRING).u64(64 << 20).zeros(1000);
    files.push(r.build());
    // Genuinely many small things: the densest encodings.
    let n = 20_000;
    let mut r = Raw::header(3, 0, 1);
    r.key("k", vt::ARRAY).u32(vt::U8).u64(n).zeros(n as usize);
    files.push(r.build());
    let mut r = Raw::header(3, 0, 1);
    r.key("k", vt::ARRAY).u32(vt::ARRAY).u64(n);
    for _ in 0..n {
        r.u32(vt::BOOL).u64(0);
    }
    files.push(r.build());
    let mut r = Raw::header(3, 0, n);
    for i in 0..n {
        r.key(&format!("{i:x}"), vt::U8).u8(0);
    }
    files.push(r.build());
    let mut r = Raw::header(3, n, 0);
    for i in 0..n {
        r.tensor(&format!("{i:x}"), &[1], tt::F32, 32 * i);
    }
    r.pad(32).zeros(32 * n as usize);
    files.push(r.build());
    files
}

#[test]
fn peak_allocation_is_bounded_by_file_size() {
    for (i, file) in hostile_files().iter().enumerate() {
        let peak = parse_peak(file);
        assert!(
            peak <= bound(file.len()),
            "file #{i}: {peak} bytes for a {}-byte file",
            file.len()
        );
    }
    // Random bodies after a header that claims the maximum counts.
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..4096), |body| {
            let mut file = Raw::header(3, 3, 5).build();
            file.extend(body);
            let peak = parse_peak(&file);
            prop_assert!(
                peak <= bound(file.len()),
                "{} bytes for a {}-byte file",
                peak,
                file.len()
            );
            Ok(())
        })
        .unwrap();
}
