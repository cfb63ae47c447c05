//! EdgeBench's CPU kernels, independent of any inference engine: packed f32
//! GEMM/GEMV ([`gemm`]), block-quantized products ([`qkernel`]), softmax
//! ([`softmax`]), activations and product epilogues ([`activation`]),
//! attention ([`attention`]), layer and RMS normalisation ([`norm`]),
//! rotary embeddings ([`rope`]), the thread split they share ([`parallel`]) and a huge-page allocator
//! ([`alloc`]). Each kernel has a portable path, AVX2/AVX-512 paths on
//! x86-64 and a NEON path on AArch64, chosen at run time: each call takes
//! an [`Exec`] (threads and the widest instructions allowed, capped by what
//! the CPU has: [`detected_isa`]). A kernel's code for one architecture
//! lives in its own `x86_64` or `aarch64` submodule, compiled for that
//! architecture only.

pub mod activation;
pub mod alloc;
pub mod attention;
pub mod gemm;
pub mod norm;
pub mod parallel;
pub mod qkernel;
pub mod rope;
pub mod softmax;

/// The widest vector instructions EdgeBench's kernels use. Within one
/// architecture the levels are in increasing order (AArch64's one level
/// sorts below the x86-64 ones); [`Isa::at_most`] caps one level by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust (the compiler's own vectorisation): every other CPU.
    Portable,
    /// AArch64 Advanced SIMD (NEON) with FMA, 4 lanes; no dot-product
    /// instructions (the Cortex-A72 has none, and activations stay f32).
    Neon,
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
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl Isa {
    /// Every level, in [`Isa`]'s order.
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// Vector width tier: 0 portable, 1 AVX2 and NEON, 2 AVX-512.
    fn tier(self) -> u8 {
        match self {
            Isa::Portable => 0,
            Isa::Neon | Isa::Avx2 => 1,
            Isa::Avx512 => 2,
        }
    }

    /// The widest level of this build's architecture that is at most
    /// `self` and at most `max`, comparing levels by tier: a cap named for
    /// the other architecture (`--max-isa avx512` on AArch64, `neon` on
    /// x86-64) allows the levels of the same tier or below, so `avx512`
    /// (the default cap) allows everything and `portable` caps everywhere.
    pub fn at_most(self, max: Isa) -> Isa {
        let tier = self.tier().min(max.tier());
        NATIVE
            .iter()
            .rev()
            .copied()
            .find(|l| l.tier() <= tier)
            .unwrap_or(Isa::Portable)
    }

    /// The level named `name` ([`Isa::name`]).
    pub fn parse(name: &str) -> Option<Isa> {
        let name = name.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// The [`Isa`] levels this build's architecture can run, narrowest first.
const NATIVE: &[Isa] = if cfg!(target_arch = "x86_64") {
    &[Isa::Portable, Isa::Avx2, Isa::Avx512]
} else if cfg!(target_arch = "aarch64") {
    &[Isa::Portable, Isa::Neon]
} else {
    &[Isa::Portable]
};

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
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Isa::Neon;
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
            isa: detected_isa().at_most(max_isa),
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

    /// Whether a vector path of this architecture runs (AVX2 or AVX-512
    /// on x86-64, NEON on AArch64).
    pub fn simd(self) -> bool {
        self.isa != Isa::Portable && NATIVE.contains(&self.isa)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_name_levels_and_keep_to_this_architecture() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse(" NEON "), Some(Isa::Neon));
        assert_eq!(Isa::parse("neon-dotprod"), None);
        let d = detected_isa();
        // `portable` caps everywhere; the default cap (avx512) caps nothing
        assert_eq!(Exec::new(1, Isa::Portable).isa, Isa::Portable);
        assert_eq!(Exec::single().isa, d);
        assert!(!Exec::new(1, Isa::Portable).simd());
        if cfg!(target_arch = "aarch64") {
            assert_eq!(d, Isa::Neon, "an AArch64 CPU has NEON");
            // an x86-64 cap of NEON's tier or above allows NEON
            for cap in [Isa::Neon, Isa::Avx2, Isa::Avx512] {
                assert_eq!(Exec::new(1, cap).isa, Isa::Neon, "{cap:?}");
            }
            assert!(Exec::single().simd() && !Exec::single().avx2_fma());
        } else if cfg!(target_arch = "x86_64") {
            // a NEON cap on x86-64 allows the same tier: AVX2, if present
            assert_eq!(Exec::new(1, Isa::Neon).isa, d.at_most(Isa::Avx2));
            assert_ne!(Exec::new(1, Isa::Neon).isa, Isa::Neon);
            assert_eq!(Exec::single().simd(), d >= Isa::Avx2);
        }
    }

    /// On AArch64 the NEON paths of softmax's `e^x`, the activations and the
    /// quantized products are the ones taken (their bits differ from the
    /// portable code's, which rounds differently); the f32 product's
    /// choice is checked in `gemm`.
    #[test]
    fn neon_paths_are_selected_on_aarch64() {
        if !cfg!(target_arch = "aarch64") {
            eprintln!("skipping: NEON runs on AArch64 only");
            return;
        }
        let isa = Exec::single().isa;
        assert_eq!(isa, Isa::Neon);
        let xs = test_util::data(64, 5);
        let (mut vector, mut plain) = (xs.clone(), xs.clone());
        softmax::exp_row(&mut vector, None, isa);
        softmax::exp_row(&mut plain, None, Isa::Portable);
        assert_ne!(vector, plain, "softmax's e^x");
        for act in [activation::Activation::Gelu, activation::Activation::Silu] {
            let (mut vector, mut plain) = (xs.clone(), xs.clone());
            act.apply(&mut vector, isa);
            act.apply(&mut plain, Isa::Portable);
            assert_ne!(vector, plain, "{act:?}");
        }
        let (n, k) = (8, 64);
        let codes: Vec<u8> = (0..n * k / 2).map(|i| (i * 37 % 251) as u8).collect();
        let scales: Vec<f32> = (0..n * k / 32).map(|i| 0.01 + i as f32 * 1e-3).collect();
        let m = qkernel::PackedMatrix::from_blocks(4, 32, n, k, &codes, &scales, None).unwrap();
        assert!(m.uses_simd());
        let x = test_util::data(k, 6);
        let (mut vector, mut plain) = (vec![0f32; n], vec![0f32; n]);
        m.matmul(&x, &mut vector, Exec::single());
        m.matmul_portable(&x, &mut plain, 1);
        assert_ne!(vector, plain, "quantized gemv");
    }
}
