//! Splits a run into shards. The run's plan is cut into units (one example,
//! or a whole retrieval suite, whose examples are each other's candidate
//! pool), each unit is given a cost in tokens, and the units are dealt to
//! the shards longest first, each to the least loaded shard. Every shard
//! computes the same split from the same inputs, so shards started
//! separately (an indexed job, an array, a CI matrix) agree without talking.

use crate::fit::Truncation;
use crate::record::{Plan, RecordError, RunDir, SUITE_SNAPSHOT};
use crate::request::Call;
use crate::runner::{Prepared, RunError};
use crate::suite::spec::TaskKind;
use edgebench_runtime::model::Model;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// File of a shard's run folder (and a merged run's) holding the [`ShardPlan`].
pub const SHARD_PLAN_FILE: &str = "shard-plan.json";

/// What one generated token costs, in prompt tokens: a decode step runs the
/// whole model for one token, where a prefill shares each pass among many.
pub const DECODE_WEIGHT: u64 = 8;

/// One shard of a split run: `index` of `count`, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// The largest shard count.
pub const MAX_SHARDS: usize = 10_000;

impl Shard {
    /// Parses `I/N` (1 <= I <= N).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard `{s}`: expected I/N with 1 <= I <= N (e.g. 2/3) or `auto`");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).map_err(|e| format!("--shard `{s}`: {e}"))
    }

    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "the shard count must be between 1 and {MAX_SHARDS}, not {count}"
            ));
        }
        if index == 0 || index > count {
            return Err(format!(
                "the shard index must be between 1 and {count}, not {index}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard a scheduler assigned, read through `var`: a Kubernetes
    /// Indexed Job (`JOB_COMPLETION_INDEX`, from 0, with `EDGEBENCH_SHARDS`)
    /// or a Slurm array (`SLURM_ARRAY_TASK_ID` from `SLURM_ARRAY_TASK_MIN`,
    /// `SLURM_ARRAY_TASK_COUNT` tasks).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let num = |name: &str| -> Result<Option<usize>, String> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("--shard auto: {name}=`{v}` is not a whole number"))
                })
                .transpose()
        };
        let wrap = |r: Result<Shard, String>| r.map_err(|e| format!("--shard auto: {e}"));
        if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            let n = num("EDGEBENCH_SHARDS")?.ok_or(
                "--shard auto: JOB_COMPLETION_INDEX is set but EDGEBENCH_SHARDS (the number of shards, the Job's completions) is not",
            )?;
            return wrap(Shard::new(i + 1, n));
        }
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let n = num("SLURM_ARRAY_TASK_COUNT")?.ok_or(
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
            )?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            if id < min {
                return Err(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ));
            }
            return wrap(Shard::new(id - min + 1, n));
        }
        Err("--shard auto: neither JOB_COMPLETION_INDEX with EDGEBENCH_SHARDS (a Kubernetes Indexed Job) nor SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (a Slurm array) is set; pass --shard I/N".into())
    }

    /// The suffix of the shard's run id: `shard-I-of-N`.
    pub fn suffix(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a shard's `run.json` records about its place in the split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: usize,
    pub count: usize,
    /// sha256 of the split ([`SHARD_PLAN_FILE`]), equal in every shard.
    pub plan_sha256: String,
}

/// What a split's unit costs are measured in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CostSource {
    /// Prompt-token equivalents estimated from the calls ([`call_cost`]).
    #[default]
    Tokens,
    /// Microseconds an earlier run took per unit ([`Measured`]).
    Measured {
        run_id: String,
        /// sha256 over that run's records, so every shard used the same.
        records_sha256: String,
    },
}

/// Unit times from an earlier run's records: what a unit took where that
/// run evaluated its examples, else that run's time per cost token of the
/// suite's task kind (or of all its records).
#[derive(Debug, Clone)]
pub struct Measured {
    source: CostSource,
    ms: HashMap<(String, String), f64>,
    per_kind: HashMap<TaskKind, f64>,
    overall: Option<f64>,
}

