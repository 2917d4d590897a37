/** Residual blocks with FiLM conditioning: MLP, 1D temporal convolution and 2D convolution. */
import * as tf from '@tensorflow/tfjs-core';
import { dense, film, groupNorm, layerNorm, mish, recordingGradients, silu } from './layers.js';
import type { ParamStore } from './params.js';
import { fail } from '../util/validate.js';

/** h + W2 silu(FiLM(LN(W1 silu(h)), emb)): width-preserving residual MLP block. */
export function residualMlpBlock(store: ParamStore, name: string, h: tf.Tensor, emb: tf.Tensor): tf.Tensor {
  const w = h.shape[h.rank - 1];
  let y = dense(store, `${name}/fc1`, silu(h), w);
  y = film(store, `${name}/film`, layerNorm(store, `${name}/ln`, y), emb);
  y = dense(store, `${name}/fc2`, silu(y), w, { init: 'zeros' });
  return tf.add(h, y);
}

/*
 * Convolutions. The tfjs WASM backend has no Conv2DBackpropFilter kernel, so tf.conv1d /
 * tf.conv2d cannot be differentiated there, and its Conv2DBackpropInput kernel is a slow loop.
 * `trainableConv` therefore runs the forward pass with the native conv2d (XNNPACK on WASM; a
 * 1D convolution is a 2D one with H = 1) and supplies its own gradient, built from forward
 * convolutions only:
 * - dx: stride-1 convolution of dy (zero-upsampled when strided) with the spatially flipped,
 *   in/out-transposed filter;
 * - dW: a convolution with batch and channel axes swapped: x as [C, H, W, B] convolved with dy
 *   as the filter [Ho, Wo, B, O] (dilated by the stride) gives [C, kh, kw, O];
 * - db: the sum of dy.
 * The same code runs (and is tested) on every backend. benchmarks/conv.ts compares it with
 * im2col + matMul and other candidates: on WASM, forward+backward is 1.0-1.9x faster than
 * im2col for [128, L, 32..128] k=5 (~10% slower at 256 channels, where both are bound by the
 * same products), ~2.6x for the strided k=3, ~6x for 2D k=3; the forward alone up to 2x (1D).
 *
 * Padding is 'same' with (k-1)/2 before and the rest after (odd kernels: symmetric); with a
 * stride s the output keeps positions 0, s, 2s, ... of the stride-1 result (ceil(L/s) of them),
 * i.e. PyTorch's Conv1d(padding=(k-1)/2, stride=s), not TensorFlow's asymmetric strided 'same'.
 */
type Pair = [number, number];
type Pad4 = [Pair, Pair, Pair, Pair];

const before = (k: number): number => Math.floor((k - 1) / 2);
const after = (k: number): number => k - 1 - before(k);

/**
 * The filter with both spatial axes reversed, as a product with the exchange matrix (exact):
 * tf.reverse and tf.gather are slow element loops on WASM (~10x slower for a 5x128x128 filter).
 */
function flipTaps(w: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, inC, outC] = w.shape;
  const n = kh * kw;
  if (n === 1) return w;
  const exchange = tf.tensor2d(Array.from({ length: n * n }, (_, i) => (Math.floor(i / n) + (i % n) === n - 1 ? 1 : 0)), [n, n]);
  return tf.reshape(tf.matMul(exchange, tf.reshape(w, [n, inC * outC])), w.shape);
}

/** dL/dx: stride-1 convolution of dy (s-1 zeros after each entry) by the flipped, transposed filter. */
function convInputGrad(dy: tf.Tensor4D, w: tf.Tensor4D, xShape: number[], [sh, sw]: Pair): tf.Tensor4D {
  const [B, Ho, Wo, outC] = dy.shape;
  const [kh, kw] = w.shape;
  const [, H, W] = xShape;
  let u = dy;
  if (sh > 1 || sw > 1) {
    const spread = tf.pad(tf.reshape(dy, [B, Ho, 1, Wo, 1, outC]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
    u = tf.reshape(spread, [B, Ho * sh, Wo * sw, outC]);
  }
  // Padding before is after(k), after is H + before(k) - Ho*sh; where that is negative, the
  // entries cut off are zeros.
  const [padH, padW] = [H + before(kh) - Ho * sh, W + before(kw) - Wo * sw];
  if (padH < 0 || padW < 0) u = tf.slice(u, 0, [B, Ho * sh + Math.min(padH, 0), Wo * sw + Math.min(padW, 0), outC]);
  const pad: Pad4 = [[0, 0], [after(kh), Math.max(padH, 0)], [after(kw), Math.max(padW, 0)], [0, 0]];
  return tf.conv2d(u, tf.transpose(flipTaps(w), [0, 1, 3, 2]), 1, pad);
}

/**
 * dL/dW[i, j, c, o] = sum over b, y, x of x_pad[b, y*sh + i, x*sw + j, c] * dy[b, y, x, o]: a
 * convolution of x as C images [C, H, W] with B channels by dy as the filter [Ho, Wo, B, O]
 * (dilated by the stride), giving [C, kh, kw, O].
 */
function convFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number, [sh, sw]: Pair): tf.Tensor4D {
  const [, H, W] = x.shape;
  // Output size H + before + padAfter - (Ho-1)*sh; the smallest padAfter >= 0 giving >= kh.
  const pad: Pad4 = [[0, 0], [before(kh), Math.max(0, after(kh) - ((H - 1) % sh))], [before(kw), Math.max(0, after(kw) - ((W - 1) % sw))], [0, 0]];
  let g = tf.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, pad, 'NHWC', [sh, sw]);
  if (g.shape[1] !== kh || g.shape[2] !== kw) g = tf.slice(g, 0, [-1, kh, kw, -1]);
  return tf.transpose(g, [1, 2, 0, 3]);
}

