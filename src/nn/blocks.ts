/** Residual blocks with FiLM conditioning: MLP, 1D temporal convolution and 2D convolution. */
import * as tf from '@tensorflow/tfjs-core';
import { dense, film, groupNorm, layerNorm, mish, silu } from './layers.js';
import type { ParamStore } from './params.js';

/** h + W2 silu(FiLM(LN(W1 silu(h)), emb)): width-preserving residual MLP block. */
export function residualMlpBlock(store: ParamStore, name: string, h: tf.Tensor, emb: tf.Tensor): tf.Tensor {
  const w = h.shape[h.rank - 1];
  let y = dense(store, `${name}/fc1`, silu(h), w);
  y = film(store, `${name}/film`, layerNorm(store, `${name}/ln`, y), emb);
  y = dense(store, `${name}/fc2`, silu(y), w, { init: 'zeros' });
  return tf.add(h, y);
}

/**
 * Convolutions are computed as patch extraction (shifted slices concatenated on the channel
 * axis) followed by one matrix product. The tfjs WASM backend has no Conv2DBackpropFilter
 * kernel, so native conv gradients cannot train there; this form trains on every backend and
 * goes through the (fixed) fast matMul path.
 */
function patches1d(x: tf.Tensor, kernel: number): tf.Tensor {
  if (kernel === 1) return x;
  const left = Math.floor((kernel - 1) / 2);
  const padded = tf.pad(x, [[0, 0], [left, kernel - 1 - left], [0, 0]]);
  const L = x.shape[1] as number;
  const parts: tf.Tensor[] = [];
  for (let i = 0; i < kernel; i++) parts.push(tf.slice(padded, [0, i, 0], [-1, L, -1]));
  return tf.concat(parts, 2);
}

function patches2d(x: tf.Tensor, kernel: number): tf.Tensor {
  if (kernel === 1) return x;
  const lo = Math.floor((kernel - 1) / 2);
  const hi = kernel - 1 - lo;
  const padded = tf.pad(x, [[0, 0], [lo, hi], [lo, hi], [0, 0]]);
  const H = x.shape[1] as number;
  const W = x.shape[2] as number;
  const parts: tf.Tensor[] = [];
  for (let i = 0; i < kernel; i++) for (let j = 0; j < kernel; j++) parts.push(tf.slice(padded, [0, i, j, 0], [-1, H, W, -1]));
  return tf.concat(parts, 3);
}

/** Keep every `stride`-th position along the given spatial axes (axis 1, and 2 for 2D). */
function subsample(y: tf.Tensor, stride: number, dims: 1 | 2): tf.Tensor {
  if (stride === 1) return y;
  const s = y.shape as number[];
  if (dims === 1) {
    if (s[1] % stride !== 0) throw new Error(`conv1d: length ${s[1]} not divisible by stride ${stride}`);
    return tf.reshape(tf.slice(tf.reshape(y, [s[0], s[1] / stride, stride, s[2]]), [0, 0, 0, 0], [-1, -1, 1, -1]), [s[0], s[1] / stride, s[2]]);
  }
  if (s[1] % stride !== 0 || s[2] % stride !== 0) throw new Error(`conv2d: size ${s[1]}x${s[2]} not divisible by stride ${stride}`);
  const r = tf.reshape(y, [s[0], s[1] / stride, stride, s[2] / stride, stride, s[3]]);
  return tf.reshape(tf.slice(r, [0, 0, 0, 0, 0, 0], [-1, -1, 1, -1, 1, -1]), [s[0], s[1] / stride, s[2] / stride, s[3]]);
}

/** 1D convolution over [B, L, C] with 'same' padding; weight [kernel, inC, outC]. */
export function conv1d(store: ParamStore, name: string, x: tf.Tensor, outC: number, kernel: number, opts: { stride?: number } = {}): tf.Tensor {
  const inC = x.shape[2] as number;
  const w = store.param(`${name}/w`, [kernel, inC, outC], 'glorot');
  const b = store.param(`${name}/b`, [outC], 'zeros');
  const p = patches1d(x, kernel);
  const [B, L] = x.shape as number[];
  const y = tf.add(tf.reshape(tf.matMul(tf.reshape(p, [B * L, kernel * inC]), tf.reshape(w, [kernel * inC, outC])), [B, L, outC]), b);
  return subsample(y, opts.stride ?? 1, 1);
}

/** 2D convolution over [B, H, W, C] with 'same' padding; weight [kernel, kernel, inC, outC]. */
export function conv2d(store: ParamStore, name: string, x: tf.Tensor, outC: number, kernel: number, opts: { stride?: number } = {}): tf.Tensor {
  const inC = x.shape[3] as number;
  const w = store.param(`${name}/w`, [kernel, kernel, inC, outC], 'glorot');
  const b = store.param(`${name}/b`, [outC], 'zeros');
  const p = patches2d(x, kernel);
  const [B, H, W] = x.shape as number[];
  const y = tf.add(tf.reshape(tf.matMul(tf.reshape(p, [B * H * W, kernel * kernel * inC]), tf.reshape(w, [kernel * kernel * inC, outC])), [B, H, W, outC]), b);
  return subsample(y, opts.stride ?? 1, 2);
}

/**
 * Diffusion Policy's conditional residual block for [B, L, C] sequences: two (conv, GroupNorm,
 * Mish) layers, FiLM from the embedding after the first, 1x1 projection on the skip path.
 */
export function residualConv1dBlock(store: ParamStore, name: string, x: tf.Tensor, emb: tf.Tensor, outC: number, opts: { kernel?: number; groups?: number } = {}): tf.Tensor {
  const k = opts.kernel ?? 5;
  const g = opts.groups ?? 8;
  let h = mish(groupNorm(store, `${name}/gn1`, conv1d(store, `${name}/conv1`, x, outC, k), g));
  h = film(store, `${name}/film`, h, emb);
  h = mish(groupNorm(store, `${name}/gn2`, conv1d(store, `${name}/conv2`, h, outC, k), g));
  const skip = x.shape[2] === outC ? x : conv1d(store, `${name}/skip`, x, outC, 1);
  return tf.add(h, skip);
}

/** SR3/CorrDiff-style residual block for [B, H, W, C] fields: GroupNorm, SiLU, conv, FiLM, GroupNorm, SiLU, conv. */
export function residualConv2dBlock(store: ParamStore, name: string, x: tf.Tensor, emb: tf.Tensor, outC: number, opts: { kernel?: number; groups?: number } = {}): tf.Tensor {
  const k = opts.kernel ?? 3;
  const g = opts.groups ?? 8;
  let h = conv2d(store, `${name}/conv1`, silu(groupNorm(store, `${name}/gn1`, x, g)), outC, k);
  h = film(store, `${name}/film`, h, emb);
  h = conv2d(store, `${name}/conv2`, silu(groupNorm(store, `${name}/gn2`, h, g)), outC, k);
  const skip = x.shape[3] === outC ? x : conv2d(store, `${name}/skip`, x, outC, 1);
  return tf.add(h, skip);
}
