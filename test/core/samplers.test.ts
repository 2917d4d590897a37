/**
 * Every sampler against the analytic optimal denoiser of a correlated 2D Gaussian.
 *
 * Target N(mu, Sigma), mu = (1, -0.5), Sigma = [[1, 0.6], [0.6, 0.8]], N = 4000 samples.
 * Monte Carlo standard errors: mean_i sqrt(Sigma_ii / N) (0.016, 0.014); sample covariance
 * entry (i, j) sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / N) (0.022, 0.017, 0.018). Tolerances
 * are 4 standard errors plus a discretisation allowance per sampler family, taken from
 * measurements (printed by the tests):
 *  - for the deterministic samplers the exact probability-flow map of a Gaussian is known
 *    (per eigen-direction, x0 - mu = sqrt(lam / (a_T^2 lam + s_T^2)) (x_T - a_T mu)), so
 *    their error is also measured sample by sample against it, free of Monte Carlo error;
 *  - DDPM with an exact posterior-mean denoiser under-disperses at coarse steps (it drops
 *    the c0^2 Cov[x0 | x_t] term of the true reverse kernel), so the stochastic samplers run
 *    200 steps; first-order ODE samplers 100, second-order ones 50 (100 on rectified flow)
 *    and RK4 25.
 * Measured stiffness on rectified flow (max |cov - Sigma|, N = 4000; Euler/Heun evaluate t = 1
 * at sigma/alpha = 1e4, see finiteAlphaTime):
 *   uniform grid   10 steps: Heun 110, Euler-Maruyama 524 (diverge; DPM-Solver++ 0.06)
 *                  25 steps: Heun 1.19, Euler-Maruyama 1.73;  100/200 steps: 0.03, 0.02
 *   karras grid    10 steps: Heun 3.7, Euler-Maruyama 8790
 *                  25 steps: Heun 0.25, Euler-Maruyama 0.12;  100/200 steps: 0.03, 0.04
 * so neither grid makes them usable at 10 steps and both work at 100+. On rectified flow the
 * karras grid spends about half its points above sigma/alpha = 80, so first-order ODE
 * samplers are worse there than on the uniform grid (0.14 vs 0.07 at 100 steps).
 */
import * as tf from '@tensorflow/tfjs-core';
import { eigs } from 'mathjs';
import { describe, expect, it } from 'vitest';
import { gaussianDenoiser, type Denoiser } from '../../src/denoiser/index.js';
import { makeGrid } from '../../src/grid/index.js';
import { pathFromSpec, type NoisePath, type PathKind } from '../../src/path/index.js';
import { Rng } from '../../src/rng/rng.js';
import { getSampler, sample, SAMPLER_NAMES, SAMPLERS, type SamplerName, type StepInfo } from '../../src/sample/index.js';

const MEAN = [1, -0.5];
const COV = [[1, 0.6], [0.6, 0.8]];
const N = 4000;
const SPEC = { mean: MEAN, cov: COV };

const seMean = (i: number, n = N): number => Math.sqrt(COV[i][i] / n);
const seCov = (i: number, j: number, n = N): number => Math.sqrt((COV[i][i] * COV[j][j] + COV[i][j] ** 2) / n);

interface Stats {
  mean: number[];
  cov: number[][];
}

function stats(rows: number[][]): Stats {
  const n = rows.length;
  const m = [0, 0];
  for (const r of rows) for (let i = 0; i < 2; i++) m[i] += r[i] / n;
  const c = [[0, 0], [0, 0]];
  for (const r of rows) for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) c[i][j] += ((r[i] - m[i]) * (r[j] - m[j])) / (n - 1);
  return { mean: m, cov: c };
}

const covErr = (c: number[][], ref: number[][] = COV): number => Math.max(...[0, 1].flatMap((i) => [0, 1].map((j) => Math.abs(c[i][j] - ref[i][j]))));

/** The exact probability-flow ODE map from x_T (at alpha a, sigma s) to t = 0 for N(MEAN, COV). */
const EIG = (eigs(COV.map((r) => [...r])) as unknown as { eigenvectors: { value: number; vector: number[] }[] }).eigenvectors;
function exactTransport(xT: number[][], a: number, s: number): number[][] {
  return xT.map((x) => {
    const out = [...MEAN];
    for (const { value: lam, vector: u } of EIG) {
      const g = Math.sqrt(lam / (a * a * lam + s * s));
      const p = (x[0] - a * MEAN[0]) * u[0] + (x[1] - a * MEAN[1]) * u[1];
      out[0] += g * p * u[0];
      out[1] += g * p * u[1];
    }
    return out;
  });
}

