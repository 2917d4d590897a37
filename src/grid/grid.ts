/**
 * Time grids: plain descending arrays of t that end at 0 (clean data). A sampler with a
 * grid of n + 1 points takes n steps. Grids are values, so any sampler accepts any grid.
 */
import type { NoisePath } from '../path/types.js';
import { checkNumber, checkOneOf, fail } from '../util/validate.js';

export type GridKind = 'uniform' | 'karras' | 'logsnr' | 'discrete';
export const GRID_KINDS: readonly GridKind[] = ['uniform', 'karras', 'logsnr', 'discrete'];

export type GridSpec =
  | { kind: 'uniform'; steps: number }
  | { kind: 'karras'; steps: number; rho?: number }
  | { kind: 'logsnr'; steps: number }
  | { kind: 'discrete'; steps: number; trainSteps?: number };

/** n + 1 points linear in t from tMax to 0. */
export function uniformGrid(path: NoisePath, steps: number): number[] {
  checkNumber('steps', steps, { integer: true, min: 1 });
  return Array.from({ length: steps + 1 }, (_, i) => (i === steps ? 0 : path.tMax * (1 - i / steps)));
}

/**
 * Largest scaled noise level sigma/alpha a grid is spaced from. Where alpha vanishes at tMax
 * (rectified flow at t = 1) sigma/alpha is infinite; samplers evaluate such a time at
 * alpha/sigma = 1e-4 (`finiteAlphaTime`), so grids are spaced from the same level.
 */
const MAX_SCALED_SIGMA = 1e4;

/**
 * Where the path's scaled noise level at tMax exceeds this (rectified flow: infinite), Karras
 * grids start at sigma/alpha = 80, EDM's sigma_max: second-order solvers in scaled coordinates
 * (Heun) blow up on a first step from 1e4 (measured: toy SW 1.17 vs 0.03).
 */
const KARRAS_MAX_SCALED_SIGMA = 80;

/** Karras et al. (2022) rho-spacing of the scaled noise level sigma/alpha between tMax and tMin, then 0. */
export function karrasGrid(path: NoisePath, steps: number, rho = 7): number[] {
  checkNumber('steps', steps, { integer: true, min: 1 });
  checkNumber('rho', rho, { min: 1e-3 });
  const sc = (t: number): number => path.sigma(t) / path.alpha(t);
  const start = path.alpha(path.tMax) > 0 ? path.tMax : path.tFromLogSnr(-2 * Math.log(KARRAS_MAX_SCALED_SIGMA));
  const hi = Math.pow(Math.min(sc(start), MAX_SCALED_SIGMA), 1 / rho);
  const lo = Math.pow(sc(path.tMin), 1 / rho);
  const n = steps;
  const pts: number[] = [];
  for (let i = 0; i < n; i++) {
    const sigma = Math.pow(hi + (n === 1 ? 0 : (i / (n - 1)) * (lo - hi)), rho);
    pts.push(i === 0 ? start : path.tFromLogSnr(-2 * Math.log(sigma)));
  }
  pts.push(0);
  return pts;
}

/** Uniform in log-SNR between tMax and tMin, then 0 (DPM-Solver's recommended spacing). */
export function logSnrGrid(path: NoisePath, steps: number): number[] {
  checkNumber('steps', steps, { integer: true, min: 1 });
  const l0 = Math.max(path.logSnr(path.tMax), -2 * Math.log(MAX_SCALED_SIGMA));
  const l1 = path.logSnr(path.tMin);
  const pts: number[] = [];
  for (let i = 0; i < steps; i++) {
    pts.push(i === 0 ? path.tMax : path.tFromLogSnr(l0 + ((steps === 1 ? 0 : i / (steps - 1)) * (l1 - l0))));
  }
  pts.push(0);
  return pts;
}

/** DDPM/DDIM-style: `steps` of the `trainSteps` discrete times k / trainSteps, evenly strided ("trailing"), then 0. */
export function discreteGrid(path: NoisePath, steps: number, trainSteps = 1000): number[] {
  checkNumber('steps', steps, { integer: true, min: 1 });
  checkNumber('trainSteps', trainSteps, { integer: true, min: steps });
  const pts: number[] = [];
  for (let i = 0; i < steps; i++) {
    const k = Math.round(trainSteps - (i * trainSteps) / steps);
    pts.push((k / trainSteps) * path.tMax);
  }
  pts.push(0);
  return pts;
}

export function makeGrid(path: NoisePath, spec: GridSpec): number[] {
  const kind = checkOneOf('grid.kind', spec?.kind, GRID_KINDS);
  switch (kind) {
    case 'uniform':
      return uniformGrid(path, spec.steps);
    case 'karras':
      return karrasGrid(path, spec.steps, (spec as { rho?: number }).rho);
    case 'logsnr':
      return logSnrGrid(path, spec.steps);
    case 'discrete':
      return discreteGrid(path, spec.steps, (spec as { trainSteps?: number }).trainSteps);
  }
}

/** Throws unless the grid is finite, strictly decreasing, within [0, tMax] and ends at 0. */
export function checkGrid(grid: readonly number[], path: NoisePath, name = 'grid'): void {
  if (!Array.isArray(grid) || grid.length < 2) fail(`${name}: expected at least 2 time points, received ${Array.isArray(grid) ? grid.length : typeof grid}`);
  for (let i = 0; i < grid.length; i++) {
    if (!Number.isFinite(grid[i])) fail(`${name}: entry ${i} is not finite (${grid[i]})`);
    if (i > 0 && !(grid[i] < grid[i - 1])) {
      fail(`${name}: must be strictly decreasing (t=0 is data), but entry ${i} (${grid[i]}) >= entry ${i - 1} (${grid[i - 1]})`);
    }
  }
  if (grid[0] > path.tMax * (1 + 1e-9)) fail(`${name}: starts at ${grid[0]}, beyond the path's tMax ${path.tMax}`);
  if (grid[grid.length - 1] !== 0) fail(`${name}: must end at 0 (clean data), ends at ${grid[grid.length - 1]}`);
}
