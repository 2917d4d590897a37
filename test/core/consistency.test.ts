import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
// Gradient functions and optimizers: tfjs-core's Node bundle registers no gradients; the union package does.
import '@tensorflow/tfjs';
import { predictBatch, wrapNetwork, type Network } from '../../src/denoiser/denoiser.js';
import { coefsForBatch } from '../../src/predict/coefs.js';
import { toX0Eps } from '../../src/predict/convert.js';
import { gaussianDenoiser } from '../../src/denoiser/gaussian.js';
import { karrasGrid } from '../../src/grid/grid.js';
import {
  consistencyDenoiser,
  consistencyDistillationLoss,
  consistencyForward,
  consistencyGrid,
  consistencyParam,
  consistencyScalings,
  consistencyTrainingLoss,
  type ConsistencyParam,
} from '../../src/loss/index.js';
import { edm, rectifiedFlow, vpCosine } from '../../src/path/index.js';
import { Rng } from '../../src/rng/rng.js';
import { consistencyOneStep, flowRk4, heunEdm } from '../../src/sample/index.js';

/** A tiny MLP on [x, tFeature]: 2 hidden SiLU layers of `width`. */
function mlp(dim: number, width: number, seed: number): { net: Network; vars: tf.Variable[] } {
  const rng = new Rng(seed);
  const dense = (i: number, o: number, scale: number): [tf.Variable, tf.Variable] => [
    tf.variable(tf.tidy(() => tf.mul(rng.normal([i, o]), scale / Math.sqrt(i)))),
    tf.variable(tf.zeros([o])),
  ];
  const [w1, b1] = dense(dim + 1, width, 1);
  const [w2, b2] = dense(width, width, 1);
  const [w3, b3] = dense(width, dim, 0.1);
  const net: Network = (x, f) =>
    tf.tidy(() => {
      const h0 = tf.concat([x, tf.reshape(f, [-1, 1])], 1);
      const h1 = tf.mul(tf.add(tf.matMul(h0, w1), b1), tf.sigmoid(tf.add(tf.matMul(h0, w1), b1)));
      const a2 = tf.add(tf.matMul(h1, w2), b2);
      const h2 = tf.mul(a2, tf.sigmoid(a2));
      return tf.add(tf.matMul(h2, w3), b3);
    });
  return { net, vars: [w1, b1, w2, b2, w3, b3] };
}

/** A copy of a network with its own (non-trainable) variables, for the EMA target. */
function emaCopy(dim: number, width: number, src: tf.Variable[]): { net: Network; vars: tf.Variable[]; update: (decay: number) => void } {
  const m = mlp(dim, width, 0);
  m.vars.forEach((v, i) => v.assign(src[i]));
  return {
    net: m.net,
    vars: m.vars,
    update: (d) => tf.tidy(() => m.vars.forEach((v, i) => v.assign(tf.add(tf.mul(v, d), tf.mul(src[i], 1 - d))))),
  };
}

function meanCov(x: tf.Tensor): { mean: number[]; cov: number[][] } {
  const a = x.arraySync() as number[][];
  const n = a.length;
  const d = a[0].length;
  const mean = Array.from({ length: d }, (_, k) => a.reduce((s, r) => s + r[k], 0) / n);
  const cov = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => a.reduce((s, r) => s + (r[i] - mean[i]) * (r[j] - mean[j]), 0) / (n - 1)));
  return { mean, cov };
}

/** The 2-D Gaussian of the distillation tests, its analytic teacher on `path`, and a sampler of it. */
function gaussianToy(path: Parameters<typeof gaussianDenoiser>[1]) {
  const spec = { mean: [0.5, -0.25], cov: [[0.3, 0.12], [0.12, 0.2]] };
  const teacher = gaussianDenoiser(spec, path);
  const L = [[Math.sqrt(0.3), 0], [0.12 / Math.sqrt(0.3), Math.sqrt(0.2 - 0.12 ** 2 / 0.3)]];
  const Lt = tf.tensor2d([[L[0][0], L[1][0]], [0, L[1][1]]]);
  const mu = tf.tensor1d(spec.mean);
  const draw = (rng: Rng, n: number): tf.Tensor => tf.tidy(() => tf.add(tf.matMul(rng.normal([n, 2]), Lt), mu));
  return { spec, teacher, Lt, mu, draw };
}

