import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import {
  assignmentCost,
  hungarian,
  independentCoupling,
  otCoupling,
  otPairing,
  planToPairing,
  refinePairing,
  sinkhorn,
  squaredDistances,
} from '../../src/loss/index.js';
import { Rng } from '../../src/rng/rng.js';

function randomCost(rng: Rng, n: number, m: number, integer = false): number[][] {
  return Array.from({ length: n }, () => Array.from({ length: m }, () => (integer ? Math.floor(rng.uniform() * 5) : rng.uniform() * 10 - 2)));
}

/** Minimum over all injective maps rows -> columns, by enumeration. */
function bruteForce(cost: number[][]): number {
  const n = cost.length;
  const m = cost[0].length;
  let best = Infinity;
  const used = new Array<boolean>(m).fill(false);
  const rec = (i: number, acc: number): void => {
    if (i === n) {
      best = Math.min(best, acc);
      return;
    }
    for (let j = 0; j < m; j++) {
      if (used[j]) continue;
      used[j] = true;
      rec(i + 1, acc + cost[i][j]);
      used[j] = false;
    }
  };
  rec(0, 0);
  return best;
}

function isInjective(assign: number[], m: number): boolean {
  const seen = new Set(assign);
  return seen.size === assign.length && assign.every((j) => Number.isInteger(j) && j >= 0 && j < m);
}

/** Points of a 2D two-cluster data set and standard-normal noise, as flat row-major arrays. */
function pointSets(rng: Rng, n: number): { x: number[]; y: number[] } {
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 2 === 0 ? 2 : -2;
    x.push(c + 0.3 * rng.normalScalar(), 0.5 * rng.normalScalar());
    y.push(rng.normalScalar(), rng.normalScalar());
  }
  return { x, y };
}

describe('hungarian', () => {
  it('equals brute force on 300 random 6x6 costs (and integer costs with ties)', () => {
    const rng = new Rng(1);
    for (let trial = 0; trial < 300; trial++) {
      const cost = randomCost(rng, 6, 6, trial % 3 === 0);
      const a = hungarian(cost);
      expect(isInjective(a, 6)).toBe(true);
      expect(assignmentCost(cost, a)).toBeCloseTo(bruteForce(cost), 9);
    }
  });

  it('solves rectangular problems (rows < columns) and trivial sizes', () => {
    const rng = new Rng(2);
    for (let trial = 0; trial < 100; trial++) {
      const cost = randomCost(rng, 4, 7);
      const a = hungarian(cost);
      expect(isInjective(a, 7)).toBe(true);
      expect(assignmentCost(cost, a)).toBeCloseTo(bruteForce(cost), 9);
    }
    expect(hungarian([])).toEqual([]);
    expect(hungarian([[3]])).toEqual([0]);
  });

  it('recovers a hidden zero-cost permutation at n = 256', () => {
    const rng = new Rng(3);
    const n = 256;
    const perm = Array.from(rng.permutation(n));
    const cost = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j === perm[i] ? 0 : 0.01 + rng.uniform())));
    const t0 = performance.now();
    expect(hungarian(cost)).toEqual(perm);
    const ms = performance.now() - t0;
    console.log(`hungarian n=256: ${ms.toFixed(0)} ms`);
  });

  it('rejects malformed costs naming the argument', () => {
    expect(() => hungarian([[1, 2], [3]])).toThrow(/cost: row 1 has 1 entries, expected 2/);
    expect(() => hungarian([[1, NaN], [3, 4]])).toThrow(/cost: entry \[0\]\[1\] is not finite/);
    expect(() => hungarian([[1], [2]])).toThrow(/cost: expected no more rows than columns/);
  });
});

