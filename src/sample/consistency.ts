/**
 * Consistency sampling (Song et al. 2023): the denoiser of a consistency model maps any x_t
 * straight to x0. One step: x0 = f(x_T, T). Multistep: re-noise to each next grid time,
 * x_t = a(t) x0 + s(t) z, and denoise again.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import { checkSamplerArgs, requireRng, runSteps } from './loop.js';
import type { SampleOptions } from './types.js';

export function consistencyMultistep(den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor {
  checkSamplerArgs('consistency', den, x, grid, path);
  const rng = grid.length > 2 ? requireRng('consistency', opts) : undefined;
  return runSteps(grid, x, opts, (xt, i) => {
    const x0 = den(xt, grid[i]);
    const tn = grid[i + 1];
    if (tn === 0 || !rng) return { x: x0.clone(), x0 };
    const next = tf.add(tf.mul(x0, path.alpha(tn)), tf.mul(rng.normal(xt.shape), path.sigma(tn)));
    return { x: next, x0 };
  });
}

/** One network evaluation: x0 = f(x_T, T). Equivalent to consistencyMultistep with grid [T, 0]. */
export function consistencyOneStep(den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor {
  return consistencyMultistep(den, x, [grid[0], 0], path, opts);
}