const STOCHASTIC: readonly SamplerName[] = ['ddpm', 'euler-maruyama'];
const SECOND_ORDER: readonly SamplerName[] = ['dpmpp-2m', 'heun', 'flow-midpoint', 'flow-rk4'];
const FIRST_ORDER: readonly SamplerName[] = ['ddim', 'euler', 'flow-euler'];
const EXACT_SAMPLERS = [...FIRST_ORDER, ...SECOND_ORDER, ...STOCHASTIC];

/** Steps per sampler: about 100 denoiser evaluations for the ODE solvers, 200 for the stochastic ones. */
function stepsFor(name: SamplerName, kind: PathKind): number {
  if (STOCHASTIC.includes(name)) return 200;
  if (name === 'flow-rk4') return 25;
  // Heun and DPM-Solver++ need 100 on rectified flow: at 50 their first steps (from sigma/alpha = 1e4) cost 0.1-0.24 per sample.
  if (kind === 'rectified-flow') return 100;
  return SECOND_ORDER.includes(name) ? 50 : 100;
}

/** Discretisation allowance on covariance entries and on per-sample distance to the exact map. */
function allowance(name: SamplerName): { cov: number; transport: number } {
  if (SECOND_ORDER.includes(name)) return { cov: 0.02, transport: 0.05 };
  if (FIRST_ORDER.includes(name)) return { cov: 0.06, transport: 0.15 };
  return { cov: 0.06, transport: Infinity };
}

interface Case {
  readonly path: PathKind;
  readonly grid: 'uniform' | 'karras';
  readonly samplers: readonly SamplerName[];
}

const CASES: readonly Case[] = [
  { path: 'vp-linear', grid: 'uniform', samplers: EXACT_SAMPLERS },
  { path: 'edm', grid: 'karras', samplers: EXACT_SAMPLERS },
  { path: 'rectified-flow', grid: 'uniform', samplers: EXACT_SAMPLERS },
  // The samplers the brief calls stiff on rectified flow, on the grid that keeps them stable.
  { path: 'rectified-flow', grid: 'karras', samplers: ['heun', 'dpmpp-2m', 'euler-maruyama'] },
];

function run(name: SamplerName, den: Denoiser, path: NoisePath, grid: number[], n: number, seed: number): { xT: number[][]; out: number[][] } {
  const xT = tf.tidy(() => tf.mul(new Rng(seed).normal([n, 2]), path.sigma(grid[0])));
  const y = SAMPLERS[name](den, xT, grid, path, { rng: new Rng(seed + 1000) });
  const res = { xT: xT.arraySync() as number[][], out: y.arraySync() as number[][] };
  tf.dispose([xT, y]);
  return res;
}

describe.each(CASES)('samplers on $path with a $grid grid reproduce N(mu, Sigma)', ({ path: kind, grid: gridKind, samplers }) => {
  const path = pathFromSpec(kind);
  const den = gaussianDenoiser(SPEC, path);

  it.each(samplers)('%s', (name) => {
    const steps = stepsFor(name, kind);
    const grid = makeGrid(path, { kind: gridKind, steps });
    const { xT, out } = run(name, den, path, grid, N, 17);
    const s = stats(out);
    const al = allowance(name);
    let transportErr = 0;
    let covVsTransport = 0;
    if (!STOCHASTIC.includes(name)) {
      const ex = exactTransport(xT, path.alpha(grid[0]), path.sigma(grid[0]));
      for (let i = 0; i < N; i++) transportErr = Math.max(transportErr, Math.abs(out[i][0] - ex[i][0]), Math.abs(out[i][1] - ex[i][1]));
      covVsTransport = covErr(s.cov, stats(ex).cov);
    }
    console.log(
      `${kind} ${gridKind} ${name} (${steps} steps): mean (${s.mean.map((v) => v.toFixed(3)).join(', ')}), ` +
        `cov [[${s.cov[0][0].toFixed(3)}, ${s.cov[0][1].toFixed(3)}], [${s.cov[1][0].toFixed(3)}, ${s.cov[1][1].toFixed(3)}]], ` +
        `max |cov - Sigma| ${covErr(s.cov).toFixed(4)}` +
        (STOCHASTIC.includes(name) ? '' : `, vs exact map: max sample err ${transportErr.toFixed(4)}, cov err ${covVsTransport.toFixed(4)}`),
    );
    for (let i = 0; i < 2; i++) {
      expect(Math.abs(s.mean[i] - MEAN[i]), `mean[${i}]`).toBeLessThan(4 * seMean(i) + 0.01);
      for (let j = 0; j < 2; j++) {
        expect(Math.abs(s.cov[i][j] - COV[i][j]), `cov[${i}][${j}]`).toBeLessThan(4 * seCov(i, j) + al.cov);
      }
    }
    if (!STOCHASTIC.includes(name)) expect(transportErr).toBeLessThan(al.transport);
  });
});