impl Measured {
    /// Reads the records of the run in `dir` (its suite snapshot gives each
    /// suite's task kind).
    pub fn of_run(dir: &RunDir) -> Result<Measured, RecordError> {
        let m = dir.load_manifest()?;
        let mut ms = HashMap::new();
        let mut sums: HashMap<TaskKind, (f64, f64)> = HashMap::new();
        let mut lines = String::new();
        for sid in &m.suites {
            let snapshot = dir.root.join(SUITE_SNAPSHOT).join(format!("{sid}.toml"));
            let kind = crate::suite::load_file(&snapshot).ok().map(|s| s.task);
            for r in dir.load_records(sid)? {
                lines += &serde_json::to_string(&r).expect("record serialises");
                lines.push('\n');
                if let Some(k) = kind {
                    let cost =
                        (r.prompt_tokens as u64 + DECODE_WEIGHT * r.output_tokens as u64) as f64;
                    let s = sums.entry(k).or_default();
                    s.0 += r.latency_ms;
                    s.1 += cost;
                }
                ms.insert((sid.clone(), r.example_id), r.latency_ms);
            }
        }
        if ms.is_empty() {
            return Err(RecordError::Invalid(format!(
                "{}: the run has no records to take unit times from",
                dir.root.display()
            )));
        }
        let (t, c) = sums
            .values()
            .fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
        Ok(Measured {
            source: CostSource::Measured {
                run_id: m.run_id,
                records_sha256: edgebench_util::hash::sha256_str(&lines),
            },
            ms,
            per_kind: sums
                .into_iter()
                .filter(|(_, s)| s.1 > 0.0)
                .map(|(k, s)| (k, s.0 / s.1))
                .collect(),
            overall: (c > 0.0).then(|| t / c),
        })
    }

    /// Milliseconds of a unit of `suite` (of `kind`) holding `examples`,
    /// estimated at `tokens`; and whether all of it was measured.
    pub fn unit_ms(
        &self,
        suite: &str,
        kind: TaskKind,
        examples: &[String],
        tokens: u64,
    ) -> (f64, bool) {
        let measured: Option<f64> = examples
            .iter()
            .map(|e| self.ms.get(&(suite.to_string(), e.clone())).copied())
            .sum();
        match measured {
            Some(ms) => (ms, true),
            None => {
                let rate = self.per_kind.get(&kind).copied().or(self.overall);
                (rate.unwrap_or(0.0) * tokens as f64, false)
            }
        }
    }
}

/// A unit of work: examples that run in the same shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub suite: String,
    pub examples: Vec<String>,
    /// Estimated prompt-token equivalents ([`call_cost`]).
    pub tokens: u64,
    /// What the split balances: `tokens`, or microseconds with
    /// [`CostSource::Measured`].
    pub cost: u64,
    /// The shard it is dealt to (1-based).
    pub shard: usize,
}

/// The split of a run: its whole plan and which shard runs each unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    pub count: usize,
    /// What the units' costs are.
    #[serde(default)]
    pub costs: CostSource,
    /// The plan of the whole run (what one process would evaluate).
    pub plan: Plan,
    /// Units in run order (suites in run order, examples in file order).
    pub units: Vec<Unit>,
}

impl ShardPlan {
    /// The JSON text stored in [`SHARD_PLAN_FILE`], and its sha256.
    pub fn to_json(&self) -> (String, String) {
        let text = serde_json::to_string_pretty(self).expect("shard plan serialises");
        let hash = edgebench_util::hash::sha256_bytes(text.as_bytes());
        (text, hash)
    }

