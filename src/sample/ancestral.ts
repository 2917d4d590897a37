/**
 * DDPM ancestral sampling and DDIM, written for any path through the Gaussian posterior
 * q(x_s | x_t, x0) of x_t = a x0 + s eps (s < t):
 *   a_ts = a_t / a_s,  s_ts^2 = s_t^2 - a_ts^2 s_s^2
 *   mean = (a_ts s_s^2 / s_t^2) x_t + (a_s s_ts^2 / s_t^2) x0,  var = s_ts^2 s_s^2 / s_t^2
 * DDIM (Song et al. 2021) keeps the marginals with a chosen noise level eta * sqrt(var).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import { checkNumber } from '../util/validate.js';
import { checkSamplerArgs, requireRng, runSteps } from './loop.js';
import type { SampleOptions } from './types.js';

function posteriorVariance(path: NoisePath, t: number, s: number): number {
  const at = path.alpha(t);
  const st = path.sigma(t);
  const as = path.alpha(s);
  const ss = path.sigma(s);
  const ats = at / as;
  const sts2 = Math.max(0, st * st - ats * ats * ss * ss);
  return (sts2 * ss * ss) / (st * st);
}

/** DDIM with stochasticity eta (0: deterministic ODE-like; 1: same marginals as DDPM). */
export function ddim(den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor {
  checkSamplerArgs('ddim', den, x, grid, path);
  const eta = checkNumber('eta', opts.eta ?? 0, { min: 0 });
  const rng = eta > 0 ? requireRng('ddim', opts) : undefined;
  return runSteps(grid, x, opts, (xt, i) => {
    const t = grid[i];
    const s = grid[i + 1];
    const x0 = den(xt, t);
    const at = path.alpha(t);
    const st = path.sigma(t);
    const as = path.alpha(s);
    const ss = path.sigma(s);
    const eps = tf.div(tf.sub(xt, tf.mul(x0, at)), st);
    const noiseStd = eta * Math.sqrt(posteriorVariance(path, t, s));
    const dirScale = Math.sqrt(Math.max(0, ss * ss - noiseStd * noiseStd));
    let next = tf.add(tf.mul(x0, as), tf.mul(eps, dirScale));
    if (noiseStd > 0 && rng) next = tf.add(next, tf.mul(rng.normal(xt.shape), noiseStd));
    return { x: next, x0 };
  });
}

/** DDPM ancestral sampling: the exact posterior mean plus posterior noise. */
export function ddpm(den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor {
  checkSamplerArgs('ddpm', den, x, grid, path);
  const rng = requireRng('ddpm', opts);
  return runSteps(grid, x, opts, (xt, i) => {
    const t = grid[i];
    const s = grid[i + 1];
    const x0 = den(xt, t);
    const at = path.alpha(t);
    const st = path.sigma(t);
    const as = path.alpha(s);
    const ss = path.sigma(s);
    const ats = at / as;
    const sts2 = Math.max(0, st * st - ats * ats * ss * ss);
    const cx = (ats * ss * ss) / (st * st);
    const c0 = (as * sts2) / (st * st);
    const std = Math.sqrt(posteriorVariance(path, t, s));
    let next = tf.add(tf.mul(xt, cx), tf.mul(x0, c0));
    if (std > 0) next = tf.add(next, tf.mul(rng.normal(xt.shape), std));
    return { x: next, x0 };
  });
}
