/** Samplers by name, and `sample()`: draw the starting noise and run any sampler on any grid. */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import { makeGrid, type GridSpec } from '../grid/grid.js';
import type { NoisePath } from '../path/types.js';
import type { Rng } from '../rng/rng.js';
import { checkNumber, checkOneOf, fail } from '../util/validate.js';
import { ddim, ddpm } from './ancestral.js';
import { consistencyMultistep, consistencyOneStep } from './consistency.js';
import { dpmSolverPlusPlus2M } from './dpmSolver.js';
import { flowEuler, flowMidpoint, flowRk4 } from './flowOde.js';
import { eulerEdm, heunEdm } from './karras.js';
import { eulerMaruyama } from './sde.js';
import type { SampleOptions, Sampler } from './types.js';
import { requireBackend } from '../backend/backend.js';

export const SAMPLERS = {
  ddpm,
  ddim,
  'dpmpp-2m': dpmSolverPlusPlus2M,
  euler: eulerEdm,
  heun: heunEdm,
  'euler-maruyama': eulerMaruyama,
  'flow-euler': flowEuler,
  'flow-midpoint': flowMidpoint,
  'flow-rk4': flowRk4,
  consistency: consistencyMultistep,
  'consistency-1step': consistencyOneStep,
} as const satisfies Record<string, Sampler>;

export type SamplerName = keyof typeof SAMPLERS;
export const SAMPLER_NAMES = Object.keys(SAMPLERS) as SamplerName[];

/** Network evaluations per grid step of each sampler (Heun: 2 except the last step; RK4: 4). */
export const EVALS_PER_STEP: Record<SamplerName, number> = {
  ddpm: 1, ddim: 1, 'dpmpp-2m': 1, euler: 1, heun: 2, 'euler-maruyama': 1,
  'flow-euler': 1, 'flow-midpoint': 2, 'flow-rk4': 4, consistency: 1, 'consistency-1step': 1,
};

export function getSampler(name: string): Sampler {
  return SAMPLERS[checkOneOf('sampler', name, SAMPLER_NAMES)];
}

export interface SampleRequest extends SampleOptions {
  readonly denoiser: Denoiser;
  readonly path: NoisePath;
  /** Output shape, batch first. */
  readonly shape: readonly number[];
  readonly sampler: SamplerName;
  /** An explicit grid or a spec built on the path. */
  readonly grid: readonly number[] | GridSpec;
  readonly rng: Rng;
  /**
   * Scale of the starting noise, x_T = temperature * sigma(T) z (default 1). Below 1 the
   * samples move toward the modes of the learned distribution (low-temperature sampling).
   */
  readonly temperature?: number;
}

/** Draw x_T = sigma(T) z (projected if a projection is given) and run the named sampler. */
export function sample(req: SampleRequest): tf.Tensor {
  if (!req || typeof req !== 'object') fail('sample: expected a request object');
  requireBackend('sample');
  const sampler = getSampler(req.sampler);
  if (!Array.isArray(req.shape) || req.shape.length === 0 || req.shape.some((d) => !Number.isInteger(d) || d <= 0)) {
    fail(`shape: expected positive integer dimensions, received [${String(req.shape)}]`);
  }
  if (!req.rng || typeof (req.rng as { normal?: unknown }).normal !== 'function') {
    fail(`rng: expected an Rng (sample draws the starting noise from it), received ${String(req.rng)}`);
  }
  const grid = Array.isArray(req.grid) ? (req.grid as number[]) : makeGrid(req.path, req.grid as GridSpec);
  const temperature = req.temperature === undefined ? 1 : checkNumber('temperature', req.temperature, { min: 0 });
  const x = tf.tidy(() => tf.mul(req.rng.normal(req.shape), req.path.sigma(grid[0]) * temperature));
  try {
    return sampler(req.denoiser, x, grid, req.path, req);
  } finally {
    x.dispose();
  }
}
