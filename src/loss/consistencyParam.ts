/**
 * Consistency-model parameterisation (Song et al. 2023), in the scaled coordinates of EDM
 * (xs = x / alpha, sig = sigma / alpha; on the EDM path alpha = 1 and sig = t):
 *   f(x, t) = c_skip(sig) xs + c_out(sig) F(c_in(sig) xs, timeFeature(t))
 *   c_skip = sd^2 / ((sig - sig_min)^2 + sd^2)
 *   c_out  = sd (sig - sig_min) / sqrt(sd^2 + sig^2)
 *   c_in   = 1 / sqrt(sig^2 + sd^2)
 * At the boundary t <= tMin: c_skip = 1 and c_out = 0 exactly, so f(x, tMin) = x / alpha(tMin)
 * (= x on VE/EDM paths) whatever the network outputs.
 *
 * With `inner` (a Parameterization on the same path) the network is instead an ordinary
 * denoiser network of that parameterisation, e.g. the teacher's architecture and weights, and
 *   f(x, t) = c_skip(sig) xs + (1 - c_skip(sig)) D(x, t),
 * where D is its x0 estimate (any prediction converted to x0). The boundary condition is the
 * same, and a student initialised from its teacher starts as the teacher's one-step estimate
 * instead of a network fed inputs and read with scalings it was never trained on.
 * The model is a Denoiser like any other, so the consistency samplers of src/sample apply.
 *
 * Paths that end in pure noise (alpha(tMax) = 0: rectified flow) have no scaled coordinates at
 * tMax. There the parameterisation works in the path's own coordinates: xs = x and the noise
 * level is sig = sigma(t) (= t on rectified flow), with the same c_skip / c_out / c_in formulas.
 * The boundary condition is unchanged: f(x, tMin) = x.
 */
import * as tf from '@tensorflow/tfjs-core';
import { predictBatch, timeFeature, type Denoiser, type Network, type Parameterization } from '../denoiser/denoiser.js';
import { invertDecreasing, type NoisePath } from '../path/types.js';
import { coefsForBatch } from '../predict/coefs.js';
import { toX0Eps } from '../predict/convert.js';
import { checkParam, outputSpace } from './denoising.js';
import { checkNumber, fail } from '../util/validate.js';
import { checkNetwork, checkOutputShape, perSample } from './internal.js';

export interface ConsistencyParam {
  readonly path: NoisePath;
  readonly sigmaData: number;
  /** Scaled noise level of the boundary condition. */
  readonly sigmaMin: number;
  /** Time of the boundary (scaled sigma = sigmaMin). */
  readonly tMin: number;
  /** When set, the network is a plain denoiser network of this parameterisation (see above). */
  readonly inner?: Parameterization;
  /**
   * 'scaled': xs = x / alpha, sig = sigma / alpha (paths with alpha(tMax) > 0);
   * 'unscaled': xs = x, sig = sigma (paths ending in pure noise, e.g. rectified flow).
   */
  readonly coordinates: 'scaled' | 'unscaled';
}

export interface ConsistencyParamOptions {
  readonly path: NoisePath;
  /** Default: the path's sigmaData. */
  readonly sigmaData?: number;
  /** Default: the scaled sigma at path.tMin (0.002 on the default EDM path). */
  readonly sigmaMin?: number;
  /** The network is a denoiser network of this parameterisation (its path must be `path`). */
  readonly inner?: Parameterization;
}

const scaledSigma = (path: NoisePath, t: number): number => path.sigma(t) / path.alpha(t);
const unscaled = (path: NoisePath): boolean => !(path.alpha(path.tMax) > 0);

/** The noise level sig(t) of the consistency scalings: sigma / alpha, or sigma on paths ending in pure noise. */
export function consistencyLevel(cp: Pick<ConsistencyParam, 'path' | 'coordinates'>, t: number): number {
  return cp.coordinates === 'unscaled' ? cp.path.sigma(t) : scaledSigma(cp.path, t);
}

/** The time at which the noise level is `level` (inverse of consistencyLevel on (0, tMax]). */
export function consistencyTimeOfLevel(cp: Pick<ConsistencyParam, 'path' | 'coordinates'>, level: number): number {
  const path = cp.path;
  if (cp.coordinates === 'unscaled') return invertDecreasing((t) => -path.sigma(t), -level, 0, path.tMax);
  return path.kind === 'edm' ? level : path.tFromLogSnr(-2 * Math.log(level));
}

export function consistencyParam(opts: ConsistencyParamOptions): ConsistencyParam {
  if (!opts || typeof opts !== 'object') fail('consistencyParam: expected an options object { path, sigmaData?, sigmaMin? }');
  const path = opts.path;
  if (!path || typeof path.alpha !== 'function') fail('path: expected a NoisePath');
  const sigmaData = checkNumber('sigmaData', opts.sigmaData ?? path.sigmaData, { min: 1e-12 });
  const coordinates = unscaled(path) ? 'unscaled' : 'scaled';
  const lv = { path, coordinates } as const;
  let tMin = path.tMin;
  let sigmaMin = consistencyLevel(lv, tMin);
  if (opts.sigmaMin !== undefined) {
    sigmaMin = checkNumber('sigmaMin', opts.sigmaMin, { min: Number.MIN_VALUE, max: consistencyLevel(lv, path.tMax) });
    tMin = consistencyTimeOfLevel(lv, sigmaMin);
  }
  if (!(sigmaMin > 0)) fail(`sigmaMin: expected > 0, received ${sigmaMin}`);
  if (opts.inner !== undefined) {
    const inner = checkParam(opts.inner);
    if (inner.path !== path) fail(`inner.path: must be the consistency path itself (received kind '${inner.path.kind}', path kind '${path.kind}')`);
    return { path, sigmaData, sigmaMin, tMin, inner, coordinates };
  }
  return { path, sigmaData, sigmaMin, tMin, coordinates };
}