const fmt = (v: number[] | number[][]): string => JSON.stringify(v, (_, x) => (typeof x === 'number' ? Number(x.toFixed(3)) : x));

/**
 * Distils the analytic Gaussian teacher on `cp.path` into a 'denoiser'-form student (800 steps,
 * pseudo-Huber, Heun teacher steps on a 30-point grid) and compares one-step samples with the
 * teacher's reference ODE solution from the same noise.
 */
function distilDenoiserForm(
  path: Parameters<typeof gaussianDenoiser>[1],
  cp: ConsistencyParam,
  label: string,
  reference: (teacher: ReturnType<typeof gaussianDenoiser>, noise: tf.Tensor) => tf.Tensor,
): { before: number; after: number; a: ReturnType<typeof meanCov>; b: ReturnType<typeof meanCov> } {
  const { teacher, Lt, mu, draw } = gaussianToy(path);
  const { net, vars } = mlp(2, 64, 7);
  const ema = emaCopy(2, 64, vars);
  const loss = consistencyDistillationLoss({ cparam: cp, teacher, solver: 'heun', grid: consistencyGrid(cp, 30), metric: 'pseudo-huber' });
  const noise = tf.tidy(() => tf.mul(new Rng(99).normal([4000, 2]), path.sigma(path.tMax)));
  const ref = reference(teacher, noise);
  const oneStep = (n: Network): tf.Tensor => consistencyOneStep(consistencyDenoiser(n, cp), noise, [path.tMax, 0], path);
  const rmseVsTeacher = (n: Network): number => tf.tidy(() => Math.sqrt(tf.mean(tf.square(tf.sub(oneStep(n), ref))).dataSync()[0]));
  const before = rmseVsTeacher(ema.net);
  const opt = tf.train.adam(2e-3);
  const rng = new Rng(18);
  for (let step = 0; step < 800; step++) {
    const x0 = draw(rng, 256);
    (opt.minimize(() => loss(net, ema.net, x0, rng), true, vars) as tf.Scalar).dispose();
    x0.dispose();
    ema.update(0.95);
  }
  const after = rmseVsTeacher(ema.net);
  const cm = oneStep(ema.net);
  const a = meanCov(cm);
  const b = meanCov(ref);
  console.log(`${label}, denoiser form: rmse vs teacher ${before.toFixed(3)} -> ${after.toFixed(3)}; mean ${fmt(a.mean)} vs ${fmt(b.mean)}, cov ${fmt(a.cov)} vs ${fmt(b.cov)}`);
  tf.dispose([noise, ref, cm, Lt, mu, ...vars, ...ema.vars]);
  opt.dispose();
  return { before, after, a, b };
}

