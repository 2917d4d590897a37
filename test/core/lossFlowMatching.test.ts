import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
// Gradient functions: tfjs-core's Node bundle registers none; the union package does.
import '@tensorflow/tfjs';
import type { Network, Parameterization } from '../../src/denoiser/denoiser.js';
import { denoisingLoss, flowMatchingLoss, otCoupling, type Coupling } from '../../src/loss/index.js';
import { rectifiedFlow, vpCosine, type NoisePath } from '../../src/path/index.js';
import { Rng } from '../../src/rng/rng.js';

const X_STAR = [0.75, -1.25, 0.5];
const M2 = X_STAR.reduce((s, v) => s + v * v, 0) / X_STAR.length;
const pointBatch = (b: number): tf.Tensor => tf.tensor2d(Array.from({ length: b }, () => X_STAR));

function lossValue(f: () => tf.Scalar): number {
  const l = f();
  const v = l.dataSync()[0];
  l.dispose();
  return v;
}

/** The exact velocity for data at X_STAR: u = a' X_STAR + s' (x - a X_STAR) / s (or x0 = X_STAR for an x0 network). */
function perfectNet(path: NoisePath, kind: 'velocity' | 'x0'): Network {
  return (x, feat) => {
    const f = feat.arraySync() as number[];
    const rows = (x.arraySync() as number[][]).map((row, i) => {
      const t = f[i];
      const a = path.alpha(t);
      const s = path.sigma(t);
      return row.map((v, k) => (kind === 'x0' ? X_STAR[k] : path.dAlpha(t) * X_STAR[k] + (path.dSigma(t) * (v - a * X_STAR[k])) / s));
    });
    return tf.tensor2d(rows);
  };
}
const zeroNet: Network = (x) => tf.zerosLike(x);

