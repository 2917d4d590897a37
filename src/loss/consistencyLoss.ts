/**
 * Consistency distillation (CD) and consistency training (CT), Song et al. 2023, with the
 * improvements of Song & Dhariwal 2023 available as options (pseudo-Huber metric, 1/dsigma
 * weighting, log-normal index sampling).
 *
 * Both draw per example an index n and the adjacent grid times t_n < t_{n+1}, z ~ N(0, I),
 *   x_{n+1} = a(t_{n+1}) x0 + s(t_{n+1}) z,
 * and regress the online model at (x_{n+1}, t_{n+1}) onto the target model at (x_n, t_n):
 *   loss = mean_i lambda_i d( f_theta(x_{n+1}, t_{n+1}),  stopgrad f_target(x_n, t_n) )
 *   CD: x_n = one ODE step of the teacher from t_{n+1} to t_n (Euler or Heun, EDM form:
 *       dxs/dsig = (xs - D(x, t)) / sig in scaled coordinates; on paths ending in pure noise,
 *       such as rectified flow, the same ODE in t: dx/dt = alpha' D + sigma' eps_hat);
 *   CT: x_n = a(t_n) x0 + s(t_n) z with the same z (the one-sample estimate of the ODE).
 * Metrics per example over its D entries: 'l2' = ||diff||^2 / D, 'pseudo-huber' =
 * sqrt(||diff||^2 + c^2) - c with c = 0.00054 sqrt(D). lambda: 'uniform' = 1,
 * 'ict' = 1 / (sig_{n+1} - sig_n). `targetNet` may be the online network itself (iCT) or
 * an EMA copy; the teacher step and the target run off the gradient tape either way.
 */
import * as tf from '@tensorflow/tfjs-core';
import { predictBatch, type Network, type Parameterization } from '../denoiser/denoiser.js';
import { coefsForBatch } from '../predict/coefs.js';
import { toX0Eps } from '../predict/convert.js';
import type { Rng } from '../rng/rng.js';
import { checkNumber, checkOneOf, fail } from '../util/validate.js';
import { consistencyForward, consistencyLevel, type ConsistencyParam } from './consistencyParam.js';
import { checkParam, outputSpace } from './denoising.js';
import { checkBatch, checkNetwork, checkOutputShape, checkRng, noGrad, perSample } from './internal.js';

export type ConsistencyLoss = (net: Network, targetNet: Network, x0Batch: tf.Tensor, rng: Rng, cond?: tf.Tensor) => tf.Scalar;

/** A teacher x0-estimate at a scalar time; conditional teachers receive the examples' cond rows. */
export type TeacherDenoiser = (x: tf.Tensor, t: number, cond?: tf.Tensor) => tf.Tensor;

/**
 * The teacher: any denoiser (called once per distinct time in the batch), or a network with
 * its parameterisation (called once per step with per-example times).
 */
export type Teacher = TeacherDenoiser | { readonly net: Network; readonly param: Parameterization };

export type ConsistencyMetric = 'l2' | 'pseudo-huber';
export type ConsistencyWeighting = 'uniform' | 'ict';
export type IndexSampling = 'uniform' | 'lognormal';

export interface ConsistencyLossOptions {
  readonly cparam: ConsistencyParam;
  /**
   * Discretisation t_1 < ... < t_N (any order; zeros dropped, so a sampler grid ending at 0
   * works). Every time must lie in [cparam.tMin, tMax]. See `consistencyGrid`.
   */
  readonly grid: readonly number[];
  /** Default 'l2'. */
  readonly metric?: ConsistencyMetric;
  /** Pseudo-Huber c (default 0.00054 sqrt(D)). */
  readonly huberC?: number;
  /** Default 'uniform'. */
  readonly weighting?: ConsistencyWeighting;
  /** How the index n is drawn: 'uniform' (default) or iCT's 'lognormal' on sigma (pMean -1.1, pStd 2). */
  readonly indexSampling?: IndexSampling;
  readonly pMean?: number;
  readonly pStd?: number;
  /** Check the batch for NaN/Inf on every call (default true). */
  readonly checkFinite?: boolean;
}

export interface ConsistencyDistillationOptions extends ConsistencyLossOptions {
  readonly teacher: Teacher;
  /** One teacher ODE step from t_{n+1} to t_n (default 'heun'). */
  readonly solver?: 'heun' | 'euler';
}

