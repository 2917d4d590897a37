/**
 * Loss weightings, defined once as a weight on the x0-space error and carried to whatever
 * space the loss is measured in, so a weighting means the same thing for every target.
 *
 * At fixed x_t = a x0 + s eps, an error dx0 in the data estimate is an error c_T dx0 in the
 * target T (the conversions of src/predict are affine in the prediction):
 *   x0:        c^2 = 1
 *   eps:       c^2 = a^2 / s^2                      = snr
 *   v:         c^2 = ((a^2 + s^2) / s)^2            = snr + 1 on VP paths (a^2 + s^2 = 1)
 *   velocity:  c^2 = ((a' s - a s') / s)^2          = 1 / t^2 on rectified flow
 * A weighting w_x0(t) on ||x0_hat - x0||^2 is therefore the weight w_x0 / c_T^2 on
 * ||T_hat - T||^2. The x0-space weights (snr = a^2 / s^2, scaled noise level sig = s / a):
 *   'snr':     w_x0 = snr                           (the plain eps-MSE of DDPM: weight 1 on eps)
 *   'min-snr': w_x0 = min(snr, gamma)               (Hang et al. 2023; eps: min(snr, gamma)/snr,
 *                                                    VP v: min(snr, gamma)/(snr + 1))
 *   'edm':     w_x0 = (sig^2 + sd^2) / (sig sd)^2   (Karras et al. 2022 lambda(sigma); makes the
 *                                                    preconditioned network's error unit-weighted)
 * 'none' is the unweighted mean squared error of the target itself (weight 1 in T space).
 */
import type { NoisePath } from '../path/types.js';
import { checkNumber, checkOneOf } from '../util/validate.js';

export type Weighting = 'none' | 'snr' | 'min-snr' | 'edm';
export const WEIGHTINGS: readonly Weighting[] = ['none', 'snr', 'min-snr', 'edm'];

/** Spaces a regression loss can be measured in. */
export type LossTarget = 'eps' | 'x0' | 'v' | 'velocity';
export const LOSS_TARGETS: readonly LossTarget[] = ['eps', 'x0', 'v', 'velocity'];

export interface WeightOptions {
  /** min-SNR clip (default 5, as recommended by Hang et al.). */
  readonly gamma?: number;
  /** sigma_data of the 'edm' weighting (default: the path's sigmaData). */
  readonly sigmaData?: number;
}

/** c_T^2: squared gain from an x0-space error to a target-space error at time t (see the header). */
export function targetScale2(target: LossTarget, path: NoisePath, t: number): number {
  const a = path.alpha(t);
  const s = path.sigma(t);
  switch (target) {
    case 'x0':
      return 1;
    case 'eps':
      return (a * a) / (s * s);
    case 'v': {
      const r = (a * a + s * s) / s;
      return r * r;
    }
    case 'velocity': {
      const r = (path.dAlpha(t) * s - a * path.dSigma(t)) / s;
      return r * r;
    }
  }
}

/** x0-space weight w_x0(t) of a weighting (not defined for 'none', which is target-relative). */
export function x0Weight(weighting: Exclude<Weighting, 'none'>, path: NoisePath, t: number, opts: WeightOptions = {}): number {
  const a = path.alpha(t);
  const s = path.sigma(t);
  const snr = (a * a) / (s * s);
  switch (weighting) {
    case 'snr':
      return snr;
    case 'min-snr':
      return Math.min(snr, opts.gamma ?? 5);
    case 'edm': {
      const sd = opts.sigmaData ?? path.sigmaData;
      const sig = s / a;
      return (sig * sig + sd * sd) / (sig * sig * sd * sd);
    }
  }
}

/**
 * Weight on the target-space squared error at time t: 1 for 'none', w_x0(t) / c_T(t)^2
 * otherwise. The eps cases are written without the ratio so they stay finite where snr is 0
 * or huge: snr -> 1, min-snr -> min(1, gamma / snr), edm -> (sig^2 + sd^2) / sd^2.
 */
export function lossWeight(weighting: Weighting, target: LossTarget, path: NoisePath, t: number, opts: WeightOptions = {}): number {
  checkOneOf('weighting', weighting, WEIGHTINGS);
  checkOneOf('target', target, LOSS_TARGETS);
  const gamma = checkNumber('gamma', opts.gamma ?? 5, { min: 0 });
  const sd = checkNumber('sigmaData', opts.sigmaData ?? path.sigmaData, { min: 1e-12 });
  if (weighting === 'none') return 1;
  if (target === 'eps') {
    const a = path.alpha(t);
    const s = path.sigma(t);
    const snr = (a * a) / (s * s);
    if (weighting === 'snr') return 1;
    if (weighting === 'min-snr') return snr <= gamma ? 1 : gamma / snr;
    const sig = s / a;
    return (sig * sig + sd * sd) / (sd * sd);
  }
  return x0Weight(weighting, path, t, { gamma, sigmaData: sd }) / targetScale2(target, path, t);
}
