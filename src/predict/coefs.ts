import * as tf from '@tensorflow/tfjs-core';
import type { NoisePath } from '../path/types.js';
import type { PathCoefs } from './convert.js';

/** Scalar path coefficients at time t. */
export function coefsAt(path: NoisePath, t: number): PathCoefs {
  return { a: path.alpha(t), s: path.sigma(t), da: path.dAlpha(t), ds: path.dSigma(t) };
}

/**
 * Per-sample coefficients for a batch of times, shaped [B, 1, ..., 1] to broadcast against
 * a batch of rank `rank`. Caller owns the returned tensors (use inside tf.tidy).
 */
export function coefsForBatch(path: NoisePath, t: ArrayLike<number>, rank: number): PathCoefs {
  const shape = [t.length, ...Array(Math.max(0, rank - 1)).fill(1)];
  const make = (f: (v: number) => number): tf.Tensor => {
    const out = new Float32Array(t.length);
    for (let i = 0; i < t.length; i++) out[i] = f(t[i]);
    return tf.tensor(out, shape);
  };
  return { a: make(path.alpha), s: make(path.sigma), da: make(path.dAlpha), ds: make(path.dSigma) };
}