describe('consistency parameterisation', () => {
  it('satisfies the boundary condition f(x, tMin) = x exactly, whatever the network', () => {
    const { net, vars } = mlp(2, 16, 1);
    const wild: Network = (x) => tf.mul(tf.onesLike(x), 1e6);
    for (const cp of [consistencyParam({ path: edm() }), consistencyParam({ path: edm(), sigmaMin: 0.01, sigmaData: 0.7 })]) {
      const x = tf.tidy(() => tf.mul(new Rng(2).normal([32, 2]), 3));
      for (const n of [net, wild]) {
        const y = consistencyDenoiser(n, cp)(x, cp.tMin);
        expect(Array.from(y.dataSync())).toEqual(Array.from(x.dataSync()));
        const y2 = consistencyForward(n, cp, x, new Array(32).fill(cp.tMin));
        expect(Array.from(y2.dataSync())).toEqual(Array.from(x.dataSync()));
        tf.dispose([y, y2]);
      }
      // away from the boundary the network matters
      const far = consistencyDenoiser(wild, cp)(x, 1);
      expect(Math.abs(far.dataSync()[0] - x.dataSync()[0])).toBeGreaterThan(1);
      tf.dispose([x, far]);
    }
    tf.dispose(vars);
  });

  it("in the 'denoiser' form mixes the input with the network's x0 estimate and keeps the boundary exact", () => {
    const { net, vars } = mlp(2, 16, 3);
    const path = vpCosine();
    for (const prediction of ['eps', 'x0', 'v'] as const) {
      const param = { path, prediction };
      const cp = consistencyParam({ path, sigmaData: 0.5, inner: param });
      const x = tf.tidy(() => new Rng(4).normal([8, 2]));
      // Boundary: f(x, tMin) = x / alpha(tMin), whatever the network.
      const yb = consistencyDenoiser(net, cp)(x, cp.tMin);
      const expectB = tf.div(x, path.alpha(cp.tMin));
      expect(tf.max(tf.abs(tf.sub(yb, expectB))).dataSync()[0]).toBeLessThan(1e-6);
      // Elsewhere: c_skip x / alpha + (1 - c_skip) D(x, t), D the network's x0 estimate.
      for (const t of [0.05, 0.4, 0.9]) {
        const sc = consistencyScalings(cp, t);
        const y = consistencyDenoiser(net, cp)(x, t);
        const d = wrapNetwork(net, param)(x, t);
        const want = tf.add(tf.mul(tf.div(x, sc.alpha), sc.cSkip), tf.mul(d, 1 - sc.cSkip));
        expect(tf.max(tf.abs(tf.sub(y, want))).dataSync()[0]).toBeLessThan(1e-5);
        tf.dispose([y, d, want]);
      }
      tf.dispose([x, yb, expectB]);
    }
    expect(() => consistencyParam({ path, inner: { path: vpCosine(), prediction: 'eps' } })).toThrow(/inner.path: must be the consistency path itself/);
    expect(() => consistencyParam({ path, inner: { path, prediction: 'bogus' as 'eps' } })).toThrow(/param.prediction/);
    tf.dispose(vars);
  });

  it('has the scalings of Song et al. (2023)', () => {
    const cp = consistencyParam({ path: edm({ sigmaData: 0.5 }) });
    expect(cp.sigmaMin).toBe(0.002);
    expect(cp.tMin).toBe(0.002);
    for (const s of [0.01, 0.5, 2, 80]) {
      const sc = consistencyScalings(cp, s);
      expect(sc.cSkip).toBeCloseTo(0.25 / ((s - 0.002) ** 2 + 0.25), 12);
      expect(sc.cOut).toBeCloseTo((0.5 * (s - 0.002)) / Math.sqrt(0.25 + s * s), 12);
      expect(sc.cIn).toBeCloseTo(1 / Math.sqrt(s * s + 0.25), 12);
    }
    expect(consistencyScalings(cp, 0.002)).toMatchObject({ cSkip: 1, cOut: 0 });
    // VP paths work in scaled coordinates: sigma/alpha at tMin is the boundary
    const vp = consistencyParam({ path: vpCosine() });
    expect(vp.sigmaMin).toBeCloseTo(vpCosine().sigma(vp.tMin) / vpCosine().alpha(vp.tMin), 12);
  });

  it('builds the Karras discretisation t_1 = tMin < ... < t_N = tMax', () => {
    const cp = consistencyParam({ path: edm() });
    const g = consistencyGrid(cp, 18);
    expect(g.length).toBe(18);
    expect(g[0]).toBe(0.002);
    expect(g[17]).toBe(80);
    const r = (s: number): number => s ** (1 / 7);
    for (let i = 1; i < 17; i++) expect(r(g[i])).toBeCloseTo(r(0.002) + (i / 17) * (r(80) - r(0.002)), 10);
  });
});

// ---------------------------------------------------------------------------------------------
// One-point data x*: the exact consistency function is f(x, sig) = x* + (sigMin / sig)(x - x*),
// because the PF-ODE dx/dsig = (x - x*)/sig moves x - x* linearly in sig (so Euler and Heun
// steps are exact too). Both losses must vanish for it.

const X_STAR = [0.6, -0.4];

