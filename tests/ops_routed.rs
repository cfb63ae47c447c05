//! `EbRoutedLinear` executed by tract (plain and optimised) against
//! `routed::reference`, over random shapes, row counts (every kernel path),
//! set counts, widths (f32 included), route patterns, lowerings and thread
//! counts; a single set against `EbQuantLinear` bit for bit; an unserved
//! route at run time.

use edgebench::model::Runner;
use edgebench::onnx::{encode, layers::transpose, Dim, Elem, GraphBuilder};
use edgebench::ops::quant::{self, Lowering, QuantFormat, QuantMatrix, BITS};
use edgebench::ops::routed::{self, RoutedSet, SetWeights, F32_BITS};
use edgebench::runtime::RuntimeOptions;
use proptest::prelude::*;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// xorshift values in [-1, 1].
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f32 {
        (self.next() % 2001) as f32 / 1000.0 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A weight set: `bits` (or [`F32_BITS`]) and asymmetric blocks.
#[derive(Debug, Clone, Copy)]
struct SetDef {
    bits: usize,
    asym: bool,
}

/// Which set each row goes to.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// Every row to the last set.
    AllLast,
    /// Row `i` to set `i % S`.
    Alternating,
    /// Random, never set 0 (a set with no rows).
    SkipFirst,
    Random,
}

const PATTERNS: [Pattern; 4] = [
    Pattern::AllLast,
    Pattern::Alternating,
    Pattern::SkipFirst,
    Pattern::Random,
];

#[derive(Debug, Clone)]
struct Case {
    k: usize,
    n: usize,
    block: usize,
    rows: usize,
    sets: Vec<SetDef>,
    pattern: Pattern,
    lowering: Lowering,
    threads: usize,
    seed: u64,
}

/// The route values served by `s` sets: distinct, in no particular order
/// (GEM's general pathway is 8).
fn route_values(s: usize) -> Vec<i64> {
    [8, 0, 3, 1, 7, 2, 6, 4, 5][..s].to_vec()
}

