/** Time embeddings: sinusoidal (Transformer/DDPM) and random Fourier features (Tancik et al. 2020; EDM's NCSN++). */
import * as tf from '@tensorflow/tfjs-core';
import { checkNumber } from '../util/validate.js';
import type { ParamStore } from './params.js';

/** [B] -> [B, dim] with frequencies geometrically spaced from 1 to 1/maxPeriod; `scale` multiplies t first. */
export function sinusoidalEmbedding(t: tf.Tensor, dim: number, opts: { maxPeriod?: number; scale?: number } = {}): tf.Tensor {
  checkNumber('dim', dim, { integer: true, min: 2 });
  if (dim % 2 !== 0) throw new Error(`sinusoidalEmbedding: dim must be even, received ${dim}`);
  return tf.tidy(() => {
    const half = dim / 2;
    const maxPeriod = opts.maxPeriod ?? 10000;
    const freqs = tf.exp(tf.mul(tf.range(0, half), -Math.log(maxPeriod) / half));
    const args = tf.mul(tf.reshape(tf.mul(t, opts.scale ?? 1000), [-1, 1]), tf.reshape(freqs, [1, half]));
    return tf.concat([tf.sin(args), tf.cos(args)], 1);
  });
}

/** Random Fourier features with fixed Gaussian frequencies (stored non-trainably as `name/freq`). */
export function fourierEmbedding(store: ParamStore, name: string, t: tf.Tensor, dim: number, std = 16): tf.Tensor {
  checkNumber('dim', dim, { integer: true, min: 2 });
  const freq = store.param(`${name}/freq`, [1, dim / 2], { normal: std }, { frozen: true });
  const args = tf.mul(tf.reshape(t, [-1, 1]), tf.mul(freq, 2 * Math.PI));
  return tf.concat([tf.sin(args), tf.cos(args)], 1);
}
