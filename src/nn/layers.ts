/** Layer helpers shared by every model: dense, layer/group norm, FiLM, activations. */
import * as tf from '@tensorflow/tfjs-core';
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
export const mish = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.tanh(tf.softplus(x)));

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
  const r = tf.reshape(x, [b, spatial, g, c / g]);
  const { mean, variance } = tf.moments(r, [1, 3], true);
  const y = tf.reshape(tf.div(tf.sub(r, mean), tf.sqrt(tf.add(variance, eps))), x.shape);
  return tf.add(tf.mul(y, store.param(`${name}/g`, [c], 'ones')), store.param(`${name}/b`, [c], 'zeros'));
}

/**
 * FiLM (Perez et al. 2018): per-channel scale and shift predicted from a conditioning vector
 * emb [B, E]; h has shape [B, ..., C]. Initialised to the identity (zero scale and shift).
 */
export function film(store: ParamStore, name: string, h: tf.Tensor, emb: tf.Tensor): tf.Tensor {
  const c = h.shape[h.rank - 1];
  const ss = dense(store, name, silu(emb), 2 * c, { init: 'zeros' });
  const bshape = [h.shape[0], ...Array(h.rank - 2).fill(1), c];
  const scale = tf.reshape(tf.slice(ss, [0, 0], [-1, c]), bshape);
  const shift = tf.reshape(tf.slice(ss, [0, c], [-1, c]), bshape);
  return tf.add(tf.mul(h, tf.add(scale, 1)), shift);
}