function perfectConsistencyNet(cp: ConsistencyParam): Network {
  return (xIn, feat) => {
    const f = feat.arraySync() as number[];
    const rows = (xIn.arraySync() as number[][]).map((row, i) => {
      const sig = Math.exp(4 * f[i]);
      const sc = consistencyScalings(cp, sig);
      return row.map((v, k) => {
        const x = v / sc.cIn;
        const target = X_STAR[k] + (cp.sigmaMin / sig) * (x - X_STAR[k]);
        return sc.cOut === 0 ? 0 : (target - sc.cSkip * x) / sc.cOut;
      });
    });
    return tf.tensor2d(rows);
  };
}

describe('consistency losses', () => {
  const cp = consistencyParam({ path: edm() });
  const grid = consistencyGrid(cp, 10);
  const onePoint = (b: number): tf.Tensor => tf.tensor2d(Array.from({ length: b }, () => X_STAR));
  const pointTeacher = (x: tf.Tensor): tf.Tensor => tf.tidy(() => tf.add(tf.zerosLike(x), tf.tensor1d(X_STAR)));
  const zero: Network = (x) => tf.zerosLike(x);

  function value(f: () => tf.Scalar): number {
    const l = f();
    const v = l.dataSync()[0];
    l.dispose();
    return v;
  }

  it('vanish for the exact consistency function of one-point data (CT, CD-Euler, CD-Heun, both metrics)', () => {
    const x0 = onePoint(128);
    const perfect = perfectConsistencyNet(cp);
    const losses = {
      'CT l2': consistencyTrainingLoss({ cparam: cp, grid }),
      'CT pseudo-huber': consistencyTrainingLoss({ cparam: cp, grid, metric: 'pseudo-huber' }),
      'CD euler l2': consistencyDistillationLoss({ cparam: cp, grid, teacher: pointTeacher, solver: 'euler' }),
      'CD heun pseudo-huber': consistencyDistillationLoss({ cparam: cp, grid, teacher: pointTeacher, solver: 'heun', metric: 'pseudo-huber' }),
    };
    for (const [name, loss] of Object.entries(losses)) {
      const v = value(() => loss(perfect, perfect, x0, new Rng(1)));
      const ref = value(() => loss(zero, zero, x0, new Rng(1)));
      console.log(`${name}: exact consistency function ${v.toExponential(2)}, zero network ${ref.toExponential(2)}`);
      expect(ref).toBeGreaterThan(1e-3);
      expect(v / ref).toBeLessThan(1e-8);
    }
    x0.dispose();
  });

  it('a denoiser teacher (grouped per distinct time) and a { net, param } teacher (batched) give the same loss', () => {
    const path = cp.path;
    // an eps-predicting teacher network with a time dependence, so grouping mistakes would show
    const tnet: Network = (x, f) => tf.tidy(() => tf.mul(tf.tanh(x), tf.reshape(tf.add(tf.mul(f, 0.3), 1), [-1, 1])));
    const param = { path, prediction: 'eps' as const };
    const student: Network = (x, f) => tf.tidy(() => tf.add(tf.mul(x, 0.2), tf.reshape(f, [-1, 1])));
    const x0 = tf.tidy(() => new Rng(8).normal([64, 2]));
    for (const solver of ['euler', 'heun'] as const) {
      const grouped = consistencyDistillationLoss({ cparam: cp, grid, solver, teacher: (x, t) => wrapNetwork(tnet, param)(x, t) });
      const batched = consistencyDistillationLoss({ cparam: cp, grid, solver, teacher: { net: tnet, param } });
      const a = value(() => grouped(student, student, x0, new Rng(2)));
      const b = value(() => batched(student, student, x0, new Rng(2)));
      expect(a).toBeGreaterThan(1e-3);
      expect(b / a).toBeCloseTo(1, 5);
    }
    x0.dispose();
  });

  it('CT with a single interval equals the hand computation (target at tMin is x_n itself)', () => {
    const g2 = [0.002, 1.5];
    const net: Network = (x) => tf.mul(x, 0.7);
    const x0 = tf.tensor2d([[0.3, -0.6], [1.2, 0.4], [-0.5, 0.1]]);
    const got = value(() => consistencyTrainingLoss({ cparam: cp, grid: g2 })(net, net, x0, new Rng(3)));
    // draws: one uniform per example for the index (only one interval), then z
    const r = new Rng(3);
    for (let i = 0; i < 3; i++) r.uniform();
    const z = tf.tidy(() => r.normal([3, 2])).arraySync() as number[][];
    const xs = x0.arraySync() as number[][];
    const sc = consistencyScalings(cp, 1.5);
    let acc = 0;
    for (let i = 0; i < 3; i++) {
      let d2 = 0;
      for (let k = 0; k < 2; k++) {
        const xHi = xs[i][k] + 1.5 * z[i][k];
        const online = sc.cSkip * xHi + sc.cOut * 0.7 * sc.cIn * xHi;
        const target = xs[i][k] + 0.002 * z[i][k];
        d2 += (online - target) ** 2;
      }
      acc += d2 / 2;
    }
    expect(got / (acc / 3)).toBeCloseTo(1, 5);
    x0.dispose();
  });

  it('stops the gradient through the target (targetNet = net gives the same gradient as a frozen copy)', () => {
    const { net, vars } = mlp(2, 8, 4);
    const copy = emaCopy(2, 8, vars);
    const x0 = tf.tidy(() => new Rng(5).normal([16, 2]));
    for (const loss of [
      consistencyTrainingLoss({ cparam: cp, grid }),
      consistencyDistillationLoss({ cparam: cp, grid, teacher: pointTeacher }),
    ]) {
      const before = tf.memory().numTensors;
      const a = tf.variableGrads(() => loss(net, net, x0, new Rng(6)), vars);
      const b = tf.variableGrads(() => loss(net, copy.net, x0, new Rng(6)), vars);
      expect(a.value.dataSync()[0]).toBeCloseTo(b.value.dataSync()[0], 6);
      let maxAbs = 0;
      for (const v of vars) {
        const ga = a.grads[v.name].dataSync();
        const gb = b.grads[v.name].dataSync();
        for (let i = 0; i < ga.length; i++) {
          expect(Math.abs(ga[i] - gb[i])).toBeLessThan(1e-5 * (1 + Math.abs(gb[i])));
          maxAbs = Math.max(maxAbs, Math.abs(ga[i]));
        }
      }
      expect(maxAbs).toBeGreaterThan(1e-6);
      tf.dispose([a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads)]);
      expect(tf.memory().numTensors).toBe(before);
    }
    tf.dispose([...vars, ...copy.vars, x0]);
  });

  it('rejects bad arguments naming them', () => {
    const x0 = onePoint(4);
    expect(() => consistencyTrainingLoss({ cparam: cp, grid: [0.001, 1] })).toThrow(/grid: smallest time 0.001 is below the consistency boundary/);
    expect(() => consistencyTrainingLoss({ cparam: cp, grid: [1] })).toThrow(/grid: expected at least 2 positive times/);
    expect(() => consistencyTrainingLoss({ cparam: cp, grid, metric: 'lpips' as 'l2' })).toThrow(/metric: unknown value 'lpips'/);
    expect(() => consistencyDistillationLoss({ cparam: cp, grid, teacher: pointTeacher, solver: 'rk4' as 'heun' })).toThrow(/solver: unknown value 'rk4'/);
    expect(() => consistencyDistillationLoss({ cparam: cp, grid, teacher: undefined as unknown as typeof pointTeacher })).toThrow(/teacher: expected/);
    expect(() => consistencyParam({ path: edm(), sigmaMin: -1 })).toThrow(/sigmaMin: expected >= /);
    const loss = consistencyTrainingLoss({ cparam: cp, grid });
    expect(() => loss(zero, undefined as unknown as Network, x0, new Rng(1))).toThrow(/targetNet: expected a network/);
    const nan = tf.tensor2d([[NaN, 1]]);
    expect(() => loss(zero, zero, nan, new Rng(1))).toThrow(/x0Batch: contains a non-finite value/);
    // a sampler grid (descending, ending at 0) is accepted as a discretisation
    expect(() => consistencyTrainingLoss({ cparam: cp, grid: karrasGrid(edm(), 10) })).not.toThrow();
    tf.dispose([x0, nan]);
  });
});

