//! `EbTokenRouter`: GEM's dynamic token router (paper section 3.1).
//!
//! `P(d | x_i) = softmax(W_r . h_i + b)` over the `D` domains; token `i` goes
//! to `argmax_d P` when `max_d P > tau`, else to the general pathway, whose id
//! is `D`. Ties go to the lowest domain index. Outputs the route of every
//! token and the probabilities, so every decision can be logged.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph.
pub const OP_NAME: &str = "EbTokenRouter";

/// The paper's confidence threshold.
pub const DEFAULT_TAU: f32 = 0.7;

/// Plain reference (f64): routes and probabilities of the `n` rows of `h`
/// (`[n, dim]`) under `w` (`[domains, dim]`) and optional bias.
pub fn reference(
    h: &[f32],
    n: usize,
    dim: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    tau: f32,
) -> (Vec<i64>, Vec<f32>) {
    let domains = w.len() / dim;
    let mut routes = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n * domains);
    for row in h.chunks(dim).take(n) {
        let logits: Vec<f64> = (0..domains)
            .map(|d| {
                let dot: f64 = row
                    .iter()
                    .zip(&w[d * dim..(d + 1) * dim])
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                dot + bias.map_or(0.0, |b| b[d] as f64)
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        let p: Vec<f64> = exps.iter().map(|e| e / total).collect();
        let (best, pmax) =
            p.iter().enumerate().fold(
                (0, f64::NEG_INFINITY),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        routes.push(if pmax > tau as f64 {
            best as i64
        } else {
            domains as i64
        });
        probs.extend(p.iter().map(|&v| v as f32));
    }
    (routes, probs)
}

/// Adds an `EbTokenRouter` node to `g` over hidden states `h`, with `w` and
/// `bias` initializer names; returns the names of (routes, probabilities).
pub fn write_node(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    h: &str,
    w: &str,
    bias: Option<&str>,
    tau: f32,
) -> (String, String) {
    let (r, p) = (format!("{name}.route"), format!("{name}.probs"));
    let mut inputs = vec![h, w];
    inputs.extend(bias);
    g.node_in_domain(
        crate::onnx::CUSTOM_DOMAIN,
        OP_NAME,
        &inputs,
        &[&r, &p],
        &[("tau", crate::onnx::Attr::Float(tau))],
    );
    (r, p)
}

/// Parses an `EbTokenRouter` node.
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tau = node.get_attr_opt::<f32>("tau")?.unwrap_or(DEFAULT_TAU);
    if !(0.0..=1.0).contains(&tau) {
        bail!(
            "{OP_NAME} node `{}`: attribute tau = {tau}, must be in [0, 1] (1 routes every token to the general pathway)",
            node.name
        );
    }
    let has_bias = super::has_input(node, 2);
    Ok((expand(RouterExpansion { tau, has_bias }), vec![]))
}

#[derive(Debug, Clone)]
struct RouterExpansion {
    tau: f32,
    has_bias: bool,
}

impl Expansion for RouterExpansion {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2 + self.has_bias as usize)?;
        check_output_arity(outputs, 2)?;
        s.equals(&inputs[0].rank, 3)?;
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&outputs[0].datum_type, i64::datum_type())?;
        s.equals(&outputs[1].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[1].rank, 3)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[0].shape[1])?;
        s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].shape[1], &inputs[0].shape[1])?;
        s.equals(&outputs[1].shape[2], &inputs[1].shape[0])?;
        s.equals(&inputs[1].shape[1], &inputs[0].shape[2])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, TokenRouter { tau: self.tau }, inputs)
    }
}

/// The typed, runnable op.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRouter {
    /// Confidence threshold.
    pub tau: f32,
}

// tau is checked to lie in [0, 1] at parse, never NaN, so equality is total.
impl Eq for TokenRouter {}

impl Op for TokenRouter {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    op_as_typed_op!();
}

impl EvalOp for TokenRouter {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let h = inputs[0].cast_to::<f32>()?;
        let w = inputs[1].cast_to::<f32>()?;
        let (b, n, dim) = (h.shape()[0], h.shape()[1], h.shape()[2]);
        let domains = w.shape()[0];
        ensure!(
            w.shape()[1] == dim,
            "{OP_NAME}: W is {:?} but hidden states have {dim} features",
            w.shape()
        );
        let w = w.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let bias = match inputs.get(2) {
            Some(t) => Some(
                t.cast_to::<f32>()?
                    .try_as_plain_ram()?
                    .as_slice::<f32>()?
                    .to_vec(),
            ),
            None => None,
        };
        let h = h.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let mut routes = Vec::with_capacity(b * n);
        let mut probs = Vec::with_capacity(b * n * domains);
        let mut logits = vec![0f32; domains];
        for row in h.chunks(dim) {
            for (d, l) in logits.iter_mut().enumerate() {
                *l = row
                    .iter()
                    .zip(&w[d * dim..(d + 1) * dim])
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    + bias.as_ref().map_or(0.0, |b| b[d]);
            }
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            let start = probs.len();
            probs.extend(logits.iter().map(|l| (l - max).exp() / total));
            let p = &probs[start..];
            let (best, pmax) = p
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                );
            routes.push(if pmax > self.tau {
                best as i64
            } else {
                domains as i64
            });
        }
        Ok(tvec!(
            Tensor::from_shape(&[b, n], &routes)?.into_tvalue(),
            Tensor::from_shape(&[b, n, domains], &probs)?.into_tvalue()
        ))
    }
}

impl TypedOp for TokenRouter {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let h = &inputs[0].shape;
        let w = &inputs[1].shape;
        Ok(tvec!(
            i64::fact([h[0].clone(), h[1].clone()]),
            f32::fact([h[0].clone(), h[1].clone(), w[0].clone()])
        ))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_tokens_go_to_their_domain_others_to_general() {
        // 2 domains over 1 feature: w = [+4, -4]
        let w = [4.0, -4.0];
        let (r, p) = reference(&[1.0, 0.0, -1.0], 3, 1, &w, None, 0.7);
        assert_eq!(r, vec![0, 2, 1]); // p(0)=0.9997; 0.5 is not > 0.7 -> general (id 2)
        assert!((p[2] - 0.5).abs() < 1e-6 && (p[3] - 0.5).abs() < 1e-6);
    }
}
