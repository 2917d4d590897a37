/**
 * Euler and Heun on the probability-flow ODE in EDM's scaled coordinates (Karras et al. 2022):
 * with xs = x / alpha and sig = sigma / alpha, every path becomes dxs/dsig = (xs - x0) / sig.
 * Optional stochastic churn (their Algorithm 2) is one shared helper.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import type { Rng } from '../rng/rng.js';
import { checkNumber } from '../util/validate.js';
import { checkSamplerArgs, finiteAlphaTime, requireRng, runSteps } from './loop.js';
import type { SampleOptions } from './types.js';

const scaled = (path: NoisePath, t: number): number => (t <= 0 ? 0 : path.sigma(t) / path.alpha(t));

/** Time whose scaled noise level is `sig`, clamped to the path's domain. */
function timeOfScaledSigma(path: NoisePath, sig: number): number {
  return Math.min(path.tMax, path.tFromLogSnr(-2 * Math.log(sig)));
}

/**
 * Churn: raise the noise level of the scaled state from sig to sigHat = sig (1 + gamma) by
 * adding fresh noise. Returns the new scaled state and its time.
 */
export function churn(
  xs: tf.Tensor,
  t: number,
  path: NoisePath,
  steps: number,
  rng: Rng,
  c: NonNullable<SampleOptions['churn']>,
): { xs: tf.Tensor; t: number } {
  const sig = scaled(path, t);
  const sTmin = c.sTmin ?? 0;
  const sTmax = c.sTmax ?? Infinity;
  const gamma = sig >= sTmin && sig <= sTmax ? Math.min(c.amount / steps, Math.SQRT2 - 1) : 0;
  if (gamma <= 0) return { xs, t };
  const tHat = timeOfScaledSigma(path, sig * (1 + gamma));
  const sigHat = scaled(path, tHat);
  const std = Math.sqrt(Math.max(0, sigHat * sigHat - sig * sig)) * (c.sNoise ?? 1);
  return { xs: tf.add(xs, tf.mul(rng.normal(xs.shape), std)), t: tHat };
}

function karrasSampler(name: string, second: boolean) {
  return (den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor => {
    checkSamplerArgs(name, den, x, grid, path);
    const ch = opts.churn && opts.churn.amount > 0 ? opts.churn : undefined;
    if (ch) checkNumber('churn.amount', ch.amount, { min: 0 });
    const rng = ch ? requireRng(name, opts) : undefined;
    const n = grid.length - 1;
    return runSteps(grid, x, opts, (xt, i) => {
      let t = finiteAlphaTime(path, grid[i]);
      const tn = grid[i + 1];
      let xs = tf.div(xt, path.alpha(t));
      if (ch && rng) ({ xs, t } = churn(xs, t, path, n, rng, ch));
      const sig = scaled(path, t);
      const sigN = scaled(path, tn);
      const x0 = den(tf.mul(xs, path.alpha(t)), t);
      const d = tf.div(tf.sub(xs, x0), sig);
      let xsN = tf.add(xs, tf.mul(d, sigN - sig));
      if (second && tn > 0) {
        const x0n = den(tf.mul(xsN, path.alpha(tn)), tn);
        const dn = tf.div(tf.sub(xsN, x0n), sigN);
        xsN = tf.add(xs, tf.mul(tf.add(d, dn), 0.5 * (sigN - sig)));
      }
      return { x: tf.mul(xsN, path.alpha(tn)), x0 };
    });
  };
}

/** Euler on the probability-flow ODE (EDM form), optional churn. */
export const eulerEdm = karrasSampler('euler', false);
/** Heun's second-order method (EDM Algorithm 1/2), optional churn; last step is Euler. */
export const heunEdm = karrasSampler('heun', true);