export interface ConsistencyScalings {
  readonly cSkip: number;
  readonly cOut: number;
  readonly cIn: number;
  /** Divisor of x in f: alpha(t) in scaled coordinates, 1 in unscaled ones. */
  readonly alpha: number;
  /** Noise level of the scalings (see consistencyLevel). */
  readonly sigma: number;
}

/** The scalings at time t; t <= tMin is the boundary (c_skip = 1, c_out = 0). */
export function consistencyScalings(cp: ConsistencyParam, t: number): ConsistencyScalings {
  const tt = Math.max(t, cp.tMin);
  const alpha = cp.coordinates === 'unscaled' ? 1 : cp.path.alpha(tt);
  const sig = t <= cp.tMin ? cp.sigmaMin : consistencyLevel(cp, tt);
  const sd = cp.sigmaData;
  const cIn = 1 / Math.sqrt(sig * sig + sd * sd);
  if (t <= cp.tMin) return { cSkip: 1, cOut: 0, cIn, alpha, sigma: sig };
  const dsig = Math.max(0, sig - cp.sigmaMin);
  return { cSkip: (sd * sd) / (dsig * dsig + sd * sd), cOut: (sd * dsig) * cIn, cIn, alpha, sigma: sig };
}

/** f(x_i, t_i) for a batch with per-sample times (training and sampling share this). */
export function consistencyForward(net: Network, cp: ConsistencyParam, x: tf.Tensor, t: ArrayLike<number>, cond?: tf.Tensor): tf.Tensor {
  checkNetwork('net', net);
  if (t.length !== x.shape[0]) fail(`t: expected ${x.shape[0]} times (one per row of x), received ${t.length}`);
  return tf.tidy(() => {
    const sc = Array.from(t, (v) => consistencyScalings(cp, v));
    const xs = tf.div(x, perSample(sc.map((s) => s.alpha), x.rank));
    if (cp.inner) {
      const tt = Array.from(t, (v) => Math.max(v, cp.tMin));
      const out = predictBatch(net, cp.inner, x, tt, cond);
      checkOutputShape('net', out, x);
      const kind = outputSpace(cp.inner);
      const x0 = kind === 'x0' ? out : toX0Eps(out, kind, x, coefsForBatch(cp.path, tt, x.rank)).x0;
      return tf.add(tf.mul(xs, perSample(sc.map((s) => s.cSkip), x.rank)), tf.mul(x0, perSample(sc.map((s) => 1 - s.cSkip), x.rank)));
    }
    const feat = tf.tensor1d(Array.from(t, (v) => timeFeature(cp.path, Math.max(v, cp.tMin))));
    const f = net(tf.mul(xs, perSample(sc.map((s) => s.cIn), x.rank)), feat, cond);
    checkOutputShape('net', f, x);
    return tf.add(tf.mul(xs, perSample(sc.map((s) => s.cSkip), x.rank)), tf.mul(f, perSample(sc.map((s) => s.cOut), x.rank)));
  });
}

/** The sampler-facing denoiser (x, t) -> x0 of a consistency network (cond of batch 1 is tiled). */
export function consistencyDenoiser(net: Network, cp: ConsistencyParam, cond?: tf.Tensor): Denoiser {
  checkNetwork('net', net);
  return (x, t) =>
    tf.tidy(() => {
      const batch = x.shape[0];
      let c = cond;
      if (cond && cond.shape[0] !== batch && cond.shape[0] === 1) c = tf.tile(cond, [batch, ...Array(cond.rank - 1).fill(1)]);
      return consistencyForward(net, cp, x, new Float64Array(batch).fill(t), c);
    });
}

/**
 * Song et al.'s discretisation: N times, ascending, with scaled noise levels
 * sig_i = (sig_min^(1/rho) + (i-1)/(N-1) (sig_max^(1/rho) - sig_min^(1/rho)))^rho, t_1 = tMin, t_N = tMax.
 */
export function consistencyGrid(cp: ConsistencyParam, n: number, rho = 7): number[] {
  checkNumber('n', n, { integer: true, min: 2 });
  checkNumber('rho', rho, { min: 1e-3 });
  const path = cp.path;
  const lo = Math.pow(cp.sigmaMin, 1 / rho);
  const hi = Math.pow(consistencyLevel(cp, path.tMax), 1 / rho);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i === 0) out.push(cp.tMin);
    else if (i === n - 1) out.push(path.tMax);
    else {
      const sig = Math.pow(lo + (i / (n - 1)) * (hi - lo), rho);
      out.push(consistencyTimeOfLevel(cp, sig));
    }
  }
  return out;
}
