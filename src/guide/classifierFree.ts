/**
 * Classifier-free guidance (Ho & Salimans 2022) in x0 space:
 *   x0 = uncond + w (cond - uncond)
 * w = 1 is the plain conditional denoiser, w = 0 the unconditional one, w > 1 extrapolates
 * past the conditional. With a schedule multiplier m(t) the effective scale is
 * 1 + m(t) (w - 1): where guidance is off (m = 0) the conditional denoiser is used alone.
 * Only the denoisers the effective scale needs are evaluated.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { Rng } from '../rng/rng.js';
import { checkNumber, checkRankAtLeast, describeShape, fail } from '../util/validate.js';
import { checkSchedule, scheduleWeight, type GuidanceSchedule } from './schedule.js';

export interface ClassifierFreeOptions {
  /** Denoiser with the condition closed over. */
  readonly cond: Denoiser;
  /** Denoiser with the null condition. */
  readonly uncond: Denoiser;
  /** Guidance scale w (1: conditional, 0: unconditional). */
  readonly scale: number;
  readonly schedule?: GuidanceSchedule;
}

export function classifierFree(opts: ClassifierFreeOptions): Denoiser {
  if (!opts || typeof opts !== 'object') fail('classifierFree: expected an options object { cond, uncond, scale }');
  const { cond, uncond } = opts;
  if (typeof cond !== 'function') fail('cond: expected a denoiser (x, t) => x0');
  if (typeof uncond !== 'function') fail('uncond: expected a denoiser (x, t) => x0');
  const scale = checkNumber('scale', opts.scale);
  const schedule = checkSchedule('schedule', opts.schedule);
  return (x, t) => {
    const w = 1 + scheduleWeight(schedule, t) * (scale - 1);
    return tf.tidy(() => {
      if (w === 1) return cond(x, t);
      if (w === 0) return uncond(x, t);
      const c = cond(x, t);
      const u = uncond(x, t);
      if (c.shape.length !== u.shape.length || c.shape.some((d, i) => d !== u.shape[i])) {
        fail(`uncond: returned shape ${describeShape(u.shape)}, but cond returned ${describeShape(c.shape)}`);
      }
      return tf.add(u, tf.mul(tf.sub(c, u), w));
    });
  };
}

/**
 * Training-time condition dropout for classifier-free guidance: each row (index along the
 * first axis) of `cond` is replaced by the null condition with probability `p`. `nullValue`
 * is a number or a tensor broadcastable to one row (e.g. a learned null embedding).
 * Returns a new tensor of cond's shape and dtype; the inputs are not disposed.
 */
export function dropCondition(cond: tf.Tensor, p: number, rng: Rng, nullValue: number | tf.Tensor = 0): tf.Tensor {
  checkRankAtLeast('cond', cond, 1);
  checkNumber('p', p, { min: 0, max: 1 });
  if (!rng || typeof (rng as { uniformTensor?: unknown }).uniformTensor !== 'function') fail(`rng: expected an Rng, received ${String(rng)}`);
  if (typeof nullValue === 'number') {
    if (Number.isNaN(nullValue)) fail('nullValue: expected a number, received NaN');
  } else if (!(nullValue instanceof tf.Tensor)) {
    fail(`nullValue: expected a number or a tensor, received ${typeof nullValue}`);
  } else {
    const row = cond.shape.slice(1);
    const ok = nullValue.rank <= cond.rank && nullValue.shape.every((d, i) => {
      const target = cond.shape[cond.rank - nullValue.rank + i];
      return d === 1 || d === target;
    }) && (nullValue.rank < cond.rank || nullValue.shape[0] === 1);
    if (!ok) fail(`nullValue: expected a tensor broadcastable to one row of cond ${describeShape(row)}, received ${describeShape(nullValue.shape)}`);
  }
  const batch = cond.shape[0];
  return tf.tidy(() => {
    const drop = tf.less(rng.uniformTensor([batch]), p); // [B] bool
    const dropFull = tf.broadcastTo(tf.reshape(drop, [batch, ...Array(cond.rank - 1).fill(1)]), cond.shape);
    const nul = typeof nullValue === 'number'
      ? tf.fill(cond.shape, nullValue, cond.dtype)
      : tf.broadcastTo(tf.cast(nullValue, cond.dtype), cond.shape);
    return tf.where(dropFull, nul, cond);
  });
}
