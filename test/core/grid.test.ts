import { describe, expect, it } from 'vitest';
import {
  checkGrid,
  discreteGrid,
  GRID_KINDS,
  karrasGrid,
  logSnrGrid,
  makeGrid,
  uniformGrid,
  type GridKind,
} from '../../src/grid/index.js';
import { edm, pathFromSpec, PATH_KINDS, vpLinear } from '../../src/path/index.js';

describe.each(PATH_KINDS)('grids on %s', (kind) => {
  const path = pathFromSpec(kind);
  it.each(GRID_KINDS.flatMap((g) => [1, 5, 50].map((n) => [g, n] as [GridKind, number])))(
    '%s with %i steps: finite, strictly decreasing, from tMax to 0',
    (g, steps) => {
      const grid = makeGrid(path, { kind: g, steps });
      expect(grid).toHaveLength(steps + 1);
      // Karras grids on a path whose alpha vanishes at tMax (rectified flow) start at sigma/alpha = 80.
      if (g === 'karras' && path.alpha(path.tMax) === 0) expect(path.sigma(grid[0]) / path.alpha(grid[0])).toBeCloseTo(80, 6);
      else expect(grid[0]).toBe(path.tMax);
      expect(grid[steps]).toBe(0);
      for (let i = 0; i < grid.length; i++) {
        expect(Number.isFinite(grid[i]), `entry ${i} = ${grid[i]}`).toBe(true);
        if (i > 0) expect(grid[i]).toBeLessThan(grid[i - 1]);
      }
      // The last non-zero point is the path's tMin for the noise-level spacings.
      if ((g === 'karras' || g === 'logsnr') && steps > 1) expect(grid[steps - 1]).toBeCloseTo(path.tMin, 9);
      expect(() => checkGrid(grid, path)).not.toThrow();
    },
  );
});

describe('grid spacings', () => {
  it('uniform is linear in t', () => {
    const p = vpLinear();
    expect(uniformGrid(p, 4)).toEqual([1, 0.75, 0.5, 0.25, 0]);
  });

  it('karras on EDM is the rho = 7 formula of Karras et al. (2022)', () => {
    const p = edm({ sigmaMin: 0.002, sigmaMax: 80 });
    const n = 18;
    const grid = karrasGrid(p, n);
    for (let i = 0; i < n; i++) {
      const want = Math.pow(Math.pow(80, 1 / 7) + (i / (n - 1)) * (Math.pow(0.002, 1 / 7) - Math.pow(80, 1 / 7)), 7);
      expect(Math.abs(grid[i] - want)).toBeLessThan(1e-9 * want);
    }
  });

  it('karras on VP spaces (sigma/alpha)^(1/rho) evenly', () => {
    const p = vpLinear();
    const grid = karrasGrid(p, 10, 5);
    const u = grid.slice(0, 10).map((t) => Math.pow(p.sigma(t) / p.alpha(t), 1 / 5));
    const d0 = u[1] - u[0];
    for (let i = 1; i < 9; i++) expect(u[i + 1] - u[i]).toBeCloseTo(d0, 8);
  });

  it('logsnr is uniform in log-SNR', () => {
    const p = pathFromSpec('vp-cosine');
    const grid = logSnrGrid(p, 8);
    const l = grid.slice(0, 8).map((t) => p.logSnr(t));
    const d0 = l[1] - l[0];
    for (let i = 1; i < 7; i++) expect(l[i + 1] - l[i]).toBeCloseTo(d0, 7);
  });

  it('rectified flow (alpha = 0 at tMax): Karras grids spaced from sigma/alpha = 80, log-SNR grids from 1e4', () => {
    const p = pathFromSpec('rectified-flow');
    const n = 6;
    const sc = (t: number): number => p.sigma(t) / p.alpha(t);
    const hi = Math.pow(80, 1 / 7);
    const lo = Math.pow(sc(p.tMin), 1 / 7);
    const k = karrasGrid(p, n);
    for (let i = 0; i < n; i++) expect(Math.pow(sc(k[i]), 1 / 7)).toBeCloseTo(hi + (i / (n - 1)) * (lo - hi), 9);
    const l = logSnrGrid(p, n);
    const l0 = -2 * Math.log(1e4);
    for (let i = 1; i < n; i++) expect(p.logSnr(l[i])).toBeCloseTo(l0 + (i / (n - 1)) * (p.logSnr(p.tMin) - l0), 8);
  });

  it('discrete grids are strided integer multiples of 1/trainSteps', () => {
    const p = vpLinear();
    const grid = discreteGrid(p, 4, 1000);
    expect(grid).toEqual([1, 0.75, 0.5, 0.25, 0]);
    for (const t of discreteGrid(p, 7, 1000)) expect(Math.abs(t * 1000 - Math.round(t * 1000))).toBeLessThan(1e-9);
  });
});

describe('checkGrid', () => {
  const p = vpLinear();
  it('rejects non-monotonic grids', () => {
    expect(() => checkGrid([1, 0.5, 0.6, 0], p)).toThrow(/^grid: must be strictly decreasing.*entry 2/);
    expect(() => checkGrid([1, 0.5, 0.5, 0], p)).toThrow(/^grid: must be strictly decreasing/);
  });
  it('rejects NaN and infinite entries', () => {
    expect(() => checkGrid([1, Number.NaN, 0], p)).toThrow(/^grid: entry 1 is not finite/);
    expect(() => checkGrid([Infinity, 0.5, 0], p)).toThrow(/^grid: entry 0 is not finite/);
  });
  it('rejects grids that do not end at 0', () => {
    expect(() => checkGrid([1, 0.5, 0.01], p)).toThrow(/^grid: must end at 0/);
  });
  it('rejects grids that start beyond tMax, are too short or are not arrays', () => {
    expect(() => checkGrid([2, 1, 0], p)).toThrow(/^grid: starts at 2, beyond the path's tMax/);
    expect(() => checkGrid([0], p)).toThrow(/^grid: expected at least 2 time points/);
    expect(() => checkGrid('1,0' as unknown as number[], p)).toThrow(/^grid: expected at least 2 time points/);
  });
  it('uses the given argument name', () => {
    expect(() => checkGrid([1, 2, 0], p, 'sigmas')).toThrow(/^sigmas: must be strictly decreasing/);
  });
  it('makeGrid rejects unknown kinds and bad step counts', () => {
    expect(() => makeGrid(p, { kind: 'cosine' } as never)).toThrow(/grid\.kind: unknown value 'cosine'/);
    expect(() => makeGrid(p, { kind: 'uniform', steps: 0 })).toThrow(/steps: expected >= 1/);
    expect(() => makeGrid(p, { kind: 'karras', steps: 2.5 })).toThrow(/steps: expected an integer/);
  });
});
