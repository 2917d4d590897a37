/**
 * Constraint projection of the denoised estimate: hard-ish constraints for any sampler.
 *
 * `fn` is a non-negative per-sample violation c(x0) [B] that is zero exactly on the feasible set
 * (a sum of squared hinges such as relu(margin - distance)^2 is the typical case). After the
 * inner denoiser has produced x0hat, the wrapper runs `iterations` Polyak steps towards c = 0
 *   x0 <- x0 - scale * c(x0) / |grad c(x0)|^2 * grad c(x0)      (per sample)
 * each capped at `maxStep` in Euclidean norm over the sample's entries. Samples with c = 0 are
 * not moved. The Polyak step needs no tuned step size: for one squared hinge c = v^2 it is
 * half a Newton step on the violation v (scale 2 is the full Newton step), so k iterations
 * shrink a linear violation by 2^-k whatever units c is written in. The sampler then moves
 * x_t towards the projected estimate, so the constraint shapes the whole trajectory (as the
 * projection of each denoising step does in SafeDiffuser, Xiao et al. 2023), and the final
 * sample is projected as well.
 *
 * Compared with gradient guidance ('x0-direct', a fixed step scale * grad), whose useful scale
 * depends on the cost's units and on how violated the sample is (too small does nothing, too
 * large overshoots), the projection step grows with the violation and vanishes on the
 * feasible set.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import { checkNumber, describeShape, fail } from '../util/validate.js';
import { checkSchedule, scheduleWeight, type GuidanceSchedule } from './schedule.js';
import type { DenoiserWrapper } from './types.js';

export interface ProjectionGuidanceOptions {
  /** Per-sample violation c(x0) >= 0, shape [B]; differentiable in x0; zero when feasible. */
  readonly fn: (x0: tf.Tensor, t: number) => tf.Tensor;
  /** Polyak steps per denoiser call. Default 3. */
  readonly iterations?: number;
  /** Step multiplier in (0, 4]; 1 = Polyak step to c = 0, 2 = full Newton step for one squared hinge. Default 1. */
  readonly scale?: number;
  /** Cap on each step's per-sample Euclidean norm (in x0's units). Default: no cap. */
  readonly maxStep?: number;
  /** When the projection acts (multiplies the step; 0 switches it off). Default: always. */
  readonly schedule?: GuidanceSchedule;
}

/** Squared gradient norms below this are treated as zero (no step: the violation has no direction). */
const MIN_GRAD_SQ = 1e-20;

export function projectionGuidance(opts: ProjectionGuidanceOptions): DenoiserWrapper {
  if (!opts || typeof opts !== 'object') fail('projectionGuidance: expected an options object { fn, iterations?, scale?, maxStep?, schedule? }');
  const { fn } = opts;
  if (typeof fn !== 'function') fail('projectionGuidance: fn must be a function (x0, t) => per-sample violations [B]');
  const iterations = checkNumber('projectionGuidance: iterations', opts.iterations ?? 3, { integer: true, min: 1, max: 100 });
  const scale = checkNumber('projectionGuidance: scale', opts.scale ?? 1, { max: 4 });
  if (!(scale > 0)) fail(`projectionGuidance: scale must be > 0, received ${scale}`);
  const maxStep = opts.maxStep === undefined ? undefined : checkNumber('projectionGuidance: maxStep', opts.maxStep);
  if (maxStep !== undefined && !(maxStep > 0)) fail(`projectionGuidance: maxStep must be > 0, received ${maxStep}`);
  const schedule = checkSchedule('projectionGuidance: schedule', opts.schedule);

  const violation = (x: tf.Tensor, t: number, batch: number): tf.Tensor1D => {
    const v = fn(x, t);
    if (!(v instanceof tf.Tensor)) fail(`projectionGuidance: fn must return a tensor of shape [${batch}], received ${typeof v}`);
    if (v.rank !== 1 || v.shape[0] !== batch) fail(`projectionGuidance: fn must return one violation per sample, shape [${batch}], received ${describeShape(v.shape)}`);
    return v as tf.Tensor1D;
  };

  return (den: Denoiser): Denoiser => {
    if (typeof den !== 'function') fail('projectionGuidance: the wrapped denoiser must be a function (x, t) => x0');
    let checkedBatch = -1;
    return (x, t) => {
      const m = scale * scheduleWeight(schedule, t, 'projectionGuidance: schedule');
      if (m === 0) return tf.tidy(() => den(x, t));
      const batch = x.shape[0];
      return tf.tidy(() => {
        let x0 = den(x, t);
        if (batch !== checkedBatch) {
          // Shape check on the denoised estimate, outside any gradient tape (an error inside one
          // would strand its tensors); no second denoiser call.
          tf.tidy(() => {
            violation(x0, t, batch);
          });
          checkedBatch = batch;
        }
        const bshape = [batch, ...Array(x0.rank - 1).fill(1)];
        for (let k = 0; k < iterations; k++) {
          let kept: tf.Tensor | undefined;
          let next: tf.Tensor;
          try {
            next = tf.tidy(() => {
              // One pass: the per-sample violations are kept (as a copy we own) from the gradient's forward pass.
              const { value, grad } = tf.valueAndGrad((z: tf.Tensor) => {
                const v = violation(z, t, batch);
                kept = tf.keep(tf.clone(v));
                return tf.add(tf.sum(v), tf.mul(tf.sum(z), 0)); // connected even if fn ignores z
              })(x0);
              value.dispose();
              const c = tf.relu(kept as tf.Tensor);
              const g2 = tf.sum(tf.square(tf.reshape(grad, [batch, -1])), 1);
              const ok = tf.cast(tf.greater(g2, MIN_GRAD_SQ), 'float32');
              let step = tf.mul(tf.div(tf.mul(c, ok), tf.maximum(g2, MIN_GRAD_SQ)), m); // [B]
              if (maxStep !== undefined) {
                const len = tf.mul(step, tf.sqrt(g2)); // the step's Euclidean norm
                step = tf.mul(step, tf.minimum(1, tf.div(maxStep, tf.maximum(len, 1e-30))));
              }
              return tf.sub(x0, tf.mul(grad, tf.reshape(step, bshape)));
            });
          } finally {
            kept?.dispose();
          }
          x0.dispose();
          x0 = next;
        }
        return x0;
      });
    };
  };
}