fn outputs(
    plan: Arc<TypedRunnableModel>,
    threads: usize,
    inputs: TVec<TValue>,
) -> TractResult<Vec<Vec<f32>>> {
    let out = Runner::new(threads).unwrap().run(&plan, inputs)?;
    Ok(out
        .iter()
        .map(|t| {
            t.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect())
}

/// Loads `model` with `options`; runs it typed and optimised on `inputs`.
fn run_both(
    model: &tract_onnx::pb::ModelProto,
    options: RuntimeOptions,
    inputs: &[Tensor],
) -> TractResult<[Vec<Vec<f32>>; 2]> {
    let onnx = edgebench::ops::onnx();
    let mut proto = onnx.proto_model_for_read(&mut encode(model).as_slice())?;
    options.annotate(proto.graph.as_mut().unwrap());
    let m = onnx.model_for_proto_model(&proto)?;
    let tv = || inputs.iter().cloned().map(Tensor::into_tvalue).collect();
    let plain = outputs(
        m.clone().into_typed()?.into_runnable()?,
        options.threads,
        tv(),
    )?;
    let opt = outputs(m.into_optimized()?.into_runnable()?, options.threads, tv())?;
    Ok([plain, opt])
}

fn check(c: &Case) {
    let (k, n, rows) = (c.k, c.n, c.rows);
    let mut rng = Rng(c.seed | 1);
    let routes = route_values(c.sets.len());
    let mut g = GraphBuilder::new("routed");
    let x = g.input(
        "x",
        Elem::F32,
        &[Dim::Fixed(1), Dim::Fixed(rows as i64), Dim::Fixed(k as i64)],
    );
    let route = g.input(
        "route",
        Elem::I64,
        &[Dim::Fixed(1), Dim::Fixed(rows as i64)],
    );
    // per set: its initializers and its dequantized W [n, k]
    let mut inits: Vec<Vec<String>> = vec![];
    let mut formats = vec![];
    let mut reference_sets = vec![];
    for (s, def) in c.sets.iter().enumerate() {
        let w: Vec<f32> = (0..n * k).map(|_| rng.f() * 0.5 + 0.05).collect();
        if def.bits == F32_BITS {
            inits.push(vec![g.init_f32(
                &format!("w{s}"),
                &[k as i64, n as i64],
                &transpose(&w, n, k),
            )]);
            formats.push(None);
            reference_sets.push((routes[s], w));
            continue;
        }
        let f = QuantFormat {
            bits: def.bits,
            block_size: c.block,
            k,
            n,
        };
        let q = QuantMatrix::quantize(&w, f, def.asym).unwrap();
        inits.push(quant::write_initializers(&mut g, &format!("w{s}"), &q));
        formats.push(Some(f));
        reference_sets.push((routes[s], q.dequantize()));
    }
    let sets: Vec<RoutedSet> = (0..c.sets.len())
        .map(|s| RoutedSet {
            route: routes[s],
            weights: match formats[s] {
                Some(format) => SetWeights::Quant {
                    format,
                    inits: &inits[s],
                },
                None => SetWeights::F32 {
                    weight: &inits[s][0],
                },
            },
        })
        .collect();
    let y = routed::write_node(&mut g, "lin", &x, &route, &sets);
    g.op("Identity", &[&y], &[]);
    g.name_last_output("y");
    g.output(
        "y",
        Elem::F32,
        &[Dim::Fixed(1), Dim::Fixed(rows as i64), Dim::Fixed(n as i64)],
    );
    let model = g.finish("test", &[]);

    let s = c.sets.len();
    let set_of: Vec<usize> = (0..rows)
        .map(|i| match c.pattern {
            Pattern::AllLast => s - 1,
            Pattern::Alternating => i % s,
            Pattern::SkipFirst if s > 1 => 1 + rng.below(s - 1),
            Pattern::SkipFirst | Pattern::Random => rng.below(s),
        })
        .collect();
    let route_v: Vec<i64> = set_of.iter().map(|&s| routes[s]).collect();
    let xv: Vec<f32> = (0..rows * k).map(|_| rng.f()).collect();
    let want = routed::reference(&xv, rows, &route_v, &reference_sets, n, k);
    let inputs = [
        Tensor::from_shape(&[1, rows, k], &xv).unwrap(),
        Tensor::from_shape(&[1, rows], &route_v).unwrap(),
    ];
    let options = RuntimeOptions {
        lowering: c.lowering,
        threads: c.threads,
        ..RuntimeOptions::default()
    };
    let got = run_both(&model, options, &inputs).unwrap();
    for (which, out) in ["plain", "optimised"].iter().zip(&got) {
        let y = &out[0];
        assert_eq!(y.len(), rows * n);
        for r in 0..rows {
            let w = &reference_sets[set_of[r]].1;
            let xr = &xv[r * k..(r + 1) * k];
            for o in 0..n {
                // f32 sums in another order than the f64 reference: 1e-6 of
                // Σ |x| · max |W row| (a kernel may sum q·s and the block
                // minimum apart; both are at most twice the row's largest
                // weight); the largest seen over these cases is 1.2e-7
                let wmax = w[o * k..(o + 1) * k]
                    .iter()
                    .fold(0f32, |a, v| a.max(v.abs()));
                let scale: f32 = xr.iter().map(|v| v.abs()).sum::<f32>() * wmax;
                let (g, e) = (y[r * n + o], want[r * n + o]);
                assert!(
                    (g - e).abs() <= 1e-6 * scale + 1e-7,
                    "{which} {c:?}: row {r} (set {}), column {o}: {g} vs {e}",
                    set_of[r]
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn routed_linear_matches_reference(
        blocks in 1usize..5,
        block_ix in 0usize..3,
        n in 1usize..24,
        rows in 1usize..71,
        bits in prop::collection::vec(0usize..BITS.len() + 1, 1..10),
        asym in prop::collection::vec(any::<bool>(), 9),
        pattern_ix in 0usize..4,
        lowering_ix in 0usize..3,
        threads in 1usize..3,
        seed in any::<u64>(),
    ) {
        let block = [32, 16, 64][block_ix];
        let sets = bits
            .iter()
            .zip(&asym)
            .map(|(&b, &a)| SetDef { bits: BITS.get(b).copied().unwrap_or(F32_BITS), asym: a })
            .collect();
        check(&Case {
            k: blocks * block,
            n,
            block,
            rows,
            sets,
            pattern: PATTERNS[pattern_ix],
            lowering: Lowering::ALL[lowering_ix],
            threads,
            seed,
        });
    }
}

#[test]
fn every_path_pattern_width_and_lowering_matches_the_reference() {
    // GEM's mix (8 domain sets at 4 bits, the general one at 8), a mix with
    // f32 sets, and each width alone
    let mut mixes: Vec<Vec<SetDef>> = vec![
        (0..9)
            .map(|s| SetDef {
                bits: if s == 0 { 8 } else { 4 },
                asym: true,
            })
            .collect(),
        [F32_BITS, 4, 2, F32_BITS, 6]
            .iter()
            .enumerate()
            .map(|(i, &bits)| SetDef {
                bits,
                asym: i % 2 == 0,
            })
            .collect(),
    ];
    for bits in BITS.into_iter().chain([F32_BITS]) {
        mixes.push((0..3).map(|i| SetDef { bits, asym: i != 1 }).collect());
    }
    let mut seed = 11;
    // rows: gemv (1-3), tiles (4-64), panels (more)
    for rows in [1, 2, 3, 4, 9, 64, 65, 70] {
        for sets in &mixes {
            for pattern in PATTERNS {
                for lowering in Lowering::ALL {
                    seed += 1;
                    check(&Case {
                        k: 64,
                        n: 13,
                        block: 32,
                        rows,
                        sets: sets.clone(),
                        pattern,
                        lowering,
                        threads: 1 + (seed % 2) as usize,
                        seed,
                    });
                }
            }
        }
    }
}

#[test]
fn one_set_equals_quant_linear_bit_for_bit() {
    let (k, n) = (96, 11);
    for bits in BITS {
        for asym in [false, true] {
            for threads in [1, 2] {
                for rows in [1, 3, 5, 17, 70] {
                    let mut rng = Rng(bits as u64 * 31 + rows as u64 + asym as u64);
                    let w: Vec<f32> = (0..n * k).map(|_| rng.f()).collect();
                    let f = QuantFormat {
                        bits,
                        block_size: 32,
                        k,
                        n,
                    };
                    let q = QuantMatrix::quantize(&w, f, asym).unwrap();
                    let mut g = GraphBuilder::new("one");
                    let x = g.input(
                        "x",
                        Elem::F32,
                        &[Dim::Fixed(rows as i64), Dim::Fixed(k as i64)],
                    );
                    let route = g.input("route", Elem::I64, &[Dim::Fixed(rows as i64)]);
                    let inits = quant::write_initializers(&mut g, "w", &q);
                    let set = RoutedSet {
                        route: 5,
                        weights: SetWeights::Quant {
                            format: f,
                            inits: &inits,
                        },
                    };
                    for (y, name) in [
                        (
                            routed::write_node(&mut g, "routed", &x, &route, &[set]),
                            "a",
                        ),
                        (quant::write_node_with(&mut g, "quant", &x, f, &inits), "b"),
                    ] {
                        g.op("Identity", &[&y], &[]);
                        g.name_last_output(name);
                        g.output(
                            name,
                            Elem::F32,
                            &[Dim::Fixed(rows as i64), Dim::Fixed(n as i64)],
                        );
                    }
                    let model = g.finish("one", &[]);
                    let xv: Vec<f32> = (0..rows * k).map(|_| rng.f()).collect();
                    let inputs = [
                        Tensor::from_shape(&[rows, k], &xv).unwrap(),
                        Tensor::from_shape(&[rows], &vec![5i64; rows]).unwrap(),
                    ];
                    let options = RuntimeOptions {
                        threads,
                        ..RuntimeOptions::default()
                    };
                    for out in run_both(&model, options, &inputs).unwrap() {
                        let bits_of = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits_of(&out[0]),
                            bits_of(&out[1]),
                            "bits {bits} asym {asym} threads {threads} rows {rows}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn an_unserved_route_fails_at_run_time_naming_node_value_and_routes() {
    let (k, n, rows) = (32, 4, 3);
    let w: Vec<f32> = (0..k * n).map(|i| i as f32 / 100.0).collect();
    let mut g = GraphBuilder::new("unserved");
    let x = g.input("x", Elem::F32, &[Dim::Fixed(rows), Dim::Fixed(k as i64)]);
    let route = g.input("route", Elem::I64, &[Dim::Fixed(rows)]);
    let wt = g.init_f32("w", &[k as i64, n as i64], &w);
    let sets = [0, 8].map(|r| RoutedSet {
        route: r,
        weights: SetWeights::F32 { weight: &wt },
    });
    let y = routed::write_node(&mut g, "lin", &x, &route, &sets);
    g.op("Identity", &[&y], &[]);
    g.name_last_output("y");
    g.output("y", Elem::F32, &[Dim::Fixed(rows), Dim::Fixed(n as i64)]);
    let model = g.finish("unserved", &[]);
    let inputs = [
        Tensor::from_shape(&[rows as usize, k], &vec![0.5f32; rows as usize * k]).unwrap(),
        Tensor::from_shape(&[rows as usize], &[0i64, 8, 3]).unwrap(),
    ];
    let e = format!(
        "{:?}",
        run_both(&model, RuntimeOptions::default(), &inputs).unwrap_err()
    );
    assert!(
        e.contains("EbRoutedLinear") && e.contains("route 3") && e.contains("[0, 8]"),
        "{e}"
    );
    assert!(e.contains("`EbRoutedLinear_"), "names the node: {e}");
}
