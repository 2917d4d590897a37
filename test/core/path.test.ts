import { describe, expect, it } from 'vitest';
import { edm, pathFromSpec, PATH_KINDS, rectifiedFlow, ve, vpCosine, vpLinear, type NoisePath } from '../../src/path/index.js';

/** Interior times spread over (tMin, tMax), geometric so EDM's t in [0.002, 80] is covered evenly. */
function interiorTimes(p: NoisePath, n = 9): number[] {
  const lo = Math.max(p.tMin, 1e-3 * p.tMax) * 1.5;
  const hi = p.tMax * 0.98;
  return Array.from({ length: n }, (_, i) => lo * Math.pow(hi / lo, i / (n - 1)));
}

/** Central finite difference with a relative step. */
function fd(f: (t: number) => number, t: number): number {
  const h = 1e-6 * Math.max(t, 1e-3);
  return (f(t + h) - f(t - h)) / (2 * h);
}

describe.each(PATH_KINDS)('path %s', (kind) => {
  const p = pathFromSpec(kind);

  it('is clean data at t = 0: alpha(0) = 1, sigma(0) = 0, logSnr(0) = +Infinity', () => {
    expect(p.kind).toBe(kind);
    expect(p.alpha(0)).toBe(1);
    expect(p.sigma(0)).toBe(0);
    expect(p.logSnr(0)).toBe(Infinity);
    expect(p.tMin).toBeGreaterThan(0);
    expect(p.tMax).toBeGreaterThan(p.tMin);
  });

  it('dAlpha and dSigma match central finite differences', () => {
    for (const t of interiorTimes(p)) {
      const da = fd(p.alpha, t);
      const ds = fd(p.sigma, t);
      // Relative to the size of the derivative (plus a floor for derivatives that are ~0).
      expect(Math.abs(p.dAlpha(t) - da)).toBeLessThan(1e-5 * (Math.abs(da) + 1e-3));
      expect(Math.abs(p.dSigma(t) - ds)).toBeLessThan(1e-5 * (Math.abs(ds) + 1e-3));
    }
  });

  it('logSnr is 2 log(alpha / sigma), strictly decreasing, and tFromLogSnr inverts it', () => {
    let prev = Infinity;
    for (const t of interiorTimes(p, 15)) {
      const l = p.logSnr(t);
      expect(l).toBeCloseTo(2 * Math.log(p.alpha(t) / p.sigma(t)), 10);
      expect(l).toBeLessThan(prev);
      prev = l;
      expect(Math.abs(p.tFromLogSnr(l) - t)).toBeLessThan(1e-9 * Math.max(1, p.tMax));
    }
  });

  it('spec rebuilds the same path', () => {
    const q = pathFromSpec(JSON.parse(JSON.stringify(p.spec)));
    for (const t of interiorTimes(p, 5)) {
      expect(q.alpha(t)).toBe(p.alpha(t));
      expect(q.sigma(t)).toBe(p.sigma(t));
    }
  });
});

describe('path closed forms', () => {
  it('VP paths satisfy alpha^2 + sigma^2 = 1', () => {
    for (const p of [vpLinear(), vpCosine(), vpLinear({ betaMin: 0.5, betaMax: 10 })]) {
      for (const t of [0, ...interiorTimes(p, 11), p.tMax]) {
        expect(Math.abs(p.alpha(t) ** 2 + p.sigma(t) ** 2 - 1)).toBeLessThan(1e-12);
      }
    }
  });

  it('vp-linear: log alpha = -t^2 (bMax - bMin)/4 - t bMin/2', () => {
    const p = vpLinear({ betaMin: 0.1, betaMax: 20 });
    for (const t of [0.1, 0.5, 1]) expect(Math.log(p.alpha(t))).toBeCloseTo(-0.25 * t * t * 19.9 - 0.05 * t, 12);
  });

  it('VE and EDM keep alpha = 1; EDM has sigma = t; VE is geometric', () => {
    const e = edm();
    const v = ve({ sigmaMin: 0.01, sigmaMax: 50 });
    for (const t of [0.01, 1, 40]) {
      expect(e.alpha(t)).toBe(1);
      expect(e.sigma(t)).toBe(t);
    }
    expect(v.sigma(1)).toBeCloseTo(50, 10);
    expect(v.sigma(0.5)).toBeCloseTo(Math.sqrt(0.01 * 50), 10);
    expect(v.alpha(0.7)).toBe(1);
  });

  it('rectified flow: x_t = (1 - t) x0 + t eps', () => {
    const p = rectifiedFlow();
    for (const t of [0.25, 0.5, 0.75, 1]) {
      expect(p.alpha(t)).toBe(1 - t);
      expect(p.sigma(t)).toBe(t);
    }
    expect(p.logSnr(1)).toBe(-Infinity);
  });

  it('unknown kinds and bad parameters fail with a message naming the argument', () => {
    expect(() => pathFromSpec('vp-quadratic' as never)).toThrow(/path: unknown kind 'vp-quadratic'.*vp-linear/);
    expect(() => pathFromSpec({ kind: 'nope' } as never)).toThrow(/path: unknown kind 'nope'/);
    expect(() => vpLinear({ betaMin: 5, betaMax: 1 })).toThrow(/betaMax/);
    expect(() => ve({ sigmaMin: Number.NaN })).toThrow(/sigmaMin/);
    expect(() => edm({ sigmaData: -1 })).toThrow(/sigmaData/);
    expect(() => rectifiedFlow({ tMax: 2 })).toThrow(/tMax/);
  });
});
