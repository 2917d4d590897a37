/**
 * Training-time distributions p(t), all drawn from the seeded Rng and kept in [tMin, tMax]:
 *   'uniform':       t ~ U[tMin, tMax]
 *   'logit-normal':  t = tMin + (tMax - tMin) sigmoid(u), u ~ N(mean, std)   (Esser et al. 2024;
 *                    default N(0, 1))
 *   'edm-lognormal': ln sig ~ N(pMean, pStd) on the scaled noise level sig = sigma / alpha
 *                    (Karras et al. 2022: P_mean = -1.2, P_std = 1.2), t = t(sig) through the
 *                    path's log-SNR inverse (t = sig on the EDM path), clamped to [tMin, tMax]
 * or any function (n, rng) => times.
 */
import type { NoisePath } from '../path/types.js';
import type { Rng } from '../rng/rng.js';
import { checkFiniteArray, checkNumber, fail } from '../util/validate.js';

export type TimeSamplingKind = 'uniform' | 'logit-normal' | 'edm-lognormal';
export const TIME_SAMPLINGS: readonly TimeSamplingKind[] = ['uniform', 'logit-normal', 'edm-lognormal'];
export type TimeSampler = (n: number, rng: Rng) => ArrayLike<number>;
export type TimeSampling = TimeSamplingKind | TimeSampler;

export interface TimeSamplingOptions {
  /** logit-normal location (default 0). */
  readonly logitMean?: number;
  /** logit-normal scale (default 1). */
  readonly logitStd?: number;
  /** EDM log-normal mean of ln sigma (default -1.2). */
  readonly pMean?: number;
  /** EDM log-normal std of ln sigma (default 1.2). */
  readonly pStd?: number;
}

/** Validates a TimeSampling value (name or function); throws an error naming `name`. */
export function checkTimeSampling(name: string, v: unknown): TimeSampling {
  if (typeof v === 'function') return v as TimeSampler;
  if (typeof v !== 'string' || !TIME_SAMPLINGS.includes(v as TimeSamplingKind)) {
    fail(`${name}: unknown value '${String(v)}' (expected one of ${TIME_SAMPLINGS.join(', ')}, or a function (n, rng) => times)`);
  }
  return v as TimeSamplingKind;
}

/** n training times from the named distribution (or the given function), as float64. */
export function sampleTimes(kind: TimeSampling, path: NoisePath, n: number, rng: Rng, opts: TimeSamplingOptions = {}): Float64Array {
  checkNumber('n', n, { integer: true, min: 1 });
  const lo = path.tMin;
  const hi = path.tMax;
  const out = new Float64Array(n);
  if (typeof kind === 'function') {
    const t = kind(n, rng);
    if (!t || t.length !== n) fail(`sampleT: the custom sampler returned ${t?.length} times for a batch of ${n}`);
    checkFiniteArray('sampleT', t);
    for (let i = 0; i < n; i++) {
      if (t[i] <= 0 || t[i] > hi) fail(`sampleT: time ${t[i]} at index ${i} is outside (0, tMax = ${hi}]`);
      out[i] = t[i];
    }
    return out;
  }
  switch (checkTimeSampling('sampleT', kind)) {
    case 'uniform':
      for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rng.uniform();
      break;
    case 'logit-normal': {
      const m = checkNumber('logitMean', opts.logitMean ?? 0);
      const s = checkNumber('logitStd', opts.logitStd ?? 1, { min: 0 });
      for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) / (1 + Math.exp(-(m + s * rng.normalScalar())));
      break;
    }
    case 'edm-lognormal': {
      const m = checkNumber('pMean', opts.pMean ?? -1.2);
      const s = checkNumber('pStd', opts.pStd ?? 1.2, { min: 0 });
      for (let i = 0; i < n; i++) {
        const lnSig = m + s * rng.normalScalar();
        out[i] = Math.min(hi, Math.max(lo, path.tFromLogSnr(-2 * lnSig)));
      }
      break;
    }
  }
  return out;
}
