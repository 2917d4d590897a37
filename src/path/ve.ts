/** Variance-exploding paths: alpha = 1. VE (Song et al. 2021, geometric sigma) and EDM (Karras et al. 2022, sigma = t). */
import { checkNumber, fail } from '../util/validate.js';
import { logSnrOf, type NoisePath } from './types.js';

/** sigma(t) = sigmaMin (sigmaMax / sigmaMin)^t for t in (0, 1]; t = 0 is clean data (final denoising step). */
export function ve(opts: { sigmaMin?: number; sigmaMax?: number } = {}): NoisePath {
  const sMin = checkNumber('sigmaMin', opts.sigmaMin ?? 0.01, { min: 1e-6 });
  const sMax = checkNumber('sigmaMax', opts.sigmaMax ?? 50, { min: 0 });
  if (sMax <= sMin) fail(`sigmaMax: expected > sigmaMin (${sMin}), received ${sMax}`);
  const logRatio = Math.log(sMax / sMin);
  const sigma = (t: number): number => (t <= 0 ? 0 : sMin * Math.exp(logRatio * t));
  return {
    kind: 've',
    tMin: 1e-5,
    tMax: 1,
    sigmaData: 1,
    spec: { kind: 've', sigmaMin: sMin, sigmaMax: sMax },
    alpha: () => 1,
    sigma,
    dAlpha: () => 0,
    dSigma: (t) => sigma(t) * logRatio,
    logSnr: (t) => logSnrOf(1, sigma(t)),
    // sigma = exp(-lambda / 2)  =>  t = (log sigma - log sigmaMin) / log(sigmaMax / sigmaMin)
    tFromLogSnr: (lambda) => Math.min(1, Math.max(0, (-lambda / 2 - Math.log(sMin)) / logRatio)),
  };
}

/** EDM: sigma(t) = t, alpha = 1, with the data scale sigmaData used by its preconditioner. */
export function edm(opts: { sigmaMin?: number; sigmaMax?: number; sigmaData?: number } = {}): NoisePath {
  const sMin = checkNumber('sigmaMin', opts.sigmaMin ?? 0.002, { min: 1e-6 });
  const sMax = checkNumber('sigmaMax', opts.sigmaMax ?? 80, { min: 0 });
  const sData = checkNumber('sigmaData', opts.sigmaData ?? 0.5, { min: 1e-6 });
  if (sMax <= sMin) fail(`sigmaMax: expected > sigmaMin (${sMin}), received ${sMax}`);
  return {
    kind: 'edm',
    tMin: sMin,
    tMax: sMax,
    sigmaData: sData,
    spec: { kind: 'edm', sigmaMin: sMin, sigmaMax: sMax, sigmaData: sData },
    alpha: () => 1,
    sigma: (t) => Math.max(0, t),
    dAlpha: () => 0,
    dSigma: () => 1,
    logSnr: (t) => logSnrOf(1, Math.max(0, t)),
    tFromLogSnr: (lambda) => Math.exp(-lambda / 2),
  };
}