describe('solver order at 10 steps (vp-linear, uniform grid, N = 20000)', () => {
  it('DPM-Solver++ 2M and Heun are at least 2x closer to the target covariance than Euler', () => {
    const path = pathFromSpec('vp-linear');
    const den = gaussianDenoiser(SPEC, path);
    const grid = makeGrid(path, { kind: 'uniform', steps: 10 });
    const n = 20000;
    const err: Record<string, number> = {};
    const errMap: Record<string, number> = {};
    for (const name of ['euler', 'flow-euler', 'dpmpp-2m', 'heun'] as SamplerName[]) {
      const { xT, out } = run(name, den, path, grid, n, 5);
      const c = stats(out).cov;
      err[name] = covErr(c);
      errMap[name] = covErr(c, stats(exactTransport(xT, path.alpha(1), path.sigma(1))).cov);
    }
    console.log('10-step max |cov - Sigma|:', JSON.stringify(err), '| vs exact map of the same noise:', JSON.stringify(errMap));
    // Monte Carlo error of one covariance entry at n = 20000 is <= 0.01.
    expect(err.euler).toBeGreaterThan(2 * err['dpmpp-2m']);
    expect(err.euler).toBeGreaterThan(2 * err.heun);
    expect(errMap.euler).toBeGreaterThan(2 * errMap['dpmpp-2m']);
    expect(errMap.euler).toBeGreaterThan(2 * errMap.heun);
  });
});

describe('consistency samplers with the Gaussian oracle (not exact samplers)', () => {
  it('one step returns the mean: exactly on rectified flow (alpha(1) = 0), to within the oracle gain on vp-linear', () => {
    for (const kind of ['rectified-flow', 'vp-linear'] as PathKind[]) {
      const path = pathFromSpec(kind);
      const den = gaussianDenoiser(SPEC, path);
      const x = sample({ denoiser: den, path, shape: [N, 2], sampler: 'consistency-1step', grid: { kind: 'uniform', steps: 10 }, rng: new Rng(2) });
      const rows = x.arraySync() as number[][];
      x.dispose();
      // |E[x0|x_T] - mu| <= max_k a lam_k / (a^2 lam_k + s^2) * |x_T - a mu|, |x_T| < 6 sigma_T.
      const a = path.alpha(path.tMax);
      const s = path.sigma(path.tMax);
      const gain = Math.max(...EIG.map((e) => (a * e.value) / (a * a * e.value + s * s)));
      const bound = gain * (6 * s + a * 2) * Math.SQRT2 + 1e-6;
      const dev = Math.max(...rows.map((r) => Math.max(Math.abs(r[0] - MEAN[0]), Math.abs(r[1] - MEAN[1]))));
      console.log(`consistency-1step on ${kind}: max |x - mu| = ${dev.toExponential(3)} (bound ${bound.toExponential(3)})`);
      expect(dev).toBeLessThan(bound);
      if (kind === 'rectified-flow') expect(dev).toBeLessThan(1e-6);
    }
  });

  it('multistep keeps the mean but under-disperses (posterior means, not samples)', () => {
    const path = pathFromSpec('vp-linear');
    const x = sample({ denoiser: gaussianDenoiser(SPEC, path), path, shape: [N, 2], sampler: 'consistency', grid: { kind: 'uniform', steps: 20 }, rng: new Rng(4) });
    const s = stats(x.arraySync() as number[][]);
    x.dispose();
    console.log(`consistency (20 steps): mean (${s.mean.map((v) => v.toFixed(3))}), trace cov ${(s.cov[0][0] + s.cov[1][1]).toFixed(3)} vs ${COV[0][0] + COV[1][1]}`);
    for (let i = 0; i < 2; i++) expect(Math.abs(s.mean[i] - MEAN[i])).toBeLessThan(4 * seMean(i) + 0.01);
    expect(s.cov[0][0] + s.cov[1][1]).toBeLessThan(0.8 * (COV[0][0] + COV[1][1]));
  });
});

