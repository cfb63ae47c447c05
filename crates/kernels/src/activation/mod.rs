//! Element-wise work that `EbDense` applies to its outputs while they are
//! still in cache (`dense::fuse_graph` folds the written ops into the
//! product): BERT's exact GELU and Llama's SiLU, then an element-wise `Add`
//! or `Mul` with a tensor of the output's shape (a residual connection,
//! SwiGLU's gate times up).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

/// An activation applied to every output of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `x Φ(x) = x (1 + erf(x / √2)) / 2`.
    Gelu,
    /// `x σ(x) = x / (1 + e^-x)`.
    Silu,
}

impl Activation {
    /// Name in the `activation` attribute of an `EbDense` node.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
        }
    }

    /// The activation named `name` ([`Activation::name`]).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "silu" => Some(Activation::Silu),
            _ => None,
        }
    }

    /// Applies the activation to every value of `x` in place, with
    /// instructions up to `isa`.
    pub fn apply(self, x: &mut [f32], isa: super::Isa) {
        #[cfg(target_arch = "x86_64")]
        if isa >= super::Isa::Avx2 {
            // SAFETY: AVX2 and FMA are present (checked above).
            unsafe { x86_64::apply_avx2(self, x) };
            return;
        }
        #[cfg(target_arch = "aarch64")]
        if isa == super::Isa::Neon {
            // SAFETY: NEON is present (`isa` is at most what the CPU has).
            unsafe { aarch64::apply_neon(self, x) };
            return;
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = isa;
        for v in x {
            *v = self.one(*v);
        }
    }

    /// One value, in plain f32 (the portable path and the vector tail).
    fn one(self, x: f32) -> f32 {
        match self {
            Activation::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::Silu => x / (1.0 + (-x).exp()),
        }
    }
}

/// An element-wise operation with a second tensor of the output's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binary {
    /// `y + other` (a residual connection).
    Add,
    /// `y · other` (SwiGLU: `silu(gate) · up`).
    Mul,
}

impl Binary {
    /// Name in the `then` attribute of an `EbDense` node, and the ONNX op it replaces.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "Add",
            Binary::Mul => "Mul",
        }
    }

    /// The operation named `name` ([`Binary::name`]).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "Add" => Some(Binary::Add),
            "Mul" => Some(Binary::Mul),
            _ => None,
        }
    }

    /// `y[i] = y[i] op other[i]`.
    ///
    /// # Panics
    /// When the lengths differ.
    pub fn apply(self, y: &mut [f32], other: &[f32]) {
        assert_eq!(
            y.len(),
            other.len(),
            "operands of {} differ in length",
            self.name()
        );
        match self {
            Binary::Add => y.iter_mut().zip(other).for_each(|(a, b)| *a += b),
            Binary::Mul => y.iter_mut().zip(other).for_each(|(a, b)| *a *= b),
        }
    }
}

/// What a product does to its outputs once summed: the activation, then
/// the binary operation with `other` (laid out as the output, `[m, n]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Applied first.
    pub act: Option<Activation>,
    /// Then `y = y op other`.
    pub then: Option<(Binary, &'a [f32])>,
}

impl Epilogue<'_> {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.act.is_none() && self.then.is_none()
    }
}

// Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) e^(-x^2),
// t = 1 / (1 + p x) for x >= 0; absolute error below 1.5e-7.
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_8,
    -1.453_152_1,
    1.061_405_4,
];

/// `erf(x)` by A&S 7.1.26 (odd symmetry for negative `x`).
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let poly = ERF_A.iter().rev().fold(0.0, |acc, &c| acc * t + c) * t;
    let y = 1.0 - poly * (-a * a).exp();
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths: 9 values (8 on the vector path where present, 1 tail)
    /// and the plain path alone.
    fn both(act: Activation, xs: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mut fast = Vec::new();
        for &x in xs {
            let mut v = [x; 9];
            act.apply(&mut v, crate::detected_isa());
            assert_eq!(v[0].to_bits(), v[7].to_bits());
            fast.push(v[0]);
        }
        let plain = xs.iter().map(|&x| act.one(x)).collect();
        (fast, plain)
    }

    #[test]
    fn gelu_matches_hand_checked_values() {
        // x Φ(x) with Φ(0.5) = 0.691462461, Φ(1) = 0.841344746,
        // Φ(2) = 0.977249868, Φ(3) = 0.998650102 (normal tables)
        let cases = [
            (0.0, 0.0),
            (0.5, 0.345_731_23),
            (1.0, 0.841_344_7),
            (-1.0, -0.158_655_25),
            (2.0, 1.954_499_7),
            (-2.0, -0.045_500_26),
            (3.0, 2.995_950_3),
            (-3.0, -0.004_049_69),
            (-12.0, 0.0),
            (12.0, 12.0),
        ];
        let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
        let (fast, plain) = both(Activation::Gelu, &xs);
        for (i, &(x, want)) in cases.iter().enumerate() {
            for got in [fast[i], plain[i]] {
                assert!(
                    (got - want).abs() < 3e-7 * (1.0 + x.abs()),
                    "gelu({x}) = {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn silu_matches_its_definition_and_never_overflows() {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.25).collect();
        let (fast, plain) = both(Activation::Silu, &xs);
        for (i, &x) in xs.iter().enumerate() {
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            for got in [fast[i], plain[i]] {
                assert!(
                    (got as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                    "silu({x}) = {got}, want {want}"
                );
            }
        }
        let mut v = [-1e30f32, 1e30, -200.0, 200.0, 0.0, -0.0, 1.0, -1.0];
        Activation::Silu.apply(&mut v, crate::detected_isa());
        assert_eq!(v[..4], [-0.0, 1e30, -0.0, 200.0]);
        assert!((v[6] - 0.731_058_6).abs() < 1e-7 && (v[7] + 0.268_941_4).abs() < 1e-7);
    }

    #[test]
    fn names_round_trip() {
        for a in [Activation::Gelu, Activation::Silu] {
            assert_eq!(Activation::parse(a.name()), Some(a));
        }
        assert_eq!(Activation::parse("relu"), None);
    }
}
