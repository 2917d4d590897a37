/**
 * Euler-Maruyama on the reverse-time SDE (Song et al. 2021) for any path:
 *   forward  dx = f x dt + g dW,   f = a'/a,   g^2 = d(s^2)/dt - 2 f s^2
 *   reverse  dx = [f x - g^2 score] dt + g dW_bar,   score = (a x0 - x) / s^2
 * The last step (to t = 0) returns the denoised estimate, as is standard.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import { checkSamplerArgs, finiteAlphaTime, requireRng, runSteps } from './loop.js';
import type { SampleOptions } from './types.js';

export function eulerMaruyama(den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor {
  checkSamplerArgs('euler-maruyama', den, x, grid, path);
  const rng = requireRng('euler-maruyama', opts);
  return runSteps(grid, x, opts, (xt, i) => {
    const t = finiteAlphaTime(path, grid[i]);
    const tn = grid[i + 1];
    const x0 = den(xt, t);
    if (tn === 0) return { x: x0.clone(), x0 };
    const a = path.alpha(t);
    const s = path.sigma(t);
    const f = path.dAlpha(t) / a;
    const g2 = Math.max(0, 2 * s * path.dSigma(t) - 2 * f * s * s);
    const h = grid[i] - tn;
    const score = tf.div(tf.sub(tf.mul(x0, a), xt), s * s);
    const drift = tf.sub(tf.mul(xt, f), tf.mul(score, g2));
    const next = tf.add(tf.sub(xt, tf.mul(drift, h)), tf.mul(rng.normal(xt.shape), Math.sqrt(g2 * h)));
    return { x: next, x0 };
  });
}
