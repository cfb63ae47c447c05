//! How models are loaded and run: built once (by the command line from its
//! flags, with environment variables only as defaults), passed to model
//! loading and from there into every EdgeBench op of the graph, and recorded
//! with each run. Nothing here is process-wide.

use crate::ops::quant::Lowering;
use edgebench_kernels::{detected_isa, Exec, Isa};
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

/// How models are loaded and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// Threads of the matrix products (1: the calling thread alone; more:
    /// a pool of the model's own that tract's ops and EdgeBench's kernels share).
    pub threads: usize,
    /// How quantized linear layers (`EbQuantLinear`) are lowered.
    pub lowering: Lowering,
    /// Fuse attention, RoPE and normalisation chains into `EbAttention`,
    /// `EbRope` and `EbNorm` at load.
    pub fuse_attention: bool,
    /// Run f32 linear layers with constant weights on `EbDense`.
    pub dense: bool,
    /// The widest instructions the kernels may use (capped again by what
    /// the CPU has: [`RuntimeOptions::isa`]).
    #[serde(with = "isa_name")]
    pub max_isa: Isa,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            threads: 1,
            lowering: Lowering::Kernel,
            fuse_attention: true,
            dense: true,
            max_isa: Isa::Avx512,
        }
    }
}

/// Environment variables read by [`RuntimeOptions::from_env`].
pub const ENV: [&str; 4] = [
    "EDGEBENCH_QUANT_LOWERING",
    "EDGEBENCH_FUSE_ATTENTION",
    "EDGEBENCH_DENSE",
    "EDGEBENCH_MAX_ISA",
];

impl RuntimeOptions {
    /// The defaults with [`RuntimeOptions::default_threads`] threads (what
    /// the command line uses), overridden by the environment: `EDGEBENCH_QUANT_LOWERING`
    /// (`kernel`, `tract`, `f32`), `EDGEBENCH_FUSE_ATTENTION` and
    /// `EDGEBENCH_DENSE` (`0` turns the rewrite off), `EDGEBENCH_MAX_ISA`
    /// (`avx512`, `avx2`, `neon`, `portable`). An unknown value is an error naming
    /// the variable.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`RuntimeOptions::from_env`] over `var` (a variable's value, if set).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut o = RuntimeOptions {
            threads: Self::default_threads(),
            ..RuntimeOptions::default()
        };
        let bad = |k: &str, v: &str, allowed: &str| format!("{k}={v:?} is not one of {allowed}");
        if let Some(v) = var(ENV[0]) {
            o.lowering =
                Lowering::parse(v.trim()).ok_or_else(|| bad(ENV[0], &v, "kernel, tract, f32"))?;
        }
        for (k, flag) in [(ENV[1], &mut o.fuse_attention), (ENV[2], &mut o.dense)] {
            if let Some(v) = var(k) {
                *flag = match v.trim() {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad(k, &v, "0, 1")),
                };
            }
        }
        if let Some(v) = var(ENV[3]) {
            o.max_isa =
                Isa::parse(&v).ok_or_else(|| bad(ENV[3], &v, "avx512, avx2, neon, portable"))?;
        }
        Ok(o)
    }

    /// The instructions the kernels use: [`RuntimeOptions::max_isa`] capped
    /// by what this CPU has.
    pub fn isa(&self) -> Isa {
        detected_isa().at_most(self.max_isa)
    }

    /// The thread count a command uses unless told otherwise: the machine's
    /// physical cores (as llama.cpp does: a second hardware thread of a core
    /// adds little to matrix products), capped by the CPUs this process may
    /// use (affinity, cgroup quota); 1 when neither is known.
    pub fn default_threads() -> usize {
        let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
        sysinfo::System::physical_core_count()
            .unwrap_or(usable)
            .clamp(1, usable)
    }

    /// Threads and instructions of one kernel call.
    pub fn exec(&self) -> Exec {
        Exec::new(self.threads, self.max_isa)
    }

    /// One line for reports: `2 threads, avx2, quantized: kernel, rewrites: attention, dense`.
    pub fn describe(&self) -> String {
        let rewrites: Vec<&str> = [(self.fuse_attention, "attention"), (self.dense, "dense")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        format!(
            "{} thread{}, {}, quantized: {}, rewrites: {}",
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.isa().name(),
            self.lowering.name(),
            if rewrites.is_empty() {
                "none".to_string()
            } else {
                rewrites.join(", ")
            }
        )
    }

    /// Writes the options into EdgeBench's nodes of `graph` as attributes
    /// (`threads` and `isa` on every op with kernels, `lowering` on
    /// `EbQuantLinear` and `EbRoutedLinear`), which their parsers read: how
    /// the ops run travels with the graph being loaded, not through
    /// process-wide state.
    pub fn annotate(&self, graph: &mut pb::GraphProto) {
        use crate::ops::rewrite::{int_attr, string_attr};
        let kernels = [
            crate::ops::attention::OP_NAME,
            crate::ops::dense::OP_NAME,
            crate::ops::norm::OP_NAME,
            crate::ops::quant::OP_NAME,
            crate::ops::routed::OP_NAME,
        ];
        for node in graph
            .node
            .iter_mut()
            .filter(|n| kernels.contains(&n.op_type.as_str()))
        {
            let mut set = |a: pb::AttributeProto| {
                node.attribute.retain(|x| x.name != a.name);
                node.attribute.push(a);
            };
            set(int_attr("threads", self.threads as i64));
            set(string_attr("isa", self.max_isa.name()));
            if [crate::ops::quant::OP_NAME, crate::ops::routed::OP_NAME]
                .contains(&node.op_type.as_str())
            {
                set(string_attr("lowering", self.lowering.name()));
            }
        }
    }
}

mod isa_name {
    use edgebench_kernels::Isa;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(isa: &Isa, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(isa.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Isa, D::Error> {
        let name = String::deserialize(d)?;
        Isa::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("{name:?} is not avx512, avx2, neon or portable"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_are_defaults_and_unknown_ones_are_errors() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            RuntimeOptions::from_vars(env(&[])).unwrap(),
            RuntimeOptions {
                threads: RuntimeOptions::default_threads(),
                ..RuntimeOptions::default()
            }
        );
        let o = RuntimeOptions::from_vars(env(&[
            ("EDGEBENCH_QUANT_LOWERING", "tract"),
            ("EDGEBENCH_FUSE_ATTENTION", "0"),
            ("EDGEBENCH_MAX_ISA", "portable"),
        ]))
        .unwrap();
        assert_eq!(o.lowering, Lowering::Tract);
        assert!(!o.fuse_attention && o.dense);
        assert_eq!((o.max_isa, o.isa()), (Isa::Portable, Isa::Portable));
        let e = RuntimeOptions::from_vars(env(&[("EDGEBENCH_MAX_ISA", "sse9")])).unwrap_err();
        assert!(e.contains("EDGEBENCH_MAX_ISA") && e.contains("sse9"), "{e}");
        let json = serde_json::to_string(&o).unwrap();
        assert!(json.contains("\"max_isa\":\"portable\""), "{json}");
        assert_eq!(serde_json::from_str::<RuntimeOptions>(&json).unwrap(), o);
    }
}
