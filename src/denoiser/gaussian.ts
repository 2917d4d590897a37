/**
 * Closed-form optimal denoiser for Gaussian data N(mu, Sigma): the test oracle of the samplers.
 *
 * With x_t = a x0 + s eps:  E[x0 | x_t] = mu + Sigma a (a^2 Sigma + s^2 I)^-1 (x_t - a mu).
 * Computed through the eigendecomposition of Sigma (mathjs), so any time costs O(d^2).
 */
import * as tf from '@tensorflow/tfjs-core';
import { eigs } from 'mathjs';
import type { NoisePath } from '../path/types.js';
import { fail } from '../util/validate.js';
import type { Denoiser } from './denoiser.js';

export interface GaussianSpec {
  readonly mean: readonly number[];
  readonly cov: readonly (readonly number[])[];
}

export function gaussianDenoiser(spec: GaussianSpec, path: NoisePath): Denoiser {
  const d = spec.mean.length;
  if (d === 0) fail('mean: expected at least one dimension');
  if (spec.cov.length !== d || spec.cov.some((r) => r.length !== d)) fail(`cov: expected a ${d}x${d} matrix`);
  const { values, eigenvectors } = eigs(spec.cov.map((r) => [...r])) as unknown as {
    values: number[];
    eigenvectors: { value: number; vector: number[] }[];
  };
  const lam = eigenvectors.map((e) => e.value);
  if (lam.some((l) => l < -1e-9)) fail('cov: expected a positive semi-definite matrix');
  void values;
  const U = eigenvectors.map((e) => e.vector); // columns as rows: U[k] is eigenvector k
  return (x, t) =>
    tf.tidy(() => {
      if (x.rank !== 2 || x.shape[1] !== d) fail(`x: expected shape [*, ${d}], received [${x.shape.join(', ')}]`);
      const a = path.alpha(t);
      const s = path.sigma(t);
      // gain_k = a lam_k / (a^2 lam_k + s^2) in the eigenbasis
      const gain = lam.map((l) => (s === 0 && a !== 0 ? 1 / a : (a * l) / (a * a * l + s * s)));
      const Ut = tf.tensor2d(U); // [k, d]
      const mu = tf.tensor1d(spec.mean as number[]);
      const centred = tf.sub(x, tf.mul(mu, a)); // [B, d]
      const proj = tf.matMul(centred, tf.transpose(Ut)); // coordinates in the eigenbasis [B, k]
      const scaled = tf.mul(proj, tf.tensor1d(gain));
      return tf.add(mu, tf.matMul(scaled, Ut));
    });
}