/** Normalises a grid to ascending positive times within the consistency model's range. */
export function prepareConsistencyGrid(grid: readonly number[], cp: ConsistencyParam): number[] {
  if (!Array.isArray(grid)) fail(`grid: expected an array of times, received ${typeof grid}`);
  const g = grid.filter((t) => t !== 0);
  for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) fail(`grid: entry ${i} is not finite (${g[i]})`);
  g.sort((a, b) => a - b);
  if (g.length < 2) fail(`grid: expected at least 2 positive times, received ${g.length}`);
  for (let i = 1; i < g.length; i++) if (!(g[i] > g[i - 1])) fail(`grid: times must be distinct, ${g[i]} appears twice`);
  const tol = 1e-9 * Math.max(1, cp.tMin);
  if (g[0] < cp.tMin - tol) fail(`grid: smallest time ${g[0]} is below the consistency boundary tMin = ${cp.tMin}`);
  if (g[g.length - 1] > cp.path.tMax * (1 + 1e-9)) fail(`grid: largest time ${g[g.length - 1]} is beyond the path's tMax ${cp.path.tMax}`);
  return g;
}

// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): enough for a sampling distribution.
function erf(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const k = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * k - 1.453152027) * k + 1.421413741) * k - 0.284496736) * k + 0.254829592) * k * Math.exp(-a * a);
  return s * y;
}

interface Prepared {
  grid: number[];
  sig: number[];
  metric: ConsistencyMetric;
  huberC?: number;
  weighting: ConsistencyWeighting;
  /** Cumulative distribution over the N - 1 intervals. */
  cdf: Float64Array;
  finite: boolean;
}

function prepare(opts: ConsistencyLossOptions, who: string): Prepared {
  if (!opts || typeof opts !== 'object') fail(`${who}: expected an options object`);
  const cp = opts.cparam;
  if (!cp || !cp.path || typeof cp.sigmaMin !== 'number') fail('cparam: expected a ConsistencyParam (see consistencyParam)');
  const grid = prepareConsistencyGrid(opts.grid, cp);
  const sig = grid.map((t) => consistencyLevel(cp, t));
  const metric = checkOneOf('metric', opts.metric ?? 'l2', ['l2', 'pseudo-huber']);
  const huberC = opts.huberC === undefined ? undefined : checkNumber('huberC', opts.huberC, { min: 0 });
  const weighting = checkOneOf('weighting', opts.weighting ?? 'uniform', ['uniform', 'ict']);
  const sampling = checkOneOf('indexSampling', opts.indexSampling ?? 'uniform', ['uniform', 'lognormal']);
  const k = grid.length - 1;
  const p = new Float64Array(k);
  if (sampling === 'uniform') p.fill(1);
  else {
    const m = checkNumber('pMean', opts.pMean ?? -1.1);
    const s = checkNumber('pStd', opts.pStd ?? 2, { min: 1e-12 });
    const cdfN = (v: number): number => erf((Math.log(v) - m) / (Math.SQRT2 * s));
    for (let i = 0; i < k; i++) p[i] = Math.max(0, cdfN(sig[i + 1]) - cdfN(sig[i]));
  }
  const total = p.reduce((a, b) => a + b, 0);
  if (!(total > 0)) fail('indexSampling: the log-normal puts no mass on the grid (check pMean/pStd)');
  const cdf = new Float64Array(k);
  let acc = 0;
  for (let i = 0; i < k; i++) cdf[i] = acc += p[i] / total;
  cdf[k - 1] = 1;
  return { grid, sig, metric, huberC, weighting, cdf, finite: opts.checkFinite ?? true };
}

function drawIndices(pr: Prepared, n: number, rng: Rng): Int32Array {
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng.uniform();
    let lo = 0;
    let hi = pr.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pr.cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    idx[i] = lo;
  }
  return idx;
}

/** Per-example distance d(a, b) of shape [B]. */
function distance(a: tf.Tensor, b: tf.Tensor, pr: Prepared): tf.Tensor {
  return tf.tidy(() => {
    const dim = a.size / a.shape[0];
    const axes = Array.from({ length: a.rank - 1 }, (_, i) => i + 1);
    const ss = tf.sum(tf.square(tf.sub(a, b)), axes);
    if (pr.metric === 'l2') return tf.div(ss, dim);
    const c = pr.huberC ?? 0.00054 * Math.sqrt(dim);
    return tf.sub(tf.sqrt(tf.add(ss, c * c)), c);
  });
}

