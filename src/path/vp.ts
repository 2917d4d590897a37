/** Variance-preserving paths (alpha^2 + sigma^2 = 1): DDPM's linear beta schedule and the cosine schedule. */
import { checkNumber, fail } from '../util/validate.js';
import { invertDecreasing, logSnrOf, type NoisePath } from './types.js';

function vpFromLogAlpha(
  kind: 'vp-linear' | 'vp-cosine',
  logAlpha: (t: number) => number,
  dLogAlpha: (t: number) => number,
  tMin: number,
  tMax: number,
  spec: NoisePath['spec'],
): NoisePath {
  const alpha = (t: number): number => (t <= 0 ? 1 : Math.exp(logAlpha(t)));
  const sigma = (t: number): number => (t <= 0 ? 0 : Math.sqrt(Math.max(0, -Math.expm1(2 * logAlpha(t)))));
  const path: NoisePath = {
    kind,
    tMin,
    tMax,
    sigmaData: 1,
    spec,
    alpha,
    sigma,
    dAlpha: (t) => alpha(t) * dLogAlpha(t),
    dSigma: (t) => {
      const s = sigma(t);
      const a = alpha(t);
      // sigma^2 = 1 - alpha^2  =>  sigma' = -alpha * alpha' / sigma
      return s === 0 ? Infinity : (-a * a * dLogAlpha(t)) / s;
    },
    logSnr: (t) => logSnrOf(alpha(t), sigma(t)),
    tFromLogSnr: (lambda) => invertDecreasing((t) => logSnrOf(alpha(t), sigma(t)), lambda, 0, 1),
  };
  return path;
}

/** DDPM's linear beta schedule in continuous time (Song et al. 2021): beta(t) = betaMin + t (betaMax - betaMin). */
export function vpLinear(opts: { betaMin?: number; betaMax?: number; tMin?: number } = {}): NoisePath {
  const b0 = checkNumber('betaMin', opts.betaMin ?? 0.1, { min: 0 });
  const b1 = checkNumber('betaMax', opts.betaMax ?? 20, { min: 0 });
  const tMin = checkNumber('tMin', opts.tMin ?? 1e-3, { min: 0, max: 0.5 });
  if (b1 <= b0) fail(`betaMax: expected > betaMin (${b0}), received ${b1}`);
  const logAlpha = (t: number): number => -0.25 * t * t * (b1 - b0) - 0.5 * t * b0;
  const dLogAlpha = (t: number): number => -0.5 * t * (b1 - b0) - 0.5 * b0;
  return vpFromLogAlpha('vp-linear', logAlpha, dLogAlpha, tMin, 1, { kind: 'vp-linear', betaMin: b0, betaMax: b1, tMin });
}

/** Cosine schedule (Nichol & Dhariwal 2021): alpha(t) = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2 s/(1 + s)). */
export function vpCosine(opts: { s?: number; tMin?: number; tMax?: number } = {}): NoisePath {
  const s = checkNumber('s', opts.s ?? 0.008, { min: 0, max: 1 });
  const tMin = checkNumber('tMin', opts.tMin ?? 1e-3, { min: 0, max: 0.5 });
  // alpha reaches 0 at t = 1; stop where log-SNR is about -12 so conversions stay finite.
  const tMax = checkNumber('tMax', opts.tMax ?? 0.9946, { min: 0.5, max: 0.99999 });
  const c = (u: number): number => Math.cos(((u + s) / (1 + s)) * (Math.PI / 2));
  const logAlpha = (t: number): number => Math.log(c(t) / c(0));
  const dLogAlpha = (t: number): number => -Math.tan(((t + s) / (1 + s)) * (Math.PI / 2)) * (Math.PI / 2) / (1 + s);
  return vpFromLogAlpha('vp-cosine', logAlpha, dLogAlpha, tMin, tMax, { kind: 'vp-cosine', s, tMin, tMax });
}
