/** Layer helpers shared by every model: dense, layer/group norm, FiLM, activations. */
import * as tf from '@tensorflow/tfjs-core';
import { FILM_KERNEL, fusedKernelsAvailable, GROUP_NORM_KERNEL } from '../backend/fusedKernels.js';
import type { ParamStore } from './params.js';

/** Dense layer over the last axis of x (any rank >= 2). */
export function dense(store: ParamStore, name: string, x: tf.Tensor, outDim: number, opts: { bias?: boolean; init?: 'glorot' | 'he' | 'zeros' } = {}): tf.Tensor {
  const inDim = x.shape[x.rank - 1];
  const w = store.param(`${name}/w`, [inDim, outDim], opts.init ?? 'glorot');
  const flat = x.rank === 2 ? x : tf.reshape(x, [-1, inDim]);
  let y = tf.matMul(flat, w);
  if (opts.bias !== false) y = tf.add(y, store.param(`${name}/b`, [outDim], 'zeros'));
  return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outDim]);
}

export const silu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(x));
/** True while a gradient tape is recording (inside tf.grads / variableGrads). */
export function recordingGradients(): boolean {
  return (tf.engine().state as unknown as { gradientDepth: number }).gradientDepth > 0;
}

/**
 * Mish, x * tanh(softplus(x)) (Misra 2019). On WASM, Tanh and Softplus are scalar loops about
 * 20x slower per element than the vectorised Sigmoid, which dominates for training batches, so
 * under a gradient tape it is computed from s = sigmoid(x): tanh(softplus(x)) = (1 - u) / (1 + u)
 * with u = (1 - s)^2, with a hand-written gradient d/dx = tsp + x * s * (1 - tsp^2).
 * Inference keeps the three-kernel form (batch-1 inference is bound by kernel count).
 */
export function mish(x: tf.Tensor): tf.Tensor {
  if (!recordingGradients()) return tf.mul(x, tf.tanh(tf.softplus(x)));
  return mishTrain(x);
}

const mishTrain = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const s = tf.sigmoid(x);
  const u = tf.square(tf.sub(1, s));
  const tsp = tf.div(tf.sub(1, u), tf.add(1, u));
  save([x, s, tsp]);
  return {
    value: tf.mul(x, tsp),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ss, t] = saved;
      return tf.mul(dy, tf.add(t, tf.mul(tf.mul(xs, ss), tf.sub(1, tf.square(t)))));
    },
  };
}) as (x: tf.Tensor) => tf.Tensor;

/** Layer normalisation over the last axis with learned gain and bias. */
export function layerNorm(store: ParamStore, name: string, x: tf.Tensor, eps = 1e-5): tf.Tensor {
  const c = x.shape[x.rank - 1];
  const { mean, variance } = tf.moments(x, -1, true);
  const y = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps)));
  return tf.add(tf.mul(y, store.param(`${name}/g`, [c], 'ones')), store.param(`${name}/b`, [c], 'zeros'));
}

/**
 * Group normalisation for channels-last tensors ([B, L, C] or [B, H, W, C]): statistics over the
 * spatial axes and the channels of each group.
 */
export function groupNorm(store: ParamStore, name: string, x: tf.Tensor, groups: number, eps = 1e-5): tf.Tensor {
  const c = x.shape[x.rank - 1];
  const g = Math.max(1, Math.min(groups, c));
  if (c % g !== 0) throw new Error(`groupNorm '${name}': channels ${c} not divisible by groups ${g}`);
  const b = x.shape[0];
  const spatial = x.shape.slice(1, -1).reduce((p, q) => p * q, 1);
  const gain = store.param(`${name}/g`, [c], 'ones');
  const bias = store.param(`${name}/b`, [c], 'zeros');
  if (recordingGradients()) return groupNormTrain(x, gain, bias, [b, spatial, g, c / g], eps);
  // Inference on WASM: one kernel with the same bits as the ops below (fusedKernels.ts).
  if (x.dtype === 'float32' && fusedKernelsAvailable()) return tf.engine().runKernel(GROUP_NORM_KERNEL, { x, gain, bias }, { groups: g, eps }) as tf.Tensor;
  // Elsewhere: 11 kernels (tf.moments + div/sqrt took 14; small-batch inference is bound by
  // the number of kernels, not by their arithmetic).
  const r = tf.reshape(x, [b, spatial, g, c / g]);
  const d = tf.sub(r, tf.mean(r, [1, 3], true));
  const y = tf.reshape(tf.mul(d, tf.rsqrt(tf.add(tf.mean(tf.square(d), [1, 3], true), eps))), x.shape);
  return tf.add(tf.mul(y, gain), bias);
}

/**
 * Group norm with a hand-written backward pass (about half the kernels of differentiating
 * tf.moments): with xhat = (x - mean) * rstd and g = dy * gain per group,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dgain = sum(dy * xhat), dbias = sum(dy).
 */
function groupNormTrain(x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, grouped: [number, number, number, number], eps: number): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, gi, bi, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const r = tf.reshape(xi, grouped);
    const { mean, variance } = tf.moments(r, [1, 3], true);
    const rstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.reshape(tf.mul(tf.sub(r, mean), rstd), xi.shape);
    save([xhat, rstd, gi]);
    return {
      value: tf.add(tf.mul(xhat, gi), bi),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, rs, gs] = saved;
        const reduceAxes = Array.from({ length: dy.rank - 1 }, (_, i) => i);
        const dgain = tf.sum(tf.mul(dy, xh), reduceAxes);
        const dbias = tf.sum(dy, reduceAxes);
        const gr = tf.reshape(tf.mul(dy, gs), grouped);
        const xr = tf.reshape(xh, grouped);
        const dx = tf.mul(rs, tf.sub(tf.sub(gr, tf.mean(gr, [1, 3], true)), tf.mul(xr, tf.mean(tf.mul(gr, xr), [1, 3], true))));
        return [tf.reshape(dx, dy.shape), dgain, dbias];
      },
    };
  });
  return f(x, gain, bias);
}

/**
 * FiLM (Perez et al. 2018): per-channel scale and shift predicted from a conditioning vector
 * emb [B, E]; h has shape [B, ..., C]. Initialised to the identity (zero scale and shift).
 */
export function film(store: ParamStore, name: string, h: tf.Tensor, emb: tf.Tensor, opts: { activated?: boolean } = {}): tf.Tensor {
  const c = h.shape[h.rank - 1];
  // `activated`: emb is already silu(emb) (networks with many FiLM layers compute it once).
  const ss = dense(store, name, opts.activated ? emb : silu(emb), 2 * c, { init: 'zeros' });
  // Inference on WASM: one kernel with the same bits as the ops below (fusedKernels.ts).
  if (h.dtype === 'float32' && ss.dtype === 'float32' && !recordingGradients() && fusedKernelsAvailable()) return tf.engine().runKernel(FILM_KERNEL, { h, ss }) as tf.Tensor;
  const ones = Array(h.rank - 2).fill(1);
  const ss4 = tf.reshape(ss, [h.shape[0], ...ones, 2 * c]);
  const scale = tf.slice(ss4, [0, ...ones.map(() => 0), 0], [-1, ...ones, c]);
  const shift = tf.slice(ss4, [0, ...ones.map(() => 0), c], [-1, ...ones, c]);
  return tf.add(tf.mul(h, tf.add(scale, 1)), shift);
}
