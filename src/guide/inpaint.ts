/**
 * Inpainting (and any "some entries are known" conditioning: observed actions, fixed atoms,
 * observed grid cells) by replacement, as in Diffusion Policy, Diffuser and consistency models.
 *
 * - `denoiser(den)`: x0hat[mask] = known (the estimate agrees with what is known).
 * - `project`: re-imposes the known entries at the current noise level after every step,
 *     x_t[mask] = alpha(t) known + sigma(t) eps,
 *   with eps drawn once from `rng` (the same eps at every step, so the known entries follow
 *   one noising trajectory of the known values). At t = 0 the known entries are exact.
 * mask is 1 where the entry is known and 0 where it is sampled. `known` and `mask` have the
 * shape of the sampled batch x, or of one sample (x without its batch axis, shared by every
 * sample). The noise is regenerated from a stored seed, so no tensor outlives a call.
 *
 * Replacement alone is biased: the unknown entries are denoised from a noisy view of the
 * known ones, so early (high-noise) steps ignore most of what is known and the sample drifts
 * toward the unconditional law (measured in test/core/guidance.test.ts). The optional
 * `reconstruction` term (Ho et al. 2022, "reconstruction guidance") corrects this: it adds
 * grad_{x_t} log p(x0[mask] = known | x_t) to the score, modelling x0 | x_t as Gaussian with
 * per-entry variance v(t),
 *   fn(x0hat) = -|mask (x0hat - known)|^2 / (2 v(t)),   applied as an on:'x0' gradient term.
 * For Gaussian data with v(t) the posterior variance of the known entry this is exact:
 * x0hat_free += Cov[free, known | x_t] / v(t) (known - x0hat_known).
 * Default v(t) = sd^2 sigma^2 / (alpha^2 sd^2 + sigma^2) with sd = path.sigmaData
 * (the posterior variance for isotropic data of standard deviation sd).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import type { Rng } from '../rng/rng.js';
import type { Projection } from '../sample/types.js';
import { checkNumber, describeShape, fail } from '../util/validate.js';
import { gradientGuidance } from './gradient.js';
import type { GuidanceSchedule } from './schedule.js';
import type { DenoiserWrapper } from './types.js';

export interface ReconstructionOptions {
  /** Multiplier of the term (1: the Gaussian-exact weight). Default 1. */
  readonly scale?: number;
  /** Posterior variance v(t) > 0 of the known entries given x_t. */
  readonly variance?: (t: number) => number;
  readonly schedule?: GuidanceSchedule;
  /** Per-sample gradient-norm cap, as in gradientGuidance. */
  readonly clipNorm?: number;
}

export interface InpaintOptions {
  readonly path: NoisePath;
  /** Known values (clean data); entries where mask = 0 are ignored. */
  readonly known: tf.Tensor;
  /** 1 = known, 0 = to sample. */
  readonly mask: tf.Tensor;
  /** Source of the fixed noise of the known entries. */
  readonly rng: Rng;
  /** Optional reconstruction guidance of the unknown entries toward consistency with the known ones. */
  readonly reconstruction?: ReconstructionOptions;
}

export interface Inpainting {
  readonly denoiser: DenoiserWrapper;
  readonly project: Projection;
}

function checkAgainstX(name: string, v: tf.Tensor, x: tf.Tensor): void {
  const same = (s: readonly number[]): boolean => v.shape.length === s.length && v.shape.every((d, i) => d === s[i]);
  if (!same(x.shape) && !same(x.shape.slice(1))) {
    fail(`${name}: expected the shape of x ${describeShape(x.shape)} or of one sample ${describeShape(x.shape.slice(1))}, received ${describeShape(v.shape)}`);
  }
}

export function inpaint(opts: InpaintOptions): Inpainting {
  if (!opts || typeof opts !== 'object') fail('inpaint: expected an options object { path, known, mask, rng }');
  const { path, known, mask, rng } = opts;
  if (!path || typeof path.alpha !== 'function' || typeof path.sigma !== 'function') fail('path: expected a NoisePath');
  if (!(known instanceof tf.Tensor)) fail(`known: expected a tensor, received ${typeof known}`);
  if (!(mask instanceof tf.Tensor)) fail(`mask: expected a tensor, received ${typeof mask}`);
  if (!rng || typeof (rng as { nextUint32?: unknown }).nextUint32 !== 'function') fail(`rng: expected an Rng, received ${String(rng)}`);
  if (known.isDisposed) fail('known: the tensor is disposed');
  if (mask.isDisposed) fail('mask: the tensor is disposed');
  const m = mask.dataSync();
  for (let i = 0; i < m.length; i++) {
    if (m[i] !== 0 && m[i] !== 1) fail(`mask: expected entries 0 or 1, received ${m[i]} at flat index ${i}`);
  }
  const k = known.dataSync();
  for (let i = 0; i < k.length; i++) {
    if (!Number.isFinite(k[i])) fail(`known: contains a non-finite value (${k[i]}) at flat index ${i}`);
  }
  const seed = rng.nextUint32();
  const noise = (shape: readonly number[]): tf.Tensor => tf.randomNormal(shape as number[], 0, 1, 'float32', seed);

  const replace = (x: tf.Tensor, value: tf.Tensor): tf.Tensor => {
    const mf = tf.cast(mask, 'float32');
    return tf.add(tf.mul(mf, value), tf.mul(tf.sub(1, mf), x));
  };

  let recon: DenoiserWrapper | undefined;
  if (opts.reconstruction !== undefined) {
    const r = opts.reconstruction;
    if (r === null || typeof r !== 'object') fail(`reconstruction: expected an options object, received ${String(r)}`);
    if (r.variance !== undefined && typeof r.variance !== 'function') fail('reconstruction.variance: expected a function t -> posterior variance');
    const sd2 = path.sigmaData * path.sigmaData;
    const variance = r.variance ?? ((t: number): number => {
      const a = path.alpha(t);
      const s = path.sigma(t);
      return (sd2 * s * s) / (a * a * sd2 + s * s);
    });
    recon = gradientGuidance({
      path,
      on: 'x0',
      scale: checkNumber('reconstruction.scale', r.scale ?? 1),
      schedule: r.schedule,
      clipNorm: r.clipNorm,
      fn: (x0, t) => {
        const v = variance(t);
        if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fail(`reconstruction.variance: expected a positive finite variance at t=${t}, received ${String(v)}`);
        const err = tf.mul(tf.cast(mask, 'float32'), tf.sub(x0, tf.cast(known, 'float32')));
        return tf.mul(tf.sum(tf.reshape(tf.square(err), [x0.shape[0], -1]), 1), -0.5 / v);
      },
    });
  }

  const denoiser: DenoiserWrapper = (inner) => {
    if (typeof inner !== 'function') fail('inpaint: the wrapped denoiser must be a function (x, t) => x0');
    const den = recon ? recon(inner) : inner;
    return (x, t) =>
      tf.tidy(() => {
        checkAgainstX('known', known, x);
        checkAgainstX('mask', mask, x);
        return replace(den(x, t), tf.cast(known, 'float32'));
      });
  };

  const project: Projection = (x, t) =>
    tf.tidy(() => {
      checkAgainstX('known', known, x);
      checkAgainstX('mask', mask, x);
      const a = path.alpha(t);
      const s = path.sigma(t);
      const target = s === 0 ? tf.mul(tf.cast(known, 'float32'), a) : tf.add(tf.mul(tf.cast(known, 'float32'), a), tf.mul(noise(x.shape), s));
      return replace(x, target);
    });

  return { denoiser, project };
}