    /// Reads the split stored in a shard's folder, checked against the
    /// sha256 and count its `run.json` records.
    pub fn load(dir: &RunDir, info: &ShardInfo) -> Result<ShardPlan, RecordError> {
        let path = dir.root.join(SHARD_PLAN_FILE);
        let bad = |message: String| RecordError::Manifest {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot read: {e}")))?;
        if edgebench_util::hash::sha256_bytes(text.as_bytes()) != info.plan_sha256 {
            return Err(bad(
                "does not hash to the `shard.plan_sha256` its run.json records; the folder was changed after the shard ran".into(),
            ));
        }
        let split: ShardPlan = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if split.count != info.count {
            return Err(bad(format!(
                "field `count` is {}, run.json's `shard.count` is {}",
                split.count, info.count
            )));
        }
        Ok(split)
    }

    /// The plan of shard `index`.
    pub fn plan_of(&self, index: usize) -> Plan {
        let mut out: Plan = self.plan.keys().map(|s| (s.clone(), Vec::new())).collect();
        for u in self.units.iter().filter(|u| u.shard == index) {
            out.entry(u.suite.clone())
                .or_default()
                .extend(u.examples.iter().cloned());
        }
        out
    }

    /// Units and estimated cost of each shard, indexed from 0.
    pub fn loads(&self) -> Vec<(usize, u64)> {
        let mut loads = vec![(0, 0); self.count];
        for u in &self.units {
            loads[u.shard - 1].0 += 1;
            loads[u.shard - 1].1 += u.cost;
        }
        loads
    }
}

/// Estimated cost of one call in prompt-token equivalents: the tokens a
/// forward pass reads, a generated token weighing [`DECODE_WEIGHT`]. A
/// continuation scored after a shared context costs its own tokens only.
pub fn call_cost(call: &Call, model: &dyn Model, counted: Option<usize>) -> u64 {
    let window = model.info().max_context.max(1);
    let tokens = |t: &str| {
        model
            .count_tokens(t)
            .unwrap_or_else(|_| t.len().div_ceil(4))
    };
    let cost = match call {
        Call::Loglikelihood {
            context,
            continuations,
        } => {
            counted.unwrap_or_else(|| tokens(context)).min(window)
                + continuations.iter().map(|c| tokens(c)).sum::<usize>()
        }
        Call::Generate {
            prompt, max_tokens, ..
        } => {
            let answer = (*max_tokens).min(window / 2) as u64;
            return tokens(prompt).min(window) as u64 + DECODE_WEIGHT * answer;
        }
        Call::Rolling { text } => tokens(text),
        Call::Embed { texts } => texts.iter().map(|t| tokens(t).min(window)).sum(),
    };
    cost as u64
}

/// Splits the evaluated suites of `prepared` into `count` shards, by
/// estimated tokens or, given `measured`, by an earlier run's unit times
/// (in microseconds). Every input is the run's own (data, suites, model,
/// seed, limit) or that run's records, so every shard computes the same split.
pub fn split(
    prepared: &[Prepared<'_>],
    model: &dyn Model,
    truncation: Truncation,
    count: usize,
    measured: Option<&Measured>,
) -> Result<ShardPlan, RunError> {
    let mut units = Vec::new();
    for p in prepared.iter().filter(|p| p.status.is_none()) {
        let mut costs = Vec::with_capacity(p.examples.len());
        for ex in &p.examples {
            let fitted = p
                .calls(ex, model, truncation)
                .map_err(|source| RunError::Model {
                    suite: p.spec.id.clone(),
                    example: ex.id.clone(),
                    source,
                })?;
            let cost = fitted
                .calls
                .iter()
                .zip(&fitted.context_tokens)
                .map(|(c, n)| call_cost(c, model, *n))
                .sum::<u64>();
            costs.push((ex.id.clone(), cost));
        }
        if p.spec.task == TaskKind::Retrieval {
            // the examples are each other's candidates: one unit
            let tokens = costs.iter().map(|(_, c)| c).sum();
            units.push(Unit {
                suite: p.spec.id.clone(),
                tokens,
                cost: tokens,
                examples: costs.into_iter().map(|(id, _)| id).collect(),
                shard: 0,
            });
        } else {
            units.extend(costs.into_iter().map(|(id, tokens)| Unit {
                suite: p.spec.id.clone(),
                examples: vec![id],
                tokens,
                cost: tokens,
                shard: 0,
            }));
        }
    }
    if let Some(m) = measured {
        let kinds: HashMap<&str, TaskKind> = prepared
            .iter()
            .map(|p| (p.spec.id.as_str(), p.spec.task))
            .collect();
        for u in &mut units {
            let (ms, _) = m.unit_ms(&u.suite, kinds[u.suite.as_str()], &u.examples, u.tokens);
            u.cost = (ms * 1e3).round() as u64;
        }
    }
    deal(&mut units, count);
    Ok(ShardPlan {
        count,
        costs: measured.map_or(CostSource::Tokens, |m| m.source.clone()),
        plan: crate::runner::plan_of(prepared),
        units,
    })
}

/// Deals `units` to `count` shards, longest first, each to the least loaded
/// shard (ties: the earlier unit, the lower shard), as in LPT scheduling.
fn deal(units: &mut [Unit], count: usize) {
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| units[b].cost.cmp(&units[a].cost).then(a.cmp(&b)));
    let mut load = vec![0u64; count];
    for i in order {
        let (s, _) = load
            .iter()
            .enumerate()
            .min_by(|(a, x), (b, y)| x.cmp(y).then(a.cmp(b)))
            .expect("count >= 1");
        load[s] += units[i].cost.max(1);
        units[i].shard = s + 1;
    }
}

/// Keeps in `prepared` only the examples of shard `index`.
pub fn restrict(prepared: &mut [Prepared<'_>], plan: &ShardPlan, index: usize) {
    let mine: HashSet<(&str, &str)> = plan
        .units
        .iter()
        .filter(|u| u.shard == index)
        .flat_map(|u| u.examples.iter().map(|e| (u.suite.as_str(), e.as_str())))
        .collect();
    for p in prepared.iter_mut().filter(|p| p.status.is_none()) {
        let suite = p.spec.id.clone();
        p.examples
            .retain(|e| mine.contains(&(suite.as_str(), e.id.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(cost: u64) -> Unit {
        Unit {
            suite: "s".into(),
            examples: vec![format!("e{cost}")],
            tokens: cost,
            cost,
            shard: 0,
        }
    }

    #[test]
    fn shards_parse_from_the_flag_and_the_schedulers() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), ("EDGEBENCH_SHARDS", "4")]);
        assert_eq!(Shard::from_env(k8s), Ok(Shard { index: 1, count: 4 }));
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(Shard::from_env(slurm), Ok(Shard { index: 3, count: 3 }));
        let half = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "1")])).unwrap_err();
        assert!(half.contains("EDGEBENCH_SHARDS"), "{half}");
        let past = Shard::from_env(env(&[
            ("JOB_COMPLETION_INDEX", "3"),
            ("EDGEBENCH_SHARDS", "3"),
        ]))
        .unwrap_err();
        assert!(past.contains("between 1 and 3"), "{past}");
        assert!(Shard::from_env(env(&[]))
            .unwrap_err()
            .contains("--shard I/N"));
    }

    #[test]
    fn the_longest_units_are_dealt_first_to_the_least_loaded_shard() {
        let mut units: Vec<Unit> = [5, 9, 1, 7, 3, 9].into_iter().map(unit).collect();
        deal(&mut units, 3);
        let shards: Vec<usize> = units.iter().map(|u| u.shard).collect();
        // 9 -> 1, 9 -> 2, 7 -> 3, 5 -> 3 (7 < 9), 3 -> 1, 1 -> 2
        assert_eq!(shards, [3, 1, 2, 3, 1, 2]);
        let plan = ShardPlan {
            count: 3,
            costs: CostSource::Tokens,
            plan: Plan::new(),
            units,
        };
        assert_eq!(plan.loads(), [(2, 12), (2, 10), (2, 12)]);
    }
}
