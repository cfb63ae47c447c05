//! Per-op timing of graph passes, for `bench model --profile`: where a
//! model's time goes, by tract op and by node. Each model has its own
//! [`Profiler`], off unless switched on; when off, passes run through
//! tract's own `run` untouched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

/// Time spent in one graph node over the profiled passes.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// Node name in the graph.
    pub node: String,
    /// tract op name after optimisation (e.g. `OptMatMul`, `Add`).
    pub op: String,
    /// Shape of the node's first output on its last call.
    pub shape: Vec<usize>,
    /// Total time.
    pub total: Duration,
    /// Calls.
    pub calls: u64,
}

/// Per-node times of the passes one model ran while profiling was on.
#[derive(Debug, Default)]
pub struct Profiler {
    on: AtomicBool,
    times: Mutex<HashMap<String, NodeTime>>,
}

impl Profiler {
    /// Starts (clearing earlier times) or stops collecting per-node times.
    pub fn set(&self, on: bool) {
        if on {
            self.lock().clear();
        }
        self.on.store(on, Ordering::Relaxed);
    }

    /// The per-node times collected since profiling started (or since the
    /// last take), slowest first.
    pub fn take(&self) -> Vec<NodeTime> {
        let map = std::mem::take(&mut *self.lock());
        let mut v: Vec<NodeTime> = map.into_values().collect();
        v.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.node.cmp(&b.node)));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeTime>> {
        self.times.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one pass of `plan`, timing each node when profiling is on.
    pub(crate) fn run(
        &self,
        plan: &Arc<TypedRunnableModel>,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        if !self.on.load(Ordering::Relaxed) {
            return plan.run(inputs);
        }
        let mut local: Vec<(usize, Duration, Vec<usize>)> = Vec::new();
        let mut state = plan.spawn()?;
        let out = state.run_plan_with_eval(inputs, |ctx, st, node, input| {
            let t = Instant::now();
            let r = tract_onnx::tract_core::plan::eval(ctx, st, node, input);
            let dt = t.elapsed();
            let shape = match &r {
                Ok(o) => o.first().map(|v| v.shape().to_vec()).unwrap_or_default(),
                Err(_) => vec![],
            };
            local.push((node.id, dt, shape));
            r
        })?;
        let model = plan.model();
        let mut map = self.lock();
        for (id, dt, shape) in local {
            let node = &model.nodes[id];
            let e = map.entry(node.name.clone()).or_insert_with(|| NodeTime {
                node: node.name.clone(),
                op: node.op().name().to_string(),
                shape: vec![],
                total: Duration::ZERO,
                calls: 0,
            });
            e.total += dt;
            e.calls += 1;
            e.shape = shape;
        }
        Ok(out)
    }
}

/// Sums node times by op name: `(op, total, calls)`, slowest first.
pub fn by_op(nodes: &[NodeTime]) -> Vec<(String, Duration, u64)> {
    let mut m: HashMap<&str, (Duration, u64)> = HashMap::new();
    for n in nodes {
        let e = m.entry(&n.op).or_default();
        e.0 += n.total;
        e.1 += n.calls;
    }
    let mut v: Vec<(String, Duration, u64)> = m
        .into_iter()
        .map(|(k, (t, c))| (k.to_string(), t, c))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_op_sums_and_sorts() {
        let n = |node: &str, op: &str, ms: u64| NodeTime {
            node: node.into(),
            op: op.into(),
            shape: vec![],
            total: Duration::from_millis(ms),
            calls: 1,
        };
        let v = by_op(&[n("a", "Add", 2), n("b", "MatMul", 5), n("c", "Add", 4)]);
        assert_eq!(v[0], ("Add".to_string(), Duration::from_millis(6), 2));
        assert_eq!(v[1], ("MatMul".to_string(), Duration::from_millis(5), 1));
    }
}
