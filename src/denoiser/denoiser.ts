/**
 * The denoiser: the one quantity every sampler and guidance term is written against.
 *
 * A `Denoiser` maps a noisy batch x_t at a scalar time t to an estimate of the clean data x0.
 * Conditioning (observations, class labels, low-resolution fields) is closed over when the
 * denoiser is built, so samplers never see it. Guidance terms are `Denoiser -> Denoiser`
 * wrappers and compose.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NoisePath } from '../path/types.js';
import { coefsAt } from '../predict/coefs.js';
import { toX0Eps, type Prediction } from '../predict/convert.js';
import { checkOneOf } from '../util/validate.js';

export type Denoiser = (x: tf.Tensor, t: number) => tf.Tensor;

/**
 * A network: noisy input, one time feature per sample ([B]), optional conditioning
 * (anything the network accepts, e.g. [B, C] observation embeddings or [B, H, W, C] fields).
 */
export type Network = (x: tf.Tensor, tFeature: tf.Tensor, cond?: tf.Tensor) => tf.Tensor;

/** 'none': the network output is the prediction; 'edm': Karras et al. preconditioning (network output F, x0 = c_skip x + c_out F). */
export type Precond = 'none' | 'edm';

export interface Parameterization {
  readonly path: NoisePath;
  /** What the network's (preconditioned) output means. With precond 'edm' this is always 'x0'. */
  readonly prediction: Prediction;
  readonly precond?: Precond;
}

/** The scalar time feature fed to the network: log(sigma)/4 for EDM (as in Karras et al.), t otherwise. */
export function timeFeature(path: NoisePath, t: number): number {
  if (path.kind === 'edm') return 0.25 * Math.log(Math.max(t, 1e-20));
  return t;
}

/** EDM preconditioning scalars in scaled coordinates (x / alpha, sigma / alpha). */
export function edmScalings(path: NoisePath, t: number): { cSkip: number; cOut: number; cIn: number } {
  const a = path.alpha(t);
  const s = path.sigma(t) / a;
  const sd = path.sigmaData;
  const denom = s * s + sd * sd;
  // x0 = c_skip * (x / a) + c_out * F(c_in * (x / a))
  return { cSkip: (sd * sd) / denom, cOut: (s * sd) / Math.sqrt(denom), cIn: 1 / (a * Math.sqrt(denom)) };
}

/**
 * Network output in the parameterisation's prediction space for a batch of per-sample times.
 * Used by both training (per-sample t) and sampling (all t equal).
 */
export function predictBatch(net: Network, p: Parameterization, xt: tf.Tensor, t: ArrayLike<number>, cond?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const feat = tf.tensor1d(Array.from(t, (v) => timeFeature(p.path, v)));
    if ((p.precond ?? 'none') === 'none') return net(xt, feat, cond);
    const shape = [t.length, ...Array(xt.rank - 1).fill(1)];
    const sc = Array.from(t, (v) => edmScalings(p.path, v));
    const cIn = tf.tensor(sc.map((s) => s.cIn), shape);
    const cSkip = tf.tensor(Array.from(t, (v, i) => sc[i].cSkip / p.path.alpha(v)), shape);
    const cOut = tf.tensor(sc.map((s) => s.cOut), shape);
    const f = net(tf.mul(xt, cIn), feat, cond);
    return tf.add(tf.mul(xt, cSkip), tf.mul(f, cOut));
  });
}

/** Build the sampler-facing denoiser (x, t) -> x0 from a network and its parameterisation. */
export function wrapNetwork(net: Network, p: Parameterization, cond?: tf.Tensor): Denoiser {
  const prediction = (p.precond ?? 'none') === 'edm' ? 'x0' : checkOneOf('prediction', p.prediction, ['eps', 'x0', 'v', 'score', 'velocity']);
  return (x, t) =>
    tf.tidy(() => {
      const batch = x.shape[0];
      let c = cond;
      if (cond && cond.shape[0] !== batch && cond.shape[0] === 1) c = tf.tile(cond, [batch, ...Array(cond.rank - 1).fill(1)]);
      const out = predictBatch(net, p, x, new Float32Array(batch).fill(t), c);
      if (prediction === 'x0') return out;
      return toX0Eps(out, prediction, x, coefsAt(p.path, t)).x0;
    });
}

