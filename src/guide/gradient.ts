/**
 * Gradient guidance: steer sampling with a differentiable per-sample objective (a reward,
 * a negative energy, a classifier log-probability).
 *
 * Adding scale * g to the score of p_t and mapping back to x0 with Tweedie's formula
 * (x0 = (x_t + sigma^2 score) / alpha) gives the guided denoiser
 *   x0 = x0hat + scale * m(t) * (sigma(t)^2 / alpha(t)) * g,
 * where m(t) is the schedule multiplier and g is
 *   on 'x0':  grad_{x_t} sum_b fn(x0hat(x_t), t)_b   (differentiated through the inner
 *             denoiser: DPS, Chung et al. 2023; Diffuser-style value guidance on x0)
 *   on 'xt':  grad_{x_t} sum_b fn(x_t, t)_b          (fn is a noisy-time objective, e.g. a
 *             time-dependent classifier or the exact log E[exp r(x0) | x_t])
 * Optional per-sample clipping caps the Euclidean norm of g (over all non-batch axes) at
 * clipNorm before it is scaled, so the applied shift is at most
 * |scale m(t)| sigma^2 / alpha * clipNorm per sample.
 * Where sigma = 0 (t = 0) or alpha = 0 (rectified flow at t = 1, where x_t carries no
 * information about x0) the shift is zero and the inner denoiser is returned unchanged.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import { checkNumber, checkOneOf, describeShape, fail } from '../util/validate.js';
import { checkSchedule, scheduleWeight, type GuidanceSchedule } from './schedule.js';
import type { DenoiserWrapper } from './types.js';

/** A differentiable objective returning one value per sample: [B] from a batch [B, ...]. */
export type GuidanceObjective = (x: tf.Tensor, t: number) => tf.Tensor;

/**
 * 'x0': DPS-style, g = grad_{x_t} fn(x0hat(x_t)) (backprop through the denoiser), x0 += scale (sigma^2/alpha) g.
 * 'xt': g = grad_{x_t} fn(x_t, t) (e.g. a noise-aware value function), x0 += scale (sigma^2/alpha) g.
 * 'x0-direct': g = grad_{x0} fn(x0hat) at the (detached) estimate, x0 += scale g: a gradient step on
 *   the denoised estimate with no backprop through the network. Cheap, and it still acts when the
 *   denoiser is nearly insensitive to x_t (strongly conditioned models), where the DPS gradient vanishes;
 *   it shifts the final sample too unless the schedule switches it off near t = 0.
 */
export type GuidanceTarget = 'x0' | 'xt' | 'x0-direct';
export const GUIDANCE_TARGETS: readonly GuidanceTarget[] = ['x0', 'xt', 'x0-direct'];

export interface GradientGuidanceOptions {
  readonly path: NoisePath;
  readonly fn: GuidanceObjective;
  /** Whether fn is evaluated on the denoised estimate ('x0') or on the noisy state ('xt'). */
  readonly on: GuidanceTarget;
  readonly scale: number;
  readonly schedule?: GuidanceSchedule;
  /** Per-sample cap on the gradient norm (before scaling). */
  readonly clipNorm?: number;
}

function objective(fn: GuidanceObjective, x: tf.Tensor, t: number, batch: number): tf.Scalar {
  const v = fn(x, t);
  if (!(v instanceof tf.Tensor)) fail(`fn: expected a tensor of shape [${batch}], received ${typeof v}`);
  if (v.rank !== 1 || v.shape[0] !== batch) fail(`fn: expected one value per sample, shape [${batch}], received ${describeShape(v.shape)}`);
  return tf.sum(v);
}

/** Adds 0 * sum(z) so that an objective independent of z has a zero gradient instead of an error. */
function connected(obj: tf.Scalar, z: tf.Tensor): tf.Scalar {
  return tf.add(obj, tf.mul(tf.sum(z), 0));
}

/** Scales each sample of g so that its norm is at most maxNorm. */
export function clipPerSample(g: tf.Tensor, maxNorm: number): tf.Tensor {
  return tf.tidy(() => {
    const b = g.shape[0];
    const norms = tf.sqrt(tf.sum(tf.square(tf.reshape(g, [b, -1])), 1)); // [B]
    const factor = tf.minimum(1, tf.div(maxNorm, tf.maximum(norms, 1e-30)));
    return tf.mul(g, tf.reshape(factor, [b, ...Array(g.rank - 1).fill(1)]));
  });
}

export function gradientGuidance(opts: GradientGuidanceOptions): DenoiserWrapper {
  if (!opts || typeof opts !== 'object') fail('gradientGuidance: expected an options object { path, fn, on, scale }');
  const { path, fn } = opts;
  if (!path || typeof path.alpha !== 'function' || typeof path.sigma !== 'function') fail('path: expected a NoisePath');
  if (typeof fn !== 'function') fail('fn: expected a function (x, t) => per-sample values [B]');
  const on = checkOneOf('on', opts.on, GUIDANCE_TARGETS);
  const scale = checkNumber('scale', opts.scale);
  const clipNorm = opts.clipNorm === undefined ? undefined : checkNumber('clipNorm', opts.clipNorm, { min: 0 });
  const schedule = checkSchedule('schedule', opts.schedule);
  return (den: Denoiser): Denoiser => {
    if (typeof den !== 'function') fail('gradientGuidance: the wrapped denoiser must be a function (x, t) => x0');
    // The objective's output shape is checked once outside the gradient tape: an error thrown
    // while tfjs records a tape would strand the tensors it saved for the backward pass.
    let checkedBatch = -1;
    return (x, t) => {
      const a = path.alpha(t);
      const s = path.sigma(t);
      const coef = on === 'x0-direct' ? scale * scheduleWeight(schedule, t) : scale * scheduleWeight(schedule, t) * (a === 0 ? 0 : (s * s) / a);
      if (coef === 0 || !Number.isFinite(coef)) return tf.tidy(() => den(x, t));
      if (!tf.getGradient('Sum')) {
        fail("gradientGuidance: tfjs gradient functions are not registered; select a backend with scoreflow's setBackend() (or import '@tensorflow/tfjs') first");
      }
      const batch = x.shape[0];
      if (batch !== checkedBatch) {
        tf.tidy(() => {
          objective(fn, on === 'xt' ? x : den(x, t), t, batch);
        });
        checkedBatch = batch;
      }
      let kept: tf.Tensor | undefined;
      try {
        return tf.tidy(() => {
          let x0: tf.Tensor;
          let g: tf.Tensor;
          if (on === 'x0') {
            // One pass: the denoised estimate is kept (as a copy we own) from the gradient's forward pass.
            g = tf.grad((z: tf.Tensor) => {
              const y = den(z, t);
              kept = tf.keep(tf.clone(y));
              return connected(objective(fn, y, t, batch), z);
            })(x);
            x0 = kept as unknown as tf.Tensor;
          } else if (on === 'x0-direct') {
            x0 = den(x, t);
            g = tf.grad((z: tf.Tensor) => connected(objective(fn, z, t, batch), z))(x0);
          } else {
            g = tf.grad((z: tf.Tensor) => connected(objective(fn, z, t, batch), z))(x);
            x0 = den(x, t);
          }
          if (clipNorm !== undefined) g = clipPerSample(g, clipNorm);
          return tf.add(x0, tf.mul(g, coef));
        });
      } finally {
        kept?.dispose();
      }
    };
  };
}