/** Evaluates a scalar-time teacher once per distinct time and reassembles the batch. */
function teacherX0(teacher: Teacher, x: tf.Tensor, t: Float64Array, cond: tf.Tensor | undefined): tf.Tensor {
  return tf.tidy(() => {
    if (typeof teacher !== 'function') {
      const out = predictBatch(teacher.net, teacher.param, x, t, cond);
      const kind = outputSpace(teacher.param);
      if (kind === 'x0') return out;
      return toX0Eps(out, kind, x, coefsForBatch(teacher.param.path, t, x.rank)).x0;
    }
    const groups = new Map<number, number[]>();
    for (let i = 0; i < t.length; i++) {
      const g = groups.get(t[i]);
      if (g) g.push(i);
      else groups.set(t[i], [i]);
    }
    if (groups.size === 1) {
      const out = teacher(x, t[0], cond);
      checkOutputShape('teacher', out, x);
      return out;
    }
    const parts: tf.Tensor[] = [];
    const order: number[] = [];
    for (const [ti, rows] of groups) {
      const idx = tf.tensor1d(rows, 'int32');
      const out = teacher(tf.gather(x, idx), ti, cond ? tf.gather(cond, idx) : undefined);
      if (!(out instanceof tf.Tensor) || out.shape[0] !== rows.length) fail(`teacher: returned a batch of ${out?.shape?.[0]} rows for ${rows.length} inputs`);
      parts.push(out);
      order.push(...rows);
    }
    const inv = new Int32Array(order.length);
    for (let k = 0; k < order.length; k++) inv[order[k]] = k;
    const res = tf.gather(tf.concat(parts, 0), tf.tensor1d(inv, 'int32'));
    checkOutputShape('teacher', res, x);
    return res;
  });
}

/** One Euler or Heun step of the probability-flow ODE from tHi to tLo, per example, in scaled coordinates. */
function teacherStep(
  teacher: Teacher,
  solver: 'heun' | 'euler',
  cp: ConsistencyParam,
  x: tf.Tensor,
  tHi: Float64Array,
  tLo: Float64Array,
  cond: tf.Tensor | undefined,
): tf.Tensor {
  const path = cp.path;
  if (cp.coordinates === 'unscaled') return teacherStepUnscaled(teacher, solver, path, x, tHi, tLo, cond);
  return tf.tidy(() => {
    const r = x.rank;
    const aHi = perSample(Array.from(tHi, (t) => path.alpha(t)), r);
    const aLo = perSample(Array.from(tLo, (t) => path.alpha(t)), r);
    const sHiArr = Array.from(tHi, (t) => path.sigma(t) / path.alpha(t));
    const sLoArr = Array.from(tLo, (t) => path.sigma(t) / path.alpha(t));
    const sHi = perSample(sHiArr, r);
    const sLo = perSample(sLoArr, r);
    const h = perSample(sHiArr.map((s, i) => sLoArr[i] - s), r);
    const xs = tf.div(x, aHi);
    const d = tf.div(tf.sub(xs, teacherX0(teacher, x, tHi, cond)), sHi);
    let xsLo = tf.add(xs, tf.mul(d, h));
    if (solver === 'heun') {
      const dLo = tf.div(tf.sub(xsLo, teacherX0(teacher, tf.mul(xsLo, aLo), tLo, cond)), sLo);
      xsLo = tf.add(xs, tf.mul(tf.add(d, dLo), tf.mul(h, 0.5)));
    }
    return tf.mul(xsLo, aLo);
  });
}

/**
 * The same step for paths that end in pure noise (no scaled coordinates at tMax), in t:
 * dx/dt = alpha'(t) D + sigma'(t) (x - alpha(t) D) / sigma(t); on rectified flow this is the
 * velocity eps_hat - D.
 */