describe('flowMatchingLoss', () => {
  it('is ~0 for the exact conditional velocity (one-point data) on rectified flow and VP, velocity or x0 networks', () => {
    const x0 = pointBatch(256);
    for (const path of [rectifiedFlow(), vpCosine()]) {
      for (const kind of ['velocity', 'x0'] as const) {
        const loss = flowMatchingLoss({ param: { path, prediction: kind }, sampleT: (n, rng) => Array.from({ length: n }, () => 0.05 + 0.9 * rng.uniform()) });
        const v = lossValue(() => loss(perfectNet(path, kind), x0, new Rng(1)));
        const ref = lossValue(() => loss(zeroNet, x0, new Rng(1)));
        console.log(`${path.kind} ${kind}: perfect ${v.toExponential(2)}, zero network ${ref.toFixed(3)}`);
        expect(v / ref).toBeLessThan(1e-9);
      }
    }
    x0.dispose();
  });

  it('a zero velocity network has E loss = 1 + E[x0^2] on rectified flow (for any p(t))', () => {
    const x0 = pointBatch(8192);
    for (const sampleT of ['uniform', 'logit-normal'] as const) {
      const loss = flowMatchingLoss({ param: { path: rectifiedFlow(), prediction: 'velocity' }, sampleT });
      const vals = [1, 2, 3, 4].map((s) => lossValue(() => loss(zeroNet, x0, new Rng(s))));
      const mean = vals.reduce((a, b) => a + b) / vals.length;
      console.log(`${sampleT}: MC ${mean.toFixed(4)} vs analytic ${(1 + M2).toFixed(4)}`);
      // per-entry variance of (eps - x0)^2 is 2 + 4 E[x0^2]; s.e. of 4 x 24576 entries ~ 0.006
      expect(Math.abs(mean - (1 + M2))).toBeLessThan(0.025);
    }
    x0.dispose();
  });

  it('equals the denoising loss with a velocity target and no weighting (same draws)', () => {
    const path = rectifiedFlow();
    const w = tf.variable(tf.tensor2d([[0.8, -0.3], [0.2, 0.5]]));
    const net: Network = (x, f) => tf.add(tf.matMul(x, w), tf.reshape(f, [-1, 1]));
    const x0 = tf.tensor2d([[0.5, -1], [1.5, 0.5], [0, 0.2], [-1, 1]]);
    const p: Parameterization = { path, prediction: 'velocity' };
    const a = lossValue(() => flowMatchingLoss({ param: p })(net, x0, new Rng(3)));
    const b = lossValue(() => denoisingLoss({ param: p, target: 'velocity' })(net, x0, new Rng(3)));
    expect(a).toBeCloseTo(b, 6);
    tf.dispose([w, x0]);
  });

  it('paired noise (reflow): the given noise replaces the draws, by hand at fixed t; bad noise is refused', () => {
    const path = rectifiedFlow();
    const t = 0.4;
    const x0 = tf.tensor2d([[0.5, -1], [1.5, 0.5], [0, 0.2]]);
    const eps = tf.tensor2d([[0.3, 0.1], [-1.2, 0.7], [2, -0.4]]);
    const net: Network = (x) => tf.mul(x, 0.5);
    const p: Parameterization = { path, prediction: 'velocity' };
    const fixedT = { sampleT: (n: number) => Array.from({ length: n }, () => t) };
    // x_t = (1 - t) x0 + t eps, u = eps - x0, net = x_t / 2.
    const xs = [[0.5, -1], [1.5, 0.5], [0, 0.2]];
    const es = [[0.3, 0.1], [-1.2, 0.7], [2, -0.4]];
    let sum = 0;
    xs.forEach((r, i) => r.forEach((v, k) => (sum += ((((1 - t) * v + t * es[i]![k]!) / 2) - (es[i]![k]! - v)) ** 2)));
    const expected = sum / 6;
    for (const make of [() => flowMatchingLoss({ param: p, ...fixedT }), () => denoisingLoss({ param: p, target: 'velocity', ...fixedT })]) {
      const loss = make();
      // Any rng: the noise is given.
      expect(lossValue(() => loss(net, x0, new Rng(1), undefined, undefined, eps))).toBeCloseTo(expected, 5);
      expect(lossValue(() => loss(net, x0, new Rng(2), undefined, undefined, eps))).toBeCloseTo(expected, 5);
      expect(() => loss(net, x0, new Rng(1), undefined, undefined, tf.zeros([3, 3]))).toThrow(/noise: expected shape \[3, 2\] \(like x0Batch\), received \[3, 3\]/);
      expect(() => loss(net, x0, new Rng(1), undefined, undefined, tf.tensor2d([[NaN, 0], [0, 0], [0, 0]]))).toThrow(/noise/);
    }
    // Re-coupling paired noise would break the pairs.
    expect(() => flowMatchingLoss({ param: p, coupling: otCoupling({ method: 'exact' }) })(net, x0, new Rng(1), undefined, undefined, eps)).toThrow(/paired noise cannot be combined with a coupling/);
    tf.dispose([x0, eps]);
  });

  it('sigmaMin widens x_t but keeps the target (hand computation at fixed t)', () => {
    const path = rectifiedFlow();
    const t = 0.3;
    const x0 = tf.tensor2d([[0.5, -1], [1.5, 0.5], [0, 0.2]]);
    const net: Network = (x) => tf.mul(x, 0.5);
    const loss = flowMatchingLoss({ param: { path, prediction: 'velocity' }, sigmaMin: 0.1, sampleT: (n) => new Array(n).fill(t) });
    const got = lossValue(() => loss(net, x0, new Rng(4)));
    // draw order: eps, then the tube noise z (the fixed-t sampler and independent coupling draw nothing)
    const r = new Rng(4);
    const eps = tf.tidy(() => r.normal([3, 2])).arraySync() as number[][];
    const z = tf.tidy(() => r.normal([3, 2])).arraySync() as number[][];
    const xs = x0.arraySync() as number[][];
    let acc = 0;
    for (let i = 0; i < 3; i++) for (let k = 0; k < 2; k++) {
      const xt = (1 - t) * xs[i][k] + t * eps[i][k] + 0.1 * z[i][k];
      acc += (0.5 * xt - (eps[i][k] - xs[i][k])) ** 2;
    }
    expect(got / (acc / 6)).toBeCloseTo(1, 5);
    x0.dispose();
  });

  it('with an OT coupling: deterministic, differentiable, leak-free', () => {
    const path = rectifiedFlow();
    const w = tf.variable(tf.tensor2d([[0.8, -0.3], [0.2, 0.5]]));
    const net: Network = (x, f) => tf.add(tf.matMul(x, w), tf.reshape(f, [-1, 1]));
    const x0 = tf.tidy(() => tf.add(new Rng(0).normal([64, 2]), 3));
    const loss = flowMatchingLoss({ param: { path, prediction: 'velocity' }, coupling: otCoupling() });
    expect(lossValue(() => loss(net, x0, new Rng(5)))).toBe(lossValue(() => loss(net, x0, new Rng(5))));
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => loss(net, x0, new Rng(6)), [w]);
    const g = grads[w.name].dataSync();
    expect(Array.from(g).every(Number.isFinite)).toBe(true);
    expect(Math.max(...Array.from(g, Math.abs))).toBeGreaterThan(1e-3);
    tf.dispose([value, grads[w.name]]);
    expect(tf.memory().numTensors).toBe(before);
    // OT pairs data with nearby noise: the regression target is smaller than under independent pairing
    const indep = flowMatchingLoss({ param: { path, prediction: 'velocity' } });
    const zero = (l: typeof loss): number => lossValue(() => l(zeroNet, x0, new Rng(7)));
    console.log(`E||u||^2 per entry: independent ${zero(indep).toFixed(3)}, OT ${zero(loss).toFixed(3)}`);
    expect(zero(loss)).toBeLessThan(zero(indep));
    tf.dispose([w, x0]);
  });

  it('rejects bad arguments naming them', () => {
    const p: Parameterization = { path: rectifiedFlow(), prediction: 'velocity' };
    const x0 = pointBatch(4);
    expect(() => flowMatchingLoss({ param: p, sigmaMin: -1 })).toThrow(/sigmaMin: expected >= 0/);
    expect(() => flowMatchingLoss({ param: p, coupling: 3 as unknown as Coupling })).toThrow(/coupling: expected a function/);
    const bad: Coupling = (a, e) => ({ x0: a.clone(), eps: tf.slice(e, [0, 0], [2, 3]) });
    expect(() => flowMatchingLoss({ param: p, coupling: bad })(zeroNet, x0, new Rng(1))).toThrow(/coupling: returned shape \[2, 3\]/);
    const nan = tf.tensor2d([[NaN, 0, 0]]);
    expect(() => flowMatchingLoss({ param: p })(zeroNet, nan, new Rng(1))).toThrow(/x0Batch: contains a non-finite value/);
    tf.dispose([x0, nan]);
  });
});
