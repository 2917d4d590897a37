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

/** 1D convolution over [B, L, C] with 'same' padding. */
export function conv1d(store: ParamStore, name: string, x: tf.Tensor, outC: number, kernel: number, opts: { stride?: number } = {}): tf.Tensor {
  const inC = x.shape[2] as number;
  const w = store.param(`${name}/w`, [kernel, inC, outC], 'glorot');
  const b = store.param(`${name}/b`, [outC], 'zeros');
  return tf.add(tf.conv1d(x as tf.Tensor3D, w as tf.Tensor3D, opts.stride ?? 1, 'same'), b);
}

/** 2D convolution over [B, H, W, C] with 'same' padding. */
export function conv2d(store: ParamStore, name: string, x: tf.Tensor, outC: number, kernel: number, opts: { stride?: number } = {}): tf.Tensor {
  const inC = x.shape[3] as number;
  const w = store.param(`${name}/w`, [kernel, kernel, inC, outC], 'glorot');
  const b = store.param(`${name}/b`, [outC], 'zeros');
  return tf.add(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, opts.stride ?? 1, 'same'), b);
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