describe('determinism', () => {
  it.each(SAMPLER_NAMES)('%s: same seed gives identical samples, another seed different ones', (name) => {
    const path = pathFromSpec('vp-linear');
    const den = gaussianDenoiser(SPEC, path);
    const draw = (seed: number): Float32Array => {
      const x = sample({ denoiser: den, path, shape: [32, 2], sampler: name, grid: { kind: 'uniform', steps: 8 }, rng: new Rng(seed) });
      const d = x.dataSync() as Float32Array;
      x.dispose();
      return d;
    };
    const a = draw(42);
    expect(Array.from(draw(42))).toEqual(Array.from(a));
    expect(Array.from(draw(43))).not.toEqual(Array.from(a));
  });
});

describe('starting-noise temperature', () => {
  // DDIM with the exact Gaussian denoiser is a linear map of x_T, so scaling x_T by tau scales
  // the sample covariance by tau^2 and temperature 0 lands every sample near the mean (not
  // exactly: at the grid's first time alpha(T) > 0, so x_T = 0 carries a little information).
  const path = pathFromSpec('vp-cosine');
  const den = gaussianDenoiser(SPEC, path);
  const draw = (temperature: number | undefined, n: number): Float32Array => {
    const x = sample({ denoiser: den, path, shape: [n, 2], sampler: 'ddim', grid: { kind: 'uniform', steps: 20 }, rng: new Rng(11), temperature });
    const d = x.dataSync() as Float32Array;
    x.dispose();
    return d;
  };
  const spread = (d: Float32Array): number => {
    const n = d.length / 2;
    let t = 0;
    for (let j = 0; j < 2; j++) {
      let m = 0;
      for (let i = 0; i < n; i++) m += d[2 * i + j] / n;
      for (let i = 0; i < n; i++) t += (d[2 * i + j] - m) ** 2 / n;
    }
    return t;
  };

  it('temperature 0 gives the mean, 0.5 a quarter of the covariance, 1 the default', () => {
    const zero = draw(0, 16);
    for (let i = 0; i < 16; i++) {
      expect(Math.abs(zero[2 * i] - MEAN[0])).toBeLessThan(0.02);
      expect(Math.abs(zero[2 * i + 1] - MEAN[1])).toBeLessThan(0.02);
      expect(zero[2 * i]).toBe(zero[0]);
    }
    const full = spread(draw(1, 4000));
    expect(spread(draw(0.5, 4000)) / full).toBeCloseTo(0.25, 2);
    expect(Array.from(draw(undefined, 64))).toEqual(Array.from(draw(1, 64)));
  });

  it('rejects a negative or non-finite temperature', () => {
    expect(() => draw(-0.1, 4)).toThrow(/^temperature: expected >= 0/);
    expect(() => draw(Number.NaN, 4)).toThrow(/^temperature: /);
  });
});