describe('consistency distillation from the analytic Gaussian teacher', () => {
  it("one-step samples of the distilled model match the teacher's 40-step Heun samples", () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const path = edm({ sigmaData: 0.5 });
    const cp = consistencyParam({ path });
    const { spec, teacher, Lt, mu, draw } = gaussianToy(path);

    // N = 30: the consistency model learns the teacher's Heun map on its own grid, and at
    // N = 18 that map alone overestimates the covariance by ~10% (measured: [[0.329, 0.129],
    // [0.129, 0.222]]); at N = 30 it is within 0.005 of Heun-40. The 1/dsigma ('ict') weighting
    // propagates the boundary condition up the grid within a few hundred steps.
    const WIDTH = 64;
    const STEPS = 400;
    const grid = consistencyGrid(cp, 30);
    const { net, vars } = mlp(2, WIDTH, 7);
    const ema = emaCopy(2, WIDTH, vars);
    const loss = consistencyDistillationLoss({ cparam: cp, teacher, solver: 'heun', grid, metric: 'l2', weighting: 'ict' });
    const evalRng = new Rng(99);
    const noise = tf.tidy(() => tf.mul(evalRng.normal([4000, 2]), path.tMax));
    const ref = heunEdm(teacher, noise, karrasGrid(path, 40), path);
    const rmseVsTeacher = (n: Network): number =>
      tf.tidy(() => {
        const x = consistencyOneStep(consistencyDenoiser(n, cp), noise, [path.tMax, 0], path);
        return Math.sqrt(tf.mean(tf.square(tf.sub(x, ref))).dataSync()[0]);
      });
    const rmseBefore = rmseVsTeacher(ema.net);

    const opt = tf.train.adam(5e-3);
    const rng = new Rng(18);
    for (let step = 0; step < STEPS; step++) {
      const x0 = draw(rng, 256);
      const l = opt.minimize(() => loss(net, ema.net, x0, rng), true, vars) as tf.Scalar;
      if (step % 100 === 99) console.log(`step ${step + 1}: loss ${l.dataSync()[0].toExponential(3)}`);
      l.dispose();
      x0.dispose();
      ema.update(0.9);
    }
    const trainMs = performance.now() - t0;

    const cm = consistencyOneStep(consistencyDenoiser(ema.net, cp), noise, [path.tMax, 0], path);
    const a = meanCov(cm);
    const b = meanCov(ref);
    const rmse = rmseVsTeacher(ema.net);
    const cpu = process.cpuUsage(c0);
    console.log(`teacher heun-40:    mean ${fmt(b.mean)} cov ${fmt(b.cov)}  (data: ${fmt(spec.mean)} ${fmt(spec.cov)})`);
    console.log(`consistency 1-step: mean ${fmt(a.mean)} cov ${fmt(a.cov)}`);
    console.log(`per-sample rmse vs teacher (same noise): ${rmseBefore.toFixed(3)} before training, ${rmse.toFixed(3)} after`);
    console.log(`training ${STEPS} steps: ${(trainMs / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s cpu`);
    tf.dispose([noise, cm, ref, Lt, mu, ...vars, ...ema.vars]);
    opt.dispose();

    // Measured over 4 seeds (model init / data order): |mean diff| <= 0.028, |cov diff| <= 0.014,
    // rmse 0.016-0.033; the untrained model is ~0.6 rmse away (0.63 measured).
    expect(rmseBefore).toBeGreaterThan(0.3);
    for (let k = 0; k < 2; k++) expect(Math.abs(a.mean[k] - b.mean[k])).toBeLessThan(0.05);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) expect(Math.abs(a.cov[i][j] - b.cov[i][j])).toBeLessThan(0.03);
    expect(rmse).toBeLessThan(0.06);
  });
});