function teacherStepUnscaled(
  teacher: Teacher,
  solver: 'heun' | 'euler',
  path: ConsistencyParam['path'],
  x: tf.Tensor,
  tHi: Float64Array,
  tLo: Float64Array,
  cond: tf.Tensor | undefined,
): tf.Tensor {
  return tf.tidy(() => {
    const r = x.rank;
    const velocity = (xt: tf.Tensor, t: Float64Array): tf.Tensor => {
      const d = teacherX0(teacher, xt, t, cond);
      const eps = tf.div(tf.sub(xt, tf.mul(d, perSample(Array.from(t, (v) => path.alpha(v)), r))), perSample(Array.from(t, (v) => path.sigma(v)), r));
      return tf.add(tf.mul(d, perSample(Array.from(t, (v) => path.dAlpha(v)), r)), tf.mul(eps, perSample(Array.from(t, (v) => path.dSigma(v)), r)));
    };
    const h = perSample(Array.from(tHi, (t, i) => tLo[i] - t), r);
    const vHi = velocity(x, tHi);
    const xLo = tf.add(x, tf.mul(vHi, h));
    if (solver === 'euler') return xLo;
    return tf.add(x, tf.mul(tf.add(vHi, velocity(xLo, tLo)), tf.mul(h, 0.5)));
  });
}

function makeLoss(
  pr: Prepared,
  cp: ConsistencyParam,
  lower: (x0: tf.Tensor, z: tf.Tensor, xHi: tf.Tensor, tHi: Float64Array, tLo: Float64Array, cond: tf.Tensor | undefined) => tf.Tensor,
): ConsistencyLoss {
  const path = cp.path;
  return (net, targetNet, x0Batch, rng, cond) => {
    checkNetwork('net', net);
    checkNetwork('targetNet', targetNet);
    checkBatch(x0Batch, cond, pr.finite);
    checkRng(rng);
    const b = x0Batch.shape[0];
    const r = x0Batch.rank;
    const idx = drawIndices(pr, b, rng);
    const tLo = Float64Array.from(idx, (k) => pr.grid[k]);
    const tHi = Float64Array.from(idx, (k) => pr.grid[k + 1]);
    const lambda = Array.from(idx, (k) => (pr.weighting === 'ict' ? 1 / (pr.sig[k + 1] - pr.sig[k]) : 1));
    return tf.tidy(() => {
      const z = rng.normal(x0Batch.shape);
      const xHi = tf.add(
        tf.mul(x0Batch, perSample(Array.from(tHi, (t) => path.alpha(t)), r)),
        tf.mul(z, perSample(Array.from(tHi, (t) => path.sigma(t)), r)),
      );
      const target = noGrad(() => consistencyForward(targetNet, cp, lower(x0Batch, z, xHi, tHi, tLo, cond), tLo, cond), x0Batch);
      const online = consistencyForward(net, cp, xHi, tHi, cond);
      return tf.mean(tf.mul(distance(online, target, pr), tf.tensor1d(lambda))) as tf.Scalar;
    });
  };
}

/** CD: the teacher's one-step ODE solution gives x_n. */
export function consistencyDistillationLoss(opts: ConsistencyDistillationOptions): ConsistencyLoss {
  const pr = prepare(opts, 'consistencyDistillationLoss');
  const teacher = opts.teacher;
  if (typeof teacher !== 'function') {
    if (!teacher || typeof teacher !== 'object' || typeof teacher.net !== 'function') {
      fail('teacher: expected a denoiser (x, t, cond?) => x0 or { net, param }');
    }
    checkParam(teacher.param);
  }
  const solver = checkOneOf('solver', opts.solver ?? 'heun', ['heun', 'euler']);
  return makeLoss(pr, opts.cparam, (_x0, _z, xHi, tHi, tLo, cond) => teacherStep(teacher, solver, opts.cparam, xHi, tHi, tLo, cond));
}

/** CT: x_n = a(t_n) x0 + s(t_n) z with the same z as x_{n+1}; no teacher. */
export function consistencyTrainingLoss(opts: ConsistencyLossOptions): ConsistencyLoss {
  const pr = prepare(opts, 'consistencyTrainingLoss');
  const path = opts.cparam.path;
  return makeLoss(pr, opts.cparam, (x0, z, _xHi, _tHi, tLo, _cond) => {
    const r = x0.rank;
    return tf.add(
      tf.mul(x0, perSample(Array.from(tLo, (t) => path.alpha(t)), r)),
      tf.mul(z, perSample(Array.from(tLo, (t) => path.sigma(t)), r)),
    );
  });
}
