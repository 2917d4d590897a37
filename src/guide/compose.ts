/** Composition of guidance terms and of projection hooks. */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { Projection } from '../sample/types.js';
import { fail } from '../util/validate.js';
import type { DenoiserWrapper } from './types.js';

/**
 * Applies guidance terms to a denoiser: guide(den, a, b) = b(a(den)). The first term is
 * innermost, so a later x0-space gradient term differentiates through the earlier ones
 * (e.g. put `inpaint(...).denoiser` first to guide the inpainted estimate). Each term keeps
 * its own scale and schedule.
 */
export function guide(den: Denoiser, ...terms: DenoiserWrapper[]): Denoiser {
  if (typeof den !== 'function') fail('den: expected a denoiser (x, t) => x0');
  terms.forEach((w, i) => {
    if (typeof w !== 'function') fail(`terms[${i}]: expected a guidance term (den) => den, received ${typeof w}`);
  });
  return terms.reduce<Denoiser>((d, w) => w(d), den);
}

/** Applies projections left to right: composeProjections(p, q)(x, t) = q(p(x, t), t). */
export function composeProjections(...ps: Projection[]): Projection {
  ps.forEach((p, i) => {
    if (typeof p !== 'function') fail(`projections[${i}]: expected a projection (x, t) => x, received ${typeof p}`);
  });
  return (x, t) =>
    tf.tidy(() => {
      let y = x;
      for (const p of ps) y = p(y, t);
      // A new tensor in every case (the sampler disposes its input).
      return y === x ? x.clone() : y;
    });
}