describe("consistency distillation in the 'denoiser' form on a VP path", () => {
  it('the one-step student approaches the teacher from a random start', () => {
    const path = vpCosine();
    const { before, after, a, b } = distilDenoiserForm(path, consistencyParam({ path, sigmaData: 0.5, inner: { path, prediction: 'x0' } }), 'VP', (teacher, noise) =>
      heunEdm(teacher, noise, karrasGrid(path, 40), path),
    );
    // Measured: 0.633 -> 0.054; mean within 0.03, covariance entries within 0.04.
    expect(before).toBeGreaterThan(0.3);
    expect(after).toBeLessThan(0.12);
    for (let k = 0; k < 2; k++) expect(Math.abs(a.mean[k] - b.mean[k])).toBeLessThan(0.06);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) expect(Math.abs(a.cov[i][j] - b.cov[i][j])).toBeLessThan(0.07);
  }, 60_000);
});

describe('consistency models on a path that ends in pure noise (rectified flow)', () => {
  it('work in unscaled coordinates: level sigma(t) = t, ascending grid up to tMax, exact boundary, finite at tMax', () => {
    const path = rectifiedFlow();
    const cp = consistencyParam({ path, sigmaData: 0.02, inner: { path, prediction: 'velocity' } });
    expect(cp.coordinates).toBe('unscaled');
    expect(cp.sigmaMin).toBeCloseTo(path.tMin, 12);
    const grid = consistencyGrid(cp, 20);
    expect(grid[0]).toBe(cp.tMin);
    expect(grid[19]).toBe(path.tMax);
    for (let i = 1; i < 20; i++) expect(grid[i]).toBeGreaterThan(grid[i - 1]);
    // Karras spacing in the level t itself
    const mid = Math.pow(Math.pow(path.tMin, 1 / 7) + (10 / 19) * (1 - Math.pow(path.tMin, 1 / 7)), 7);
    expect(grid[10]).toBeCloseTo(mid, 9);
    const s = consistencyScalings(cp, 1);
    expect(s.alpha).toBe(1);
    expect(s.sigma).toBeCloseTo(1, 12);
    expect(s.cSkip).toBeCloseTo(0.0004 / (0.9999 ** 2 + 0.0004), 9);
    const { net, vars } = mlp(2, 16, 5);
    const x = tf.tidy(() => new Rng(3).normal([16, 2]));
    const atBoundary = consistencyDenoiser(net, cp)(x, cp.tMin);
    expect(Array.from(atBoundary.dataSync())).toEqual(Array.from(x.dataSync()));
    const atNoise = consistencyDenoiser(net, cp)(x, path.tMax);
    expect(Array.from(atNoise.dataSync()).every(Number.isFinite)).toBe(true);
    // f at tMax is (up to c_skip ~ 4e-4) the velocity network's x0 estimate x - v
    const expected = tf.tidy(() => {
      const x0 = toX0Eps(predictBatch(net, cp.inner!, x, new Array(16).fill(path.tMax)), 'velocity', x, coefsForBatch(path, new Array(16).fill(path.tMax), 2)).x0;
      return tf.add(tf.mul(x, s.cSkip), tf.mul(x0, 1 - s.cSkip));
    });
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(atNoise, expected))).dataSync()[0]);
    expect(diff).toBeLessThan(1e-5);
    tf.dispose([x, atBoundary, atNoise, expected, ...vars]);
  });

  it('distillation from the analytic flow teacher: the one-step student approaches the teacher from a random start', () => {
    const path = rectifiedFlow();
    const fine = Array.from({ length: 41 }, (_, i) => 1 - i / 40);
    const { before, after, a, b } = distilDenoiserForm(path, consistencyParam({ path, sigmaData: 0.02, inner: { path, prediction: 'velocity' } }), 'rectified flow', (teacher, noise) =>
      flowRk4(teacher, noise, fine, path),
    );
    expect(before).toBeGreaterThan(0.3);
    expect(after).toBeLessThan(0.12);
    for (let k = 0; k < 2; k++) expect(Math.abs(a.mean[k] - b.mean[k])).toBeLessThan(0.06);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) expect(Math.abs(a.cov[i][j] - b.cov[i][j])).toBeLessThan(0.07);
  }, 60_000);
});
