/** Linear interpolation / rectified flow (Liu et al. 2022; Lipman et al. 2022): x_t = (1 - t) x0 + t eps. */
import { checkNumber } from '../util/validate.js';
import { logSnrOf, type NoisePath } from './types.js';

export function rectifiedFlow(opts: { tMin?: number; tMax?: number } = {}): NoisePath {
  const tMin = checkNumber('tMin', opts.tMin ?? 1e-4, { min: 0, max: 0.5 });
  const tMax = checkNumber('tMax', opts.tMax ?? 1, { min: 0.5, max: 1 });
  return {
    kind: 'rectified-flow',
    tMin,
    tMax,
    sigmaData: 1,
    spec: { kind: 'rectified-flow', tMin, tMax },
    alpha: (t) => 1 - t,
    sigma: (t) => Math.max(0, t),
    dAlpha: () => -1,
    dSigma: () => 1,
    logSnr: (t) => logSnrOf(1 - t, Math.max(0, t)),
    // lambda = 2 log((1 - t)/t)  =>  t = 1 / (1 + exp(lambda / 2))
    tFromLogSnr: (lambda) => 1 / (1 + Math.exp(lambda / 2)),
  };
}
