/**
 * A noise path x_t = alpha(t) * x0 + sigma(t) * eps between data (t = 0) and noise (t = tMax).
 *
 * One time convention everywhere: t = 0 is clean data and is always (alpha, sigma) = (1, 0);
 * larger t is noisier. Samplers integrate from `tMax` down to 0; training draws t in
 * [tMin, tMax]. Paths whose sigma does not vanish continuously at 0 (VE with a geometric
 * sigma) treat the last step to t = 0 as a final denoising step, as k-diffusion does.
 */
export type PathKind = 'vp-linear' | 'vp-cosine' | 've' | 'edm' | 'rectified-flow';

export interface NoisePath {
  readonly kind: PathKind;
  /** Smallest t used for training and as the last non-zero grid point. */
  readonly tMin: number;
  /** Largest t (start of sampling). */
  readonly tMax: number;
  /** EDM's sigma_data (standard deviation of the data the preconditioner assumes). */
  readonly sigmaData: number;
  alpha(t: number): number;
  sigma(t: number): number;
  /** d alpha / dt. */
  dAlpha(t: number): number;
  /** d sigma / dt. */
  dSigma(t: number): number;
  /** log(alpha^2 / sigma^2); +Infinity at t = 0. */
  logSnr(t: number): number;
  /** Inverse of logSnr on (0, tMax]. */
  tFromLogSnr(lambda: number): number;
  /** JSON-serialisable description, enough to rebuild the path with `pathFromSpec`. */
  readonly spec: PathSpec;
}

export type PathSpec =
  | { kind: 'vp-linear'; betaMin?: number; betaMax?: number; tMin?: number }
  | { kind: 'vp-cosine'; s?: number; tMin?: number; tMax?: number }
  | { kind: 've'; sigmaMin?: number; sigmaMax?: number }
  | { kind: 'edm'; sigmaMin?: number; sigmaMax?: number; sigmaData?: number }
  | { kind: 'rectified-flow'; tMin?: number; tMax?: number };

/** Log-SNR from alpha and sigma, with the t = 0 convention. */
export function logSnrOf(a: number, s: number): number {
  if (s === 0) return Infinity;
  if (a === 0) return -Infinity;
  return 2 * Math.log(a / s);
}

/** Bisection for a monotonically decreasing function f on [lo, hi]: finds t with f(t) = y. */
export function invertDecreasing(f: (t: number) => number, y: number, lo: number, hi: number): number {
  let a = lo;
  let b = hi;
  for (let i = 0; i < 100; i++) {
    const m = 0.5 * (a + b);
    if (f(m) > y) a = m;
    else b = m;
  }
  return 0.5 * (a + b);
}
