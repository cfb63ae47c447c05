//! How EdgeBench's kernels spread one product over rayon's pool.

use rayon::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Runs `f` over ranges that together cover `0..len` exactly once, on up
/// to `rayon::current_num_threads()` threads when `threads > 1` (each range
/// at least `min` long, so small products stay on one thread).
///
/// Ranges are claimed by guided self-scheduling: each claim takes a
/// `1 / (2 · tasks)` share of what is left (at least `min`, rounded up to a
/// multiple of `unit`), so claims shrink towards the end. A thread that runs
/// slower, on a host core busy with someone else's work, takes fewer claims
/// instead of holding the whole product up, as static halves did (on this
/// 2-vCPU host: 5-15 % on prefill products while the host was busy, timed
/// in turns; equal when it was quiet).
pub fn guided(
    len: usize,
    threads: usize,
    min: usize,
    unit: usize,
    f: impl Fn(Range<usize>) + Sync,
) {
    let (min, unit) = (min.max(1), unit.max(1));
    let tasks = if threads > 1 {
        rayon::current_num_threads().min(len / min).max(1)
    } else {
        1
    };
    if tasks == 1 {
        if len > 0 {
            f(0..len);
        }
        return;
    }
    let next = AtomicUsize::new(0);
    (0..tasks).into_par_iter().for_each(|_| {
        let mut start = next.load(Relaxed);
        while start < len {
            let size = ((len - start) / (2 * tasks))
                .max(min)
                .next_multiple_of(unit);
            let end = (start + size).min(len);
            match next.compare_exchange_weak(start, end, Relaxed, Relaxed) {
                Ok(_) => {
                    f(start..end);
                    start = next.load(Relaxed);
                }
                Err(now) => start = now,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn claims(len: usize, threads: usize, min: usize, unit: usize) -> Vec<Range<usize>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let seen = Mutex::new(Vec::new());
        pool.install(|| guided(len, threads, min, unit, |r| seen.lock().unwrap().push(r)));
        let mut v = seen.into_inner().unwrap();
        v.sort_by_key(|r| r.start);
        v
    }

    #[test]
    fn ranges_cover_everything_once() {
        for (len, threads, min, unit) in [
            (0, 2, 1, 1),
            (1, 2, 1, 1),
            (36, 2, 1, 4),
            (3072, 3, 5, 1),
            (97, 2, 1, 1),
        ] {
            let v = claims(len, threads, min, unit);
            let mut at = 0;
            for r in &v {
                assert_eq!(r.start, at, "gap or overlap at {at} in {v:?}");
                assert!(r.end > r.start);
                at = r.end;
            }
            assert_eq!(at, len, "{v:?}");
        }
    }

    #[test]
    fn claims_shrink_and_respect_min_and_unit() {
        let v = claims(3072, 2, 1, 1);
        // first claim a quarter of all, later ones smaller
        assert_eq!(v[0], 0..768);
        assert!(v.len() > 8, "{v:?}");
        assert!(v.last().unwrap().len() < 8);
        // all but the last claim a multiple of the unit, none below min
        let v = claims(100, 2, 6, 4);
        for r in &v[..v.len() - 1] {
            assert!(r.len() >= 6 && r.len() % 4 == 0, "{v:?}");
        }
    }

    #[test]
    fn one_thread_or_tiny_work_is_one_call() {
        assert_eq!(claims(50, 1, 1, 1), vec![0..50]);
        assert_eq!(claims(50, 2, 40, 1), vec![0..50]);
    }
}