describe('bad input fails with a message naming the argument', () => {
  const path = pathFromSpec('vp-linear');
  const den = gaussianDenoiser(SPEC, path);
  const base = { denoiser: den, path, shape: [8, 2], grid: { kind: 'uniform', steps: 4 } as const, rng: new Rng(1) };

  it('unknown sampler name', () => {
    expect(() => sample({ ...base, sampler: 'euler-ancestral' as SamplerName })).toThrow(/^sampler: unknown value 'euler-ancestral' \(expected one of ddpm, ddim/);
    expect(() => getSampler('lms')).toThrow(/^sampler: unknown value 'lms'/);
  });

  it('non-monotonic or malformed grid', () => {
    expect(() => sample({ ...base, sampler: 'ddim', grid: [1, 0.2, 0.5, 0] })).toThrow(/^grid: must be strictly decreasing/);
    expect(() => sample({ ...base, sampler: 'heun', grid: [1, 0.5, 0.1] })).toThrow(/^grid: must end at 0/);
    expect(() => sample({ ...base, sampler: 'euler', grid: { kind: 'karras', steps: 0 } })).toThrow(/^steps: expected >= 1/);
  });

  it('wrong-shaped x for the Gaussian denoiser', () => {
    expect(() => sample({ ...base, sampler: 'dpmpp-2m', shape: [8, 3] })).toThrow(/^x: expected shape \[\*, 2\], received \[8, 3\]/);
    expect(() => sample({ ...base, sampler: 'ddim', shape: [0, 2] })).toThrow(/^shape: expected positive integer dimensions/);
  });

  it('missing rng for stochastic samplers', () => {
    const grid = makeGrid(path, { kind: 'uniform', steps: 4 });
    const x = tf.zeros([8, 2]);
    try {
      expect(() => SAMPLERS.ddpm(den, x, grid, path, {})).toThrow(/^ddpm: options\.rng is required/);
      expect(() => SAMPLERS['euler-maruyama'](den, x, grid, path)).toThrow(/^euler-maruyama: options\.rng is required/);
      expect(() => SAMPLERS.ddim(den, x, grid, path, { eta: 0.5 })).toThrow(/^ddim: options\.rng is required/);
      expect(() => SAMPLERS.consistency(den, x, grid, path, {})).toThrow(/^consistency: options\.rng is required/);
      expect(() => SAMPLERS.heun(den, x, grid, path, { churn: { amount: 10 } })).toThrow(/^heun: options\.rng is required/);
      expect(() => SAMPLERS.ddim(den, x, grid, path, { eta: -1, rng: new Rng(1) })).toThrow(/^eta: expected >= 0/);
      expect(() => sample({ ...base, sampler: 'ddpm', rng: undefined as unknown as Rng })).toThrow(/^rng: expected an Rng/);
      // Deterministic samplers do not need one.
      expect(() => SAMPLERS['dpmpp-2m'](den, x, grid, path).dispose()).not.toThrow();
    } finally {
      x.dispose();
    }
  });
});

describe('projection hook', () => {
  // Three 2D particles with the centre of mass fixed at 0 (as for molecules).
  const path = pathFromSpec('vp-linear');
  const inner = gaussianDenoiser({ mean: [1, 0, 2, 0.5, 0, -0.5], cov: Array.from({ length: 6 }, (_, i) => Array.from({ length: 6 }, (_, j) => (i === j ? 0.5 : 0))) }, path);
  const den: Denoiser = (x, t) => tf.tidy(() => tf.reshape(inner(tf.reshape(x, [x.shape[0], 6]), t), x.shape));
  const zeroCom = (x: tf.Tensor): tf.Tensor => tf.tidy(() => tf.sub(x, tf.mean(x, 1, true)));
  const comOf = (x: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.mean(x, 1))).dataSync()[0]);

  it.each(SAMPLER_NAMES)('%s honours a zero-centre-of-mass projection at every step and in the result', (name) => {
    const grid = makeGrid(path, { kind: 'uniform', steps: 12 });
    const seen: number[] = [];
    const projectedAt: number[] = [];
    const x = sample({
      denoiser: den,
      path,
      shape: [16, 3, 2],
      sampler: name,
      grid,
      rng: new Rng(9),
      project: (y, t) => {
        projectedAt.push(t);
        return zeroCom(y);
      },
      onStep: (info: StepInfo) => seen.push(comOf(info.x)),
    });
    expect(seen).toHaveLength(name === 'consistency-1step' ? 1 : 12);
    expect(Math.max(...seen)).toBeLessThan(1e-5);
    expect(comOf(x)).toBeLessThan(1e-5);
    // Applied to the initial noise and after every step, at the step's target time.
    const g = name === 'consistency-1step' ? [grid[0], 0] : grid;
    expect(projectedAt).toEqual(g);
    // Without the projection the centre of mass is not zero (the test can fail).
    const free = sample({ denoiser: den, path, shape: [16, 3, 2], sampler: name, grid, rng: new Rng(9) });
    expect(comOf(free)).toBeGreaterThan(1e-2);
    tf.dispose([x, free]);
  });
});