/** Whether a gradient tape is recording (inside tf.grad / variableGrads). */
/** conv2d(x, w) + b over [B, H, W, C] with the padding above, differentiable on every backend. */
function trainableConv(x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor, stride: Pair): tf.Tensor4D {
  const [kh, kw] = w.shape;
  if (!recordingGradients()) {
    // Inference: one fused kernel (conv + bias), without the custom-gradient bookkeeping, which
    // cost more than the convolution itself for the small convs of a policy network.
    const pad: Pad4 = [[0, 0], [before(kh), after(kh)], [before(kw), after(kw)], [0, 0]];
    return tf.fused.conv2d({ x, filter: w, strides: stride, pad, bias: b });
  }
  const conv = tf.customGrad<tf.Tensor4D>((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, w, b, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.Tensor, tf.GradSaveFunc];
    save([x, w]);
    const pad: Pad4 = [[0, 0], [before(kh), after(kh)], [before(kw), after(kw)], [0, 0]];
    return {
      value: tf.add(tf.conv2d(x, w, stride, pad), b),
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
        return [convInputGrad(dy, ws, xs.shape, stride), convFilterGrad(xs, dy, kh, kw, stride), tf.sum(dy, [0, 1, 2])];
      },
    };
  });
  return conv(x, w, b);
}

/**
 * 1D convolution over [B, L, C] with 'same' padding; weight [kernel, inC, outC]. Also accepts
 * the image layout [B, 1, L, C] and then returns [B, 1, L', C'] without reshaping: networks made
 * of many small convolutions keep that layout throughout (two kernels fewer per convolution).
 */
export function conv1d(store: ParamStore, name: string, x: tf.Tensor, outC: number, kernel: number, opts: { stride?: number } = {}): tf.Tensor {
  if (x.rank !== 3 && !(x.rank === 4 && x.shape[1] === 1)) fail(`conv1d '${name}': expected x of shape [B, L, C] or [B, 1, L, C], received [${x.shape.join(', ')}]`);
  const image = x.rank === 4;
  const [B, L, inC] = (image ? [x.shape[0], x.shape[2], x.shape[3]] : x.shape) as [number, number, number];
  const w = store.param(`${name}/w`, [kernel, inC, outC], 'glorot');
  const b = store.param(`${name}/b`, [outC], 'zeros');
  const y = trainableConv(image ? (x as tf.Tensor4D) : tf.reshape(x, [B, 1, L, inC]), tf.reshape(w, [1, kernel, inC, outC]), b, [1, opts.stride ?? 1]);
  return image ? y : tf.reshape(y, [B, y.shape[2], outC]);
}

/** 2D convolution over [B, H, W, C] with 'same' padding; weight [kernel, kernel, inC, outC]. */
export function conv2d(store: ParamStore, name: string, x: tf.Tensor, outC: number, kernel: number, opts: { stride?: number } = {}): tf.Tensor {
  const inC = x.shape[3] as number;
  const w = store.param(`${name}/w`, [kernel, kernel, inC, outC], 'glorot');
  const b = store.param(`${name}/b`, [outC], 'zeros');
  const s = opts.stride ?? 1;
  return trainableConv(x as tf.Tensor4D, w as tf.Tensor4D, b, [s, s]);
}

/**
 * Diffusion Policy's conditional residual block for [B, L, C] sequences: two (conv, GroupNorm,
 * Mish) layers, FiLM from the embedding after the first, 1x1 projection on the skip path.
 */
export function residualConv1dBlock(store: ParamStore, name: string, x: tf.Tensor, emb: tf.Tensor, outC: number, opts: { kernel?: number; groups?: number; embActivated?: boolean } = {}): tf.Tensor {
  const k = opts.kernel ?? 5;
  const g = opts.groups ?? 8;
  let h = mish(groupNorm(store, `${name}/gn1`, conv1d(store, `${name}/conv1`, x, outC, k), g));
  h = film(store, `${name}/film`, h, emb, { activated: opts.embActivated });
  h = mish(groupNorm(store, `${name}/gn2`, conv1d(store, `${name}/conv2`, h, outC, k), g));
  const skip = x.shape[x.rank - 1] === outC ? x : conv1d(store, `${name}/skip`, x, outC, 1);
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
