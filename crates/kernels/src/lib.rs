//! EdgeBench's CPU kernels, independent of any inference engine: packed f32
//! GEMM/GEMV ([`gemm`]), block-quantized products ([`qkernel`]), softmax
//! ([`softmax`]), activations and product epilogues ([`activation`]),
//! attention ([`attention`]), layer and RMS normalisation ([`norm`]),
//! rotary embeddings ([`rope`]), the thread split they share ([`parallel`]) and a huge-page allocator
//! ([`alloc`]). Each kernel has a portable path and AVX2/AVX-512 paths
//! chosen at run time: each call takes an [`Exec`] (threads and the widest
//! instructions allowed, capped by what the CPU has: [`detected_isa`]).
//! A kernel's x86-64 code lives in its own `x86_64` submodule, compiled
//! for that architecture only.

pub mod activation;
pub mod alloc;
pub mod attention;
pub mod gemm;
pub mod norm;
pub mod parallel;
pub mod qkernel;
pub mod rope;
pub mod softmax;

/// The widest x86-64 vector instructions EdgeBench's kernels use, in
/// increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust (the compiler's own vectorisation): every other CPU.
    Portable,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// AVX-512F (with AVX2 + FMA), 16 lanes: the f32 product kernels.
    Avx512,
}

impl Isa {
    /// Lower-case name, as `--max-isa` and `EDGEBENCH_MAX_ISA` take it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl Isa {
    /// Every level, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The level named `name` ([`Isa::name`]).
    pub fn parse(name: &str) -> Option<Isa> {
        let name = name.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// The widest [`Isa`] this CPU supports (detected once, a fact of the machine).
pub fn detected_isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                return if has!("avx512f") {
                    Isa::Avx512
                } else {
                    Isa::Avx2
                };
            }
        }
        Isa::Portable
    })
}

/// How a kernel call runs: how many threads of the caller's rayon pool it
/// may split over, and the widest instructions it may use. The runtime
/// builds it from its options; nothing about it is process-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exec {
    /// Threads to split over (1: the calling thread alone).
    pub threads: usize,
    /// Instructions to use: at most what the CPU has.
    pub isa: Isa,
}

impl Exec {
    /// `threads` threads and the widest instructions up to `max_isa` that
    /// this CPU has.
    pub fn new(threads: usize, max_isa: Isa) -> Exec {
        Exec {
            threads: threads.max(1),
            isa: detected_isa().min(max_isa),
        }
    }

    /// One thread, the widest instructions this CPU has.
    pub fn single() -> Exec {
        Exec::new(1, Isa::Avx512)
    }

    /// Whether the AVX2+FMA paths run.
    pub fn avx2_fma(self) -> bool {
        self.isa >= Isa::Avx2
    }
}

/// Asks Linux to back the 2 MiB-aligned interior of `bytes` bytes at
/// `ptr` with transparent huge pages (`MADV_HUGEPAGE`, which is what matters
/// where the THP mode is `madvise`). A hint: packed weights are streamed a panel at a
/// time, and with 4 KiB pages every 4 KiB of a stream is a TLB miss. Call
/// it before the memory is first written. Does nothing elsewhere or when
/// the region holds no whole huge page.
pub fn huge_pages(ptr: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside the caller's allocation;
            // MADV_HUGEPAGE changes how pages are backed, never their contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// Hands memory the allocator holds but no longer uses back to the system
/// (glibc's `malloc_trim`): loading a graph frees its decoded protobuf and
/// tract's intermediate models, which glibc otherwise keeps resident. Does
/// nothing on other C libraries.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages; live allocations stay.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Helpers of the kernels' tests (and of the ops' tests above them).
#[doc(hidden)]
pub mod test_util {
    /// Fold step for the largest error: NaN once any error is NaN
    /// (`f32::max` would drop it, and an output never written, or NaN,
    /// would pass).
    pub fn worse(largest: f32, e: f32) -> f32 {
        if e > largest || e.is_nan() {
            e
        } else {
            largest
        }
    }

    /// Largest `|got - want| / (1 + |want|)` (NaN if any value is NaN).
    pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len(), "lengths differ");
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0f32, worse)
    }

    /// `n` deterministic pseudo-random values in [-1, 1].
    pub fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(97));
                ((h >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }
}