describe('sinkhorn', () => {
  it('returns a plan with uniform marginals', () => {
    const rng = new Rng(4);
    const cost = randomCost(rng, 20, 30);
    const { plan, marginalError } = sinkhorn(cost, 0.5, 500);
    expect(marginalError).toBeLessThan(1e-6);
    for (const row of plan) expect(row.reduce((a, b) => a + b, 0) * 20).toBeCloseTo(1, 5);
    for (let j = 0; j < 30; j++) expect(plan.reduce((a, row) => a + row[j], 0) * 30).toBeCloseTo(1, 9);
  });

  it("otCoupling's Sinkhorn pairing costs within 1% of the optimum on 64-point sets", () => {
    const rng = new Rng(5);
    const raw: number[] = [];
    const sampled: number[] = [];
    const coupled: number[] = [];
    for (let trial = 0; trial < 10; trial++) {
      const { x, y } = pointSets(rng, 64);
      const cost = squaredDistances(x, 64, y, 64, 2);
      const opt = assignmentCost(cost, hungarian(cost));
      const mean = cost.reduce((a, r) => a + r.reduce((b, c) => b + c, 0), 0) / 64 ** 2;
      const { plan, marginalError } = sinkhorn(cost, 0.05 * mean, 100, { tol: 1e-4 });
      expect(marginalError).toBeLessThan(1e-2);
      const greedy = planToPairing(plan, 'argmax');
      const drawn = planToPairing(plan, 'sample', rng);
      expect(isInjective(greedy, 64) && isInjective(drawn, 64)).toBe(true);
      raw.push(assignmentCost(cost, greedy) / opt);
      sampled.push(assignmentCost(cost, drawn) / opt);
      // the coupling's own path: same defaults (eps = 0.05 x mean cost), argmax, 3 exchange passes
      const x0 = tf.tensor2d(x, [64, 2]);
      const eps = tf.tensor2d(y, [64, 2]);
      const pairing = otPairing(x0, eps, rng, { method: 'sinkhorn' });
      expect(isInjective(pairing, 64)).toBe(true);
      expect(pairing).toEqual(refinePairing(cost, greedy, 3));
      coupled.push(assignmentCost(cost, pairing) / opt);
      tf.dispose([x0, eps]);
    }
    const worst = (r: number[]): number => Math.max(...r);
    const avg = (r: number[]): number => r.reduce((p, q) => p + q, 0) / r.length;
    console.log(
      `sinkhorn (eps = 0.05 mean cost) pairing cost / optimum over 10 sets (mean, worst): argmax ${avg(raw).toFixed(4)}, ${worst(raw).toFixed(4)}; ` +
        `sample ${avg(sampled).toFixed(4)}, ${worst(sampled).toFixed(4)}; otCoupling (argmax + exchanges) ${avg(coupled).toFixed(4)}, ${worst(coupled).toFixed(4)}`,
    );
    for (const r of [...raw, ...sampled, ...coupled]) expect(r).toBeGreaterThanOrEqual(1 - 1e-12);
    // measured: argmax 1.03 / 1.09, sample 1.14 / 1.28, coupling 1.002 / 1.0045
    expect(avg(raw)).toBeLessThan(1.06);
    expect(worst(raw)).toBeLessThan(1.15);
    expect(worst(sampled)).toBeLessThan(1.4);
    expect(worst(coupled)).toBeLessThan(1.01);
  });

  it('epsilon scaling converges faster at small epsilon', () => {
    const rng = new Rng(9);
    const { x, y } = pointSets(rng, 64);
    const cost = squaredDistances(x, 64, y, 64, 2);
    const mean = cost.reduce((a, r) => a + r.reduce((b, c) => b + c, 0), 0) / 64 ** 2;
    const plain = sinkhorn(cost, 0.005 * mean, 100, { tol: 0 });
    const scaled = sinkhorn(cost, 0.005 * mean, 100, { tol: 0, epsilonStart: mean });
    console.log(`marginal error after 100 iterations at eps = 0.005 mean cost: plain ${plain.marginalError.toExponential(2)}, scaled ${scaled.marginalError.toExponential(2)}`);
    expect(scaled.epsilon).toBe(0.005 * mean);
    expect(scaled.marginalError).toBeLessThan(0.5 * plain.marginalError);
  });
});

