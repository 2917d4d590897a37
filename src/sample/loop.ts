/** The shared sampling loop: validation, projection, per-step callback and memory hygiene. */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import { checkGrid } from '../grid/grid.js';
import type { NoisePath } from '../path/types.js';
import type { Rng } from '../rng/rng.js';
import { checkRankAtLeast, fail } from '../util/validate.js';
import type { SampleOptions } from './types.js';

export interface StepOutput {
  readonly x: tf.Tensor;
  readonly x0: tf.Tensor;
}

/** Validates common arguments of every sampler. */
export function checkSamplerArgs(name: string, den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath): void {
  if (typeof den !== 'function') fail(`${name}: denoiser must be a function (x, t) => x0`);
  checkRankAtLeast(`${name}: x`, x, 1);
  checkGrid(grid, path);
}

export function requireRng(name: string, opts: SampleOptions | undefined): Rng {
  if (!opts?.rng) fail(`${name}: options.rng is required (this sampler draws noise)`);
  return opts.rng;
}

/**
 * Runs `step(x, i)` for i = 0..n-1 inside tf.tidy. The step maps the state at grid[i] to
 * the state at grid[i + 1]. Returns the final state; every intermediate is disposed.
 */
export function runSteps(
  grid: readonly number[],
  x: tf.Tensor,
  opts: SampleOptions | undefined,
  step: (x: tf.Tensor, i: number) => StepOutput,
): tf.Tensor {
  const n = grid.length - 1;
  const project = opts?.project;
  let cur = project ? tf.tidy(() => project(x, grid[0])) : x.clone();
  for (let i = 0; i < n; i++) {
    const prev = cur;
    const out = tf.tidy(() => {
      const r = step(prev, i);
      const nx = project ? project(r.x, grid[i + 1]) : r.x;
      return { x: nx, x0: r.x0 };
    });
    prev.dispose();
    cur = out.x;
    if (opts?.onStep) opts.onStep({ step: i, steps: n, t: grid[i], tNext: grid[i + 1], x: out.x, x0: out.x0 });
    out.x0.dispose();
  }
  return cur;
}

/**
 * Largest usable time for samplers that divide by alpha (Euler/Heun in scaled coordinates,
 * the reverse SDE): where alpha vanishes (rectified flow at t = 1) evaluate at log-SNR -18.4
 * (alpha/sigma = 1e-4) instead; the state there is indistinguishable from pure noise.
 */
export function finiteAlphaTime(path: NoisePath, t: number): number {
  if (path.alpha(t) > 1e-4 * path.sigma(t)) return t;
  return path.tFromLogSnr(2 * Math.log(1e-4));
}
