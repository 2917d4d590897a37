/**
 * Guidance terms against closed forms on Gaussians.
 *
 * Tilted Gaussian: data N(mu, s0^2 I), reward r(x) = -(lambda/2) |x - c|^2. The tilted law
 * p(x) e^{r(x)} / Z is N(mu', s'^2 I) with 1/s'^2 = 1/s0^2 + lambda, mu' = s'^2 (mu/s0^2 + lambda c).
 * Its noisy marginals are p_t(x_t) E[e^{r(x0)} | x_t] / Z, so adding grad_{x_t} h_t with
 *   h_t(x_t) = log E[e^{r(x0)} | x_t]
 * to the score samples the tilted law exactly. Given x_t, x0 ~ N(m, v_t I) with m = x0hat(x_t)
 * and v_t = s0^2 sigma^2 / (alpha^2 s0^2 + sigma^2), and for a Gaussian integral
 *   E[exp(-(lambda/2)|x0 - c|^2)] = (1 + lambda v_t)^{-d/2} exp(-(lambda/2) |m - c|^2 / (1 + lambda v_t)),
 * so h_t = -(lambda/2) |m(x_t) - c|^2 / (1 + lambda v_t) + const(t): an on:'xt' objective.
 * DPS (on:'x0', fn = r) instead adds Cov[x0|x_t] grad r(m) in x0 space, (1 + lambda v_t)
 * times the exact shift: it over-steers at high noise (measured below).
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { gaussianDenoiser, type Denoiser } from '../../src/denoiser/index.js';
import {
  checkSchedule,
  classifierFree,
  composeProjections,
  dropCondition,
  gradientGuidance,
  guide,
  inpaint,
  projectionGuidance,
  scheduleWeight,
} from '../../src/guide/index.js';
import { pathFromSpec } from '../../src/path/index.js';
import { Rng } from '../../src/rng/rng.js';
import { sample } from '../../src/sample/index.js';

const N = 4000;
const vp = pathFromSpec('vp-linear');

function columnStats(x: tf.Tensor): { mean: number[]; variance: number[]; rows: number[][] } {
  const rows = x.arraySync() as number[][];
  const d = rows[0].length;
  const mean = Array(d).fill(0);
  const variance = Array(d).fill(0);
  for (const r of rows) for (let i = 0; i < d; i++) mean[i] += r[i] / rows.length;
  for (const r of rows) for (let i = 0; i < d; i++) variance[i] += (r[i] - mean[i]) ** 2 / (rows.length - 1);
  return { mean, variance, rows };
}

function run(den: Denoiser, dim: number, seed: number, steps = 50, extra: { project?: (x: tf.Tensor, t: number) => tf.Tensor; sampler?: 'dpmpp-2m' | 'ddpm' | 'heun' } = {}) {
  const x = sample({ denoiser: den, path: vp, shape: [N, dim], sampler: extra.sampler ?? 'dpmpp-2m', grid: { kind: 'uniform', steps }, rng: new Rng(seed), project: extra.project });
  const s = columnStats(x);
  x.dispose();
  return s;
}

describe('schedules', () => {
  it('windows are active on [tEnd, tStart]; functions give the multiplier', () => {
    const w = checkSchedule('schedule', { tStart: 0.8, tEnd: 0.2 });
    expect([0.1, 0.2, 0.5, 0.8, 0.9].map((t) => scheduleWeight(w, t))).toEqual([0, 1, 1, 1, 0]);
    expect(scheduleWeight(checkSchedule('schedule', (t: number) => 2 * t), 0.25)).toBe(0.5);
    expect(scheduleWeight(undefined, 0.3)).toBe(1);
  });
  it('rejects bad schedules with a message naming the argument', () => {
    expect(() => checkSchedule('schedule', { tStart: 0.2, tEnd: 0.5 })).toThrow(/^schedule\.tEnd: expected <= tStart/);
    expect(() => checkSchedule('schedule', { tStart: Number.NaN, tEnd: 0 })).toThrow(/^schedule\.tStart: expected a finite number/);
    expect(() => checkSchedule('schedule', 3)).toThrow(/^schedule: expected a function/);
    expect(() => scheduleWeight(() => Number.NaN, 0.5)).toThrow(/^schedule: returned a non-finite multiplier/);
  });
});

describe('classifier-free guidance', () => {
  // cond N(3, 1), uncond N(0, 1): with equal covariances the guided score is exactly the score of
  // N(3w, 1) at every t, so the guided samples follow N(3w, 1).
  const cond = gaussianDenoiser({ mean: [3], cov: [[1]] }, vp);
  const uncond = gaussianDenoiser({ mean: [0], cov: [[1]] }, vp);
  // x_T is drawn from N(0, sigma_T^2), not from N(alpha_T m, .): the exact flow maps that to mean
  // m (1 - alpha_T / sqrt(alpha_T^2 + sigma_T^2)) (0.7% low), accounted for below.
  const priorShrink = 1 - vp.alpha(1) / Math.sqrt(vp.alpha(1) ** 2 + vp.sigma(1) ** 2);

  it('moves samples toward the conditioned mode as w grows and past it for w > 1', () => {
    const means: number[] = [];
    for (const w of [0, 0.5, 1, 2, 3]) {
      const s = run(classifierFree({ cond, uncond, scale: w }), 1, 21);
      means.push(s.mean[0]);
      console.log(`CFG w=${w}: mean ${s.mean[0].toFixed(4)} (exact ${(3 * w * priorShrink).toFixed(4)}), variance ${s.variance[0].toFixed(4)}`);
      expect(Math.abs(s.mean[0] - 3 * w * priorShrink)).toBeLessThan(4 * Math.sqrt(1 / N) + 0.01);
      expect(Math.abs(s.variance[0] - 1)).toBeLessThan(4 * Math.sqrt(2 / N) + 0.02);
    }
    for (let i = 1; i < means.length; i++) expect(means[i]).toBeGreaterThan(means[i - 1] + 1);
  });

  it('w = 1 and a switched-off schedule evaluate only the conditional denoiser', () => {
    let uncondCalls = 0;
    const counted: Denoiser = (x, t) => {
      uncondCalls++;
      return uncond(x, t);
    };
    const x = tf.tensor2d([[0.5], [-1]]);
    const plain = cond(x, 0.4);
    for (const den of [classifierFree({ cond, uncond: counted, scale: 1 }), classifierFree({ cond, uncond: counted, scale: 4, schedule: { tStart: 0.3, tEnd: 0 } })]) {
      const y = den(x, 0.4);
      expect(Array.from(y.dataSync())).toEqual(Array.from(plain.dataSync()));
      y.dispose();
    }
    expect(uncondCalls).toBe(0);
    // Inside the window the scale applies: x0 = u + w (c - u).
    const den = classifierFree({ cond, uncond: counted, scale: 4, schedule: { tStart: 0.5, tEnd: 0 } });
    const y = den(x, 0.4);
    const u = uncond(x, 0.4);
    const want = tf.tidy(() => tf.add(u, tf.mul(tf.sub(plain, u), 4)));
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(y, want))).dataSync()[0])).toBeLessThan(1e-5);
    expect(uncondCalls).toBe(1);
    tf.dispose([x, plain, y, u, want]);
  });

  it('validates its arguments', () => {
    expect(() => classifierFree({ cond, uncond, scale: Infinity })).toThrow(/^scale: expected a finite number/);
    expect(() => classifierFree({ cond: 3 as unknown as Denoiser, uncond, scale: 2 })).toThrow(/^cond: expected a denoiser/);
    expect(() => classifierFree({ cond, uncond: undefined as unknown as Denoiser, scale: 2 })).toThrow(/^uncond: expected a denoiser/);
    expect(() => classifierFree({ cond, uncond, scale: 2, schedule: { tStart: 0, tEnd: 1 } })).toThrow(/^schedule\.tEnd/);
  });
});

describe('dropCondition', () => {
  it('replaces about p of the rows by the null condition and leaves the others unchanged', () => {
    const n = 10000;
    const cond = tf.tidy(() => tf.add(tf.reshape(tf.range(0, n * 3), [n, 3]), 1)); // no zero entries
    const out = dropCondition(cond, 0.3, new Rng(8));
    const a = out.arraySync() as number[][];
    const c = cond.arraySync() as number[][];
    let dropped = 0;
    for (let i = 0; i < n; i++) {
      if (a[i].every((v) => v === 0)) dropped++;
      else expect(a[i]).toEqual(c[i]);
    }
    console.log(`dropCondition p=0.3: dropped fraction ${(dropped / n).toFixed(4)}`);
    expect(Math.abs(dropped / n - 0.3)).toBeLessThan(4 * Math.sqrt((0.3 * 0.7) / n));
    // Deterministic given the seed; p = 0 and p = 1 are the extremes.
    const again = dropCondition(cond, 0.3, new Rng(8));
    expect(Array.from(again.dataSync())).toEqual(Array.from(out.dataSync()));
    const none = dropCondition(cond, 0, new Rng(8));
    const all = dropCondition(cond, 1, new Rng(8));
    expect(Array.from(none.dataSync())).toEqual(Array.from(cond.dataSync()));
    expect(Array.from(all.dataSync()).every((v) => v === 0)).toBe(true);
    tf.dispose([cond, out, again, none, all]);
  });

  it('accepts a tensor null value and integer conditions; validates inputs', () => {
    const emb = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const nul = tf.tensor1d([-7, -8]);
    const out = dropCondition(emb, 1, new Rng(1), nul);
    expect(out.arraySync()).toEqual([[-7, -8], [-7, -8], [-7, -8]]);
    const labels = tf.tensor1d([4, 5, 6], 'int32');
    const l = dropCondition(labels, 1, new Rng(1), 10);
    expect(l.dtype).toBe('int32');
    expect(Array.from(l.dataSync())).toEqual([10, 10, 10]);
    expect(() => dropCondition(emb, 1.5, new Rng(1))).toThrow(/^p: expected <= 1/);
    expect(() => dropCondition(emb, 0.5, undefined as unknown as Rng)).toThrow(/^rng: expected an Rng/);
    const bad = tf.tensor1d([1, 2, 3]);
    expect(() => dropCondition(emb, 0.5, new Rng(1), bad)).toThrow(/^nullValue: expected a tensor broadcastable to one row of cond \[2\]/);
    tf.dispose([emb, nul, out, labels, l, bad]);
  });
});

describe('gradient guidance', () => {
  const MU = [1, -1];
  const S0 = 0.5; // data variance s0^2
  const LAMBDA = 2;
  const C = [2, 1];
  const S1 = 1 / (1 / S0 + LAMBDA); // tilted variance s'^2 = 0.25
  const MU1 = MU.map((m, i) => S1 * (m / S0 + LAMBDA * C[i])); // (1.5, 0)
  const den = gaussianDenoiser({ mean: MU, cov: [[S0, 0], [0, S0]] }, vp);
  const cT = tf.tensor1d(C);
  const reward = (x: tf.Tensor): tf.Tensor => tf.mul(tf.sum(tf.square(tf.sub(x, cT)), 1), -LAMBDA / 2);
  const postVar = (t: number): number => {
    const a = vp.alpha(t);
    const s = vp.sigma(t);
    return (S0 * s * s) / (a * a * S0 + s * s);
  };
  // Exact noisy tilt h_t(x_t) (up to a constant in x_t), differentiated through the denoiser.
  const exactTilt = (x: tf.Tensor, t: number): tf.Tensor => tf.div(reward(den(x, t)), 1 + LAMBDA * postVar(t));

  it("on 'xt' with the exact noisy tilt samples the tilted Gaussian N(mu', s'^2 I)", () => {
    const guided = guide(den, gradientGuidance({ path: vp, fn: exactTilt, on: 'xt', scale: 1 }));
    const s = run(guided, 2, 31, 100);
    console.log(`exact tilt: mean (${s.mean.map((v) => v.toFixed(4))}) vs mu' (${MU1}), variance (${s.variance.map((v) => v.toFixed(4))}) vs s'^2 ${S1}`);
    for (let i = 0; i < 2; i++) {
      expect(Math.abs(s.mean[i] - MU1[i])).toBeLessThan(4 * Math.sqrt(S1 / N) + 0.01);
      expect(Math.abs(s.variance[i] - S1)).toBeLessThan(4 * S1 * Math.sqrt(2 / N) + 0.01);
    }
  });

  it("on 'x0' (DPS) moves the mean toward c; distance to mu' reported", () => {
    const base = run(den, 2, 31, 100);
    const dps = run(guide(den, gradientGuidance({ path: vp, fn: reward, on: 'x0', scale: 1 })), 2, 31, 100);
    const dist = (m: number[], r: number[]): number => Math.hypot(m[0] - r[0], m[1] - r[1]);
    console.log(
      `DPS: mean (${dps.mean.map((v) => v.toFixed(4))}), variance (${dps.variance.map((v) => v.toFixed(4))}); ` +
        `|mean - mu'| = ${dist(dps.mean, MU1).toFixed(4)}, |mean - c| = ${dist(dps.mean, C).toFixed(4)} (unguided |mean - c| = ${dist(base.mean, C).toFixed(4)}, |mu' - c| = ${dist(MU1, C).toFixed(4)})`,
    );
    expect(dist(dps.mean, C)).toBeLessThan(dist(base.mean, C) - 1);
    // DPS's x0 shift is (1 + lambda v_t) times the exact one, so it overshoots past mu' toward c.
    expect(dist(dps.mean, C)).toBeLessThan(dist(MU1, C));
    expect(dist(dps.mean, MU1)).toBeLessThan(0.6);
  });

  it("on 'x0' the shift is Cov[x0 | x_t] grad r(x0hat) (differentiated through a correlated denoiser)", () => {
    const cov = [[1, 0.6], [0.6, 0.8]];
    const d2 = gaussianDenoiser({ mean: [1, -0.5], cov }, vp);
    const t = 0.35;
    const a = vp.alpha(t);
    const s = vp.sigma(t);
    // Cov[x0|x_t] = s^2 Sigma (a^2 Sigma + s^2 I)^-1
    const m = [[a * a * cov[0][0] + s * s, a * a * cov[0][1]], [a * a * cov[1][0], a * a * cov[1][1] + s * s]];
    const det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    const inv = [[m[1][1] / det, -m[0][1] / det], [-m[1][0] / det, m[0][0] / det]];
    const post = [0, 1].map((i) => [0, 1].map((j) => s * s * (cov[i][0] * inv[0][j] + cov[i][1] * inv[1][j])));
    const x = new Rng(4).normal([5, 2]);
    const guided = gradientGuidance({ path: vp, fn: reward, on: 'x0', scale: 0.7 })(d2);
    const before = tf.memory().numTensors;
    const y = guided(x, t);
    expect(tf.memory().numTensors).toBe(before + 1);
    const x0 = d2(x, t);
    const shift = tf.sub(y, x0).arraySync() as number[][];
    const m0 = x0.arraySync() as number[][];
    m0.forEach((row, b) => {
      const grad = row.map((v, i) => -LAMBDA * (v - C[i]));
      for (let i = 0; i < 2; i++) {
        const want = 0.7 * (post[i][0] * grad[0] + post[i][1] * grad[1]);
        expect(Math.abs(shift[b][i] - want)).toBeLessThan(1e-4 * (1 + Math.abs(want)));
      }
    });
    tf.dispose([x, y, x0]);
  });

  it("on 'xt' the shift is scale sigma^2/alpha grad fn; clipping caps the applied per-sample norm", () => {
    const t = 0.5;
    const a = vp.alpha(t);
    const s = vp.sigma(t);
    const coef = (s * s) / a;
    const half = (x: tf.Tensor): tf.Tensor => tf.mul(tf.sum(tf.square(tf.sub(x, cT)), 1), -0.5); // grad = c - x
    const x = tf.tensor2d([[2.1, 1.05], [-8, 5], [30, -40]]); // gradient norms 0.11, 10.8, 51
    const x0 = den(x, t);
    const free = gradientGuidance({ path: vp, fn: half, on: 'xt', scale: 2 })(den)(x, t);
    const clipped = gradientGuidance({ path: vp, fn: half, on: 'xt', scale: 2, clipNorm: 1 })(den)(x, t);
    const fs = tf.sub(free, x0).arraySync() as number[][];
    const cs = tf.sub(clipped, x0).arraySync() as number[][];
    const xs = x.arraySync() as number[][];
    xs.forEach((row, b) => {
      const g = row.map((v, i) => C[i] - v);
      const gn = Math.hypot(g[0], g[1]);
      for (let i = 0; i < 2; i++) expect(fs[b][i]).toBeCloseTo(2 * coef * g[i], 3);
      const applied = Math.hypot(cs[b][0], cs[b][1]);
      const cap = 2 * coef * 1;
      console.log(`clip: sample ${b}: |g| = ${gn.toFixed(3)}, applied |shift| = ${applied.toFixed(4)}, cap ${cap.toFixed(4)}`);
      expect(applied).toBeLessThanOrEqual(cap * (1 + 1e-5));
      if (gn > 1) expect(applied).toBeCloseTo(cap, 4);
      else expect(applied).toBeCloseTo(2 * coef * gn, 4);
      // Direction preserved.
      expect(cs[b][0] * g[1] - cs[b][1] * g[0]).toBeCloseTo(0, 4);
    });
    tf.dispose([x, x0, free, clipped]);
  });

  it('is inactive outside its schedule window, at t = 0 and where alpha = 0', () => {
    const x = tf.tensor2d([[0.3, -0.2]]);
    const term = gradientGuidance({ path: vp, fn: reward, on: 'x0', scale: 5, schedule: { tStart: 0.6, tEnd: 0.2 } })(den);
    for (const t of [0.1, 0.7, 0]) {
      const y = term(x, t);
      const ref = den(x, t);
      expect(Array.from(y.dataSync())).toEqual(Array.from(ref.dataSync()));
      tf.dispose([y, ref]);
    }
    const rf = pathFromSpec('rectified-flow');
    const drf = gaussianDenoiser({ mean: MU, cov: [[S0, 0], [0, S0]] }, rf);
    const y = gradientGuidance({ path: rf, fn: reward, on: 'x0', scale: 5 })(drf)(x, 1);
    expect(Array.from(y.dataSync())).toEqual(MU);
    tf.dispose([x, y]);
  });

  it('validates its arguments', () => {
    expect(() => gradientGuidance({ path: vp, fn: reward, on: 'x0', scale: Number.NaN })).toThrow(/^scale: expected a finite number/);
    expect(() => gradientGuidance({ path: vp, fn: reward, on: 'eps' as 'x0', scale: 1 })).toThrow(/^on: unknown value 'eps'/);
    expect(() => gradientGuidance({ path: vp, fn: reward, on: 'x0', scale: 1, clipNorm: -1 })).toThrow(/^clipNorm: expected >= 0/);
    expect(() => gradientGuidance({ path: vp, fn: 'r' as never, on: 'x0', scale: 1 })).toThrow(/^fn: expected a function/);
    expect(() => gradientGuidance({ path: undefined as never, fn: reward, on: 'x0', scale: 1 })).toThrow(/^path: expected a NoisePath/);
    const wrong = gradientGuidance({ path: vp, fn: (x) => tf.mul(x, 2), on: 'x0', scale: 1 })(den);
    const x = tf.zeros([3, 2]);
    const before = tf.memory().numTensors;
    expect(() => wrong(x, 0.5)).toThrow(/^fn: expected one value per sample, shape \[3\], received \[3, 2\]/);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});

describe('projection guidance', () => {
  // Half-plane constraint a . x <= b written as the squared hinge c(x) = relu(a . x - b)^2.
  const A = [0.6, 0.8];
  const B0 = -0.5;
  const aT = tf.tensor1d(A);
  const hinge = (x: tf.Tensor): tf.Tensor => tf.square(tf.relu(tf.sub(tf.sum(tf.mul(x, aT), 1), B0)));
  const excess = (rows: number[][]): number[] => rows.map((r) => r[0] * A[0] + r[1] * A[1] - B0);
  const fixed = (rows: number[][]): Denoiser => () => tf.tensor2d(rows);
  const rows = [[1, 1], [-1, -1], [0.5, -2], [3, 0]]; // excess 1.9, -0.9, -1.8, 2.3

  it('halves a linear violation per Polyak step (scale 1), takes the Newton step at scale 2, leaves feasible samples alone', () => {
    for (const [iterations, scale, factor] of [[1, 1, 0.5], [3, 1, 0.125], [1, 2, 0]] as const) {
      const out = guide(fixed(rows), projectionGuidance({ fn: hinge, iterations, scale }))(tf.zeros([4, 2]), 0.5);
      const got = out.arraySync() as number[][];
      out.dispose();
      const before = excess(rows);
      const after = excess(got);
      before.forEach((e, i) => {
        if (e <= 0) expect(got[i]).toEqual(rows[i]); // feasible: not moved at all
        else {
          expect(after[i]).toBeCloseTo(e * factor, 5);
          // the step is along the constraint normal a
          const dx = [got[i][0] - rows[i][0], got[i][1] - rows[i][1]];
          expect(Math.abs(dx[0] * A[1] - dx[1] * A[0])).toBeLessThan(1e-5);
        }
      });
    }
  });

  it('caps each step at maxStep and respects a schedule', () => {
    const out = guide(fixed(rows), projectionGuidance({ fn: hinge, iterations: 1, scale: 2, maxStep: 0.25 }))(tf.zeros([4, 2]), 0.5);
    const got = out.arraySync() as number[][];
    out.dispose();
    expect(Math.hypot(got[0][0] - 1, got[0][1] - 1)).toBeCloseTo(0.25, 5);
    expect(excess(got)[3]).toBeCloseTo(2.3 - 0.25, 5);
    const off = guide(fixed(rows), projectionGuidance({ fn: hinge, schedule: { tStart: 0.4, tEnd: 0 } }))(tf.zeros([4, 2]), 0.5);
    expect(off.arraySync()).toEqual(rows);
    off.dispose();
  });

  it('sampling a Gaussian with a half-plane constraint ends (nearly) inside it; unguided puts mass outside', () => {
    const den = gaussianDenoiser({ mean: [0, 0], cov: [[1, 0], [0, 1]] }, vp);
    const draw = (d: Denoiser): number[] => {
      const x = sample({ denoiser: d, path: vp, shape: [2000, 2], sampler: 'ddim', grid: { kind: 'uniform', steps: 20 }, rng: new Rng(5) });
      const e = excess(x.arraySync() as number[][]);
      x.dispose();
      return e;
    };
    const base = draw(den);
    const proj = draw(guide(den, projectionGuidance({ fn: hinge, iterations: 3 })));
    const newton = draw(guide(den, projectionGuidance({ fn: hinge, iterations: 1, scale: 2 })));
    const outside = (e: number[]): number => e.filter((v) => v > 1e-4).length / e.length;
    const meanExcess = (e: number[]): number => e.reduce((a, v) => a + Math.max(0, v), 0) / e.length;
    console.log(
      `projection: mean excess beyond a.x = b ${meanExcess(base).toFixed(4)} unguided, ${meanExcess(proj).toFixed(4)} with 3 Polyak steps (worst ${Math.max(...proj).toFixed(4)}), ` +
        `${meanExcess(newton).toFixed(6)} with one Newton step; share beyond: ${(100 * outside(base)).toFixed(1)}% / ${(100 * outside(proj)).toFixed(1)}% / ${(100 * outside(newton)).toFixed(2)}%`,
    );
    // P(a.x > -0.5) = 69% for a standard normal and a unit normal vector a.
    expect(outside(base)).toBeGreaterThan(0.6);
    // The last call's 3 Polyak steps leave 1/8 of the excess the sampler brings to it, and the
    // earlier calls have already pulled the trajectory towards the half-plane.
    expect(meanExcess(proj)).toBeLessThan(meanExcess(base) / 8);
    // A Newton step projects a linear constraint exactly.
    expect(outside(newton)).toBe(0);
  });

  it('rejects bad options and wrongly shaped objectives; leaks no tensors', () => {
    expect(() => projectionGuidance({ fn: hinge, iterations: 0 })).toThrow(/iterations/);
    expect(() => projectionGuidance({ fn: hinge, scale: 0 })).toThrow(/scale must be > 0/);
    expect(() => projectionGuidance({ fn: hinge, scale: 5 })).toThrow(/scale/);
    expect(() => projectionGuidance({ fn: hinge, maxStep: -1 })).toThrow(/maxStep/);
    expect(() => projectionGuidance({ fn: 3 as unknown as () => tf.Tensor })).toThrow(/fn must be a function/);
    const bad = guide(fixed(rows), projectionGuidance({ fn: (x) => tf.sum(x) }));
    const xt = tf.zeros([4, 2]);
    const n0 = tf.memory().numTensors;
    expect(() => bad(xt, 0.5)).toThrow(/one violation per sample, shape \[4\]/);
    const good = guide(fixed(rows), projectionGuidance({ fn: hinge }));
    for (let i = 0; i < 5; i++) good(xt, 0.5).dispose();
    expect(tf.memory().numTensors).toBe(n0);
    xt.dispose();
  });
});

describe('inpainting', () => {
  const MU = [1, -0.5];
  const COV = [[1, 0.6], [0.6, 0.8]];
  const den = gaussianDenoiser({ mean: MU, cov: COV }, vp);
  const K = 2; // known x1
  const condMean = MU[1] + (COV[1][0] / COV[0][0]) * (K - MU[0]); // 0.1
  const condVar = COV[1][1] - COV[1][0] ** 2 / COV[0][0]; // 0.44

  // Posterior variance of x0_1 given x_t: Cov[x0 | x_t] = s^2 Sigma (a^2 Sigma + s^2 I)^-1, entry (1, 1).
  const postVar11 = (t: number): number => {
    const a2 = vp.alpha(t) ** 2;
    const s2 = vp.sigma(t) ** 2;
    const m = [[a2 * COV[0][0] + s2, a2 * COV[0][1]], [a2 * COV[1][0], a2 * COV[1][1] + s2]];
    const det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    return s2 * (COV[0][0] * m[1][1] - COV[0][1] * m[1][0]) / det;
  };

  it('replacement keeps known entries exact; alone it is biased toward the unconditional law (measured)', () => {
    const known = tf.tensor1d([K, 0]);
    const mask = tf.tensor1d([1, 0]);
    const results: string[] = [];
    for (const [sampler, steps] of [['dpmpp-2m', 100], ['ddpm', 200]] as const) {
      const ip = inpaint({ path: vp, known, mask, rng: new Rng(5) });
      const s = run(guide(den, ip.denoiser), 2, 41, steps, { project: ip.project, sampler });
      expect(s.rows.every((r) => r[0] === K)).toBe(true);
      results.push(`${sampler}/${steps}: E[x2|x1] ${s.mean[1].toFixed(4)}, Var ${s.variance[1].toFixed(4)}`);
      // Moves from the unconditional mean MU[1] = -0.5 toward E[x2|x1] = 0.1 but stops short.
      expect(s.mean[1]).toBeGreaterThan(MU[1] + 0.15);
      expect(s.mean[1]).toBeLessThan(condMean - 0.15);
    }
    console.log(`inpainting (replacement only), x1 = ${K}, exact E[x2|x1] = ${condMean.toFixed(4)}, Var = ${condVar.toFixed(4)}: ${results.join('; ')}`);
    tf.dispose([known, mask]);
  });

  it('replacement + reconstruction guidance samples the conditional Gaussian', () => {
    const known = tf.tensor1d([K, 0]);
    const mask = tf.tensor1d([1, 0]);
    const results: string[] = [];
    for (const [sampler, steps] of [['dpmpp-2m', 50], ['ddpm', 100]] as const) {
      const ip = inpaint({ path: vp, known, mask, rng: new Rng(5), reconstruction: { variance: postVar11 } });
      const s = run(guide(den, ip.denoiser), 2, 41, steps, { project: ip.project, sampler });
      expect(s.rows.every((r) => r[0] === K)).toBe(true);
      results.push(`${sampler}/${steps}: E[x2|x1] ${s.mean[1].toFixed(4)}, Var ${s.variance[1].toFixed(4)}`);
      expect(Math.abs(s.mean[1] - condMean)).toBeLessThan(4 * Math.sqrt(condVar / N) + 0.02);
      expect(Math.abs(s.variance[1] - condVar)).toBeLessThan(4 * condVar * Math.sqrt(2 / N) + 0.02);
    }
    // The default variance (isotropic, unit data scale) is an approximation: reported, loosely bounded.
    const ipDefault = inpaint({ path: vp, known, mask, rng: new Rng(5), reconstruction: {} });
    const d = run(guide(den, ipDefault.denoiser), 2, 41, 50, { project: ipDefault.project });
    results.push(`dpmpp-2m/50 with the default v(t): E[x2|x1] ${d.mean[1].toFixed(4)}, Var ${d.variance[1].toFixed(4)}`);
    expect(Math.abs(d.mean[1] - condMean)).toBeLessThan(0.1);
    console.log(`inpainting + reconstruction guidance, exact E[x2|x1] = ${condMean.toFixed(4)}, Var = ${condVar.toFixed(4)}: ${results.join('; ')}`);
    tf.dispose([known, mask]);
  });

  it('projects known entries to alpha known + sigma eps with one fixed eps, exact at t = 0', () => {
    const known = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
    const mask = tf.tensor2d([[1, 0, 1], [0, 1, 0]]);
    const ip = inpaint({ path: vp, known, mask, rng: new Rng(2) });
    const x = tf.fill([2, 3], 9);
    const p1 = ip.project(x, 0.5).arraySync() as number[][];
    const p2 = ip.project(x, 0.5).arraySync() as number[][];
    const p0 = ip.project(x, 0).arraySync() as number[][];
    expect(p2).toEqual(p1); // the same eps at every call
    const a = vp.alpha(0.5);
    const s = vp.sigma(0.5);
    const k = known.arraySync() as number[][];
    const m = mask.arraySync() as number[][];
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        if (m[i][j] === 1) {
          expect(p0[i][j]).toBe(k[i][j]);
          const eps = (p1[i][j] - a * k[i][j]) / s;
          expect(Math.abs(eps)).toBeLessThan(5);
          expect(p1[i][j]).not.toBe(a * k[i][j]);
        } else {
          expect(p1[i][j]).toBe(9);
          expect(p0[i][j]).toBe(9);
        }
      }
    }
    // The denoiser wrapper replaces known entries of x0hat.
    const d3: Denoiser = (y) => tf.mul(y, 0);
    const y = ip.denoiser(d3)(x, 0.5);
    expect(y.arraySync()).toEqual([[1, 0, 3], [0, 5, 0]]);
    tf.dispose([known, mask, x, y]);
  });

  it('validates known and mask against x', () => {
    const known = tf.tensor1d([1, 2]);
    const mask = tf.tensor1d([1, 0]);
    const ip = inpaint({ path: vp, known, mask, rng: new Rng(2) });
    const x3 = tf.zeros([4, 3]);
    expect(() => ip.project(x3, 0.5)).toThrow(/^known: expected the shape of x \[4, 3\] or of one sample \[3\], received \[2\]/);
    expect(() => ip.denoiser(den)(x3, 0.5)).toThrow(/^known: expected the shape of x/);
    const ipMask = inpaint({ path: vp, known: tf.zeros([3]), mask: tf.tensor1d([1, 0]), rng: new Rng(2) });
    expect(() => ipMask.project(x3, 0.5)).toThrow(/^mask: expected the shape of x \[4, 3\]/);
    expect(() => inpaint({ path: vp, known, mask: tf.tensor1d([0.5, 1]), rng: new Rng(2) })).toThrow(/^mask: expected entries 0 or 1, received 0.5/);
    expect(() => inpaint({ path: vp, known: tf.tensor1d([Number.NaN, 1]), mask, rng: new Rng(2) })).toThrow(/^known: contains a non-finite value/);
    expect(() => inpaint({ path: vp, known: [1, 2] as never, mask, rng: new Rng(2) })).toThrow(/^known: expected a tensor/);
    expect(() => inpaint({ path: vp, known, mask, rng: undefined as never })).toThrow(/^rng: expected an Rng/);
    tf.dispose([known, mask, x3]);
  });
});

describe('composition', () => {
  const den = gaussianDenoiser({ mean: [1, -1], cov: [[0.5, 0], [0, 0.5]] }, vp);
  const pull = (c: number[]) => {
    const ct = tf.tensor1d(c);
    return { fn: (x: tf.Tensor): tf.Tensor => tf.mul(tf.sum(tf.square(tf.sub(x, ct)), 1), -0.5), ct };
  };

  it('each term keeps its own scale and schedule; xt-space shifts add', () => {
    const A = pull([3, 0]);
    const B = pull([-2, 4]);
    const termA = gradientGuidance({ path: vp, fn: A.fn, on: 'xt', scale: 2, schedule: { tStart: 1, tEnd: 0.5 } });
    const termB = gradientGuidance({ path: vp, fn: B.fn, on: 'xt', scale: 0.5 });
    const both = guide(den, termA, termB);
    const x = tf.tensor2d([[0.2, 0.1], [-1, 2]]);
    for (const t of [0.3, 0.7]) {
      const coef = vp.sigma(t) ** 2 / vp.alpha(t);
      const want = tf.tidy(() => {
        let w = tf.add(den(x, t), tf.mul(tf.sub(B.ct, x), 0.5 * coef));
        if (t >= 0.5) w = tf.add(w, tf.mul(tf.sub(A.ct, x), 2 * coef));
        return w;
      });
      const got = both(x, t);
      expect(tf.tidy(() => tf.max(tf.abs(tf.sub(got, want))).dataSync()[0])).toBeLessThan(1e-4 * (1 + coef));
      tf.dispose([want, got]);
    }
    tf.dispose([x, A.ct, B.ct]);
  });

  it('inpainting + DPS reward + a second projection: known entries exact, reward pulls the free entry', () => {
    const known = tf.tensor1d([2, 0]);
    const mask = tf.tensor1d([1, 0]);
    const R = pull([0, 2]);
    const ip = inpaint({ path: vp, known, mask, rng: new Rng(6) });
    const clampCalls: number[] = [];
    const clamp = (x: tf.Tensor, t: number): tf.Tensor => {
      clampCalls.push(t);
      return tf.clipByValue(x, -50, 50);
    };
    const project = composeProjections(ip.project, clamp);
    const plain = run(guide(den, ip.denoiser), 2, 51, 50, { project });
    const guided = run(guide(den, ip.denoiser, gradientGuidance({ path: vp, fn: R.fn, on: 'x0', scale: 1, schedule: (t) => (t < 0.9 ? 1 : 0) })), 2, 51, 50, { project });
    console.log(`composition: free entry mean ${plain.mean[1].toFixed(4)} unguided -> ${guided.mean[1].toFixed(4)} guided (reward centre 2)`);
    expect(guided.rows.every((r) => r[0] === 2)).toBe(true);
    expect(guided.mean[1]).toBeGreaterThan(plain.mean[1] + 0.5);
    expect(clampCalls.length).toBe(2 * 51);
    tf.dispose([known, mask, R.ct]);
  });

  it('validates terms and projections', () => {
    expect(() => guide(den, 5 as never)).toThrow(/^terms\[0\]: expected a guidance term/);
    expect(() => guide(undefined as never)).toThrow(/^den: expected a denoiser/);
    expect(() => composeProjections((x) => x, null as never)).toThrow(/^projections\[1\]: expected a projection/);
    const x = tf.ones([2, 2]);
    const y = composeProjections()(x, 0.5);
    expect(y).not.toBe(x);
    expect(Array.from(y.dataSync())).toEqual([1, 1, 1, 1]);
    tf.dispose([x, y]);
  });
});