describe('otCoupling', () => {
  function meanSqDistance(a: tf.Tensor, b: tf.Tensor): number {
    return tf.tidy(() => tf.mean(tf.sum(tf.square(tf.sub(a, b)), 1)).dataSync()[0]);
  }

  it('reduces the mean squared pairing distance against independent pairing', () => {
    const rng = new Rng(6);
    const { x, y } = pointSets(rng, 128);
    const x0 = tf.tensor2d(x, [128, 2]);
    const eps = tf.tensor2d(y, [128, 2]);
    const ind = independentCoupling(x0, eps, rng);
    const exact = otCoupling({ method: 'exact' })(x0, eps, rng);
    const sk = otCoupling({ method: 'sinkhorn' })(x0, eps, rng);
    const dInd = meanSqDistance(ind.x0, ind.eps);
    const dExact = meanSqDistance(exact.x0, exact.eps);
    const dSk = meanSqDistance(sk.x0, sk.eps);
    console.log(`mean squared pairing distance: independent ${dInd.toFixed(3)}, exact OT ${dExact.toFixed(3)}, sinkhorn ${dSk.toFixed(3)}`);
    expect(dExact).toBeLessThan(0.5 * dInd);
    expect(dSk).toBeLessThan(1.03 * dExact);
    expect(dSk).toBeGreaterThanOrEqual(dExact * (1 - 1e-6));
    // data rows untouched; noise rows are a permutation of the input rows
    expect(exact.x0.arraySync()).toEqual(x0.arraySync());
    const rows = (t: tf.Tensor): string[] => (t.arraySync() as number[][]).map((r) => r.join(',')).sort();
    expect(rows(exact.eps)).toEqual(rows(eps));
    expect(rows(sk.eps)).toEqual(rows(eps));
    tf.dispose([x0, eps, ind.x0, ind.eps, exact.x0, exact.eps, sk.x0, sk.eps]);
  });

  it("'auto' is exact up to exactMaxBatch and Sinkhorn above; works on [B, N, D] batches", () => {
    const rng = new Rng(7);
    const x0 = rng.normal([40, 3, 2]);
    const eps = rng.normal([40, 3, 2]);
    const exact = otPairing(x0, eps, rng, { method: 'exact' });
    expect(otPairing(x0, eps, rng, { method: 'auto' })).toEqual(exact);
    expect(otPairing(x0, eps, rng, { method: 'auto', exactMaxBatch: 16 })).toEqual(otPairing(x0, eps, rng, { method: 'sinkhorn' }));
    expect(otPairing(x0, eps, rng, { method: 'sinkhorn', refine: 0 })).not.toEqual(exact);
    const cost = squaredDistances(x0.dataSync(), 40, eps.dataSync(), 40, 6);
    expect(assignmentCost(cost, exact)).toBeCloseTo(bruteForceFree(cost, exact), 9);
    tf.dispose([x0, eps]);
  });

  it('is leak-free and rejects mismatched shapes and unknown methods', () => {
    const rng = new Rng(8);
    const x0 = rng.normal([16, 2]);
    const eps = rng.normal([16, 2]);
    const before = tf.memory().numTensors;
    const out = otCoupling()(x0, eps, rng);
    tf.dispose([out.x0, out.eps]);
    expect(tf.memory().numTensors).toBe(before);
    const bad = rng.normal([16, 3]);
    expect(() => otCoupling()(x0, bad, rng)).toThrow(/eps: expected the shape of x0/);
    expect(() => otCoupling({ method: 'emd' as 'exact' })).toThrow(/method: unknown value 'emd'/);
    tf.dispose([x0, eps, bad]);
  });
});

/** No pairwise swap improves an assignment (a necessary optimality check for large n). */
function bruteForceFree(cost: Float64Array[], a: number[]): number {
  for (let i = 0; i < a.length; i++) {
    for (let k = i + 1; k < a.length; k++) {
      const cur = cost[i][a[i]] + cost[k][a[k]];
      const swp = cost[i][a[k]] + cost[k][a[i]];
      if (swp < cur - 1e-9) return -1;
    }
  }
  return assignmentCost(cost, a);
}
