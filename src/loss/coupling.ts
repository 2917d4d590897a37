/**
 * Couplings pair each data example with a noise draw before the flow-matching regression.
 * A coupling keeps x0's row order (so conditioning stays aligned) and reorders the noise.
 *   independentCoupling: the product coupling (plain conditional flow matching, I-CFM).
 *   otCoupling: minibatch optimal transport (OT-CFM, Tong et al. 2023; torchcfm's
 *     OTPlanSampler) under the squared Euclidean cost ||x0_i - eps_j||^2, by exact assignment
 *     (Hungarian) or entropic OT (Sinkhorn) rounded to a one-to-one pairing (greedy on the
 *     plan, then a few passes of pairwise exchanges on the cost).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng/rng.js';
import { checkNumber, checkOneOf, checkSameShape, fail } from '../util/validate.js';
import { hungarian, planToPairing, refinePairing, sinkhorn, squaredDistances, type PairingRule } from './ot.js';

/** (x0, eps, rng) -> paired { x0, eps }; returns new tensors (the caller disposes them). */
export type Coupling = (x0: tf.Tensor, eps: tf.Tensor, rng: Rng) => { x0: tf.Tensor; eps: tf.Tensor };

export const independentCoupling: Coupling = (x0, eps) => ({ x0: x0.clone(), eps: eps.clone() });

export type OtMethod = 'auto' | 'exact' | 'sinkhorn';

export interface OtCouplingOptions {
  /** 'auto' (default): exact up to `exactMaxBatch` examples, Sinkhorn above. */
  readonly method?: OtMethod;
  /** Entropic regularisation relative to the mean pairwise cost (default 0.05). */
  readonly epsilon?: number;
  /** Sinkhorn iterations (default 100; stops earlier at relative marginal error 1e-4). */
  readonly iters?: number;
  /**
   * Largest batch solved exactly by 'auto' (default 512: in plain JS the O(n^3) assignment
   * still beats 100 O(n^2) log-domain Sinkhorn sweeps there, about 0.3 s against 0.6 s).
   */
  readonly exactMaxBatch?: number;
  /** Rounding of the Sinkhorn plan to a pairing (default 'argmax'). */
  readonly pairing?: PairingRule;
  /** Pairwise-exchange passes applied to the rounded Sinkhorn pairing (default 3; 0 = none). */
  readonly refine?: number;
}

/** The pairing itself: perm[i] is the noise row paired with data row i. Exposed for tests and tools. */
export function otPairing(x0: tf.Tensor, eps: tf.Tensor, rng: Rng | undefined, opts: OtCouplingOptions = {}): number[] {
  checkSameShape('x0', x0, 'eps', eps);
  const method = checkOneOf('method', opts.method ?? 'auto', ['auto', 'exact', 'sinkhorn']);
  const epsRel = checkNumber('epsilon', opts.epsilon ?? 0.05, { min: Number.MIN_VALUE });
  const iters = checkNumber('iters', opts.iters ?? 100, { integer: true, min: 1 });
  const exactMax = checkNumber('exactMaxBatch', opts.exactMaxBatch ?? 512, { integer: true, min: 1 });
  const passes = checkNumber('refine', opts.refine ?? 3, { integer: true, min: 0 });
  const n = x0.shape[0];
  const d = x0.size / Math.max(1, n);
  const cost = squaredDistances(x0.dataSync(), n, eps.dataSync(), n, d);
  const exact = method === 'exact' || (method === 'auto' && n <= exactMax);
  if (exact) return hungarian(cost);
  let mean = 0;
  for (const row of cost) for (let j = 0; j < n; j++) mean += row[j];
  mean /= n * n;
  const { plan } = sinkhorn(cost, epsRel * Math.max(mean, 1e-12), iters, { tol: 1e-4 });
  const rule = opts.pairing ?? 'argmax';
  if (rule === 'sample' && !rng) fail("otCoupling: pairing 'sample' needs an rng");
  return refinePairing(cost, planToPairing(plan, rule, rng), passes);
}

export function otCoupling(opts: OtCouplingOptions = {}): Coupling {
  checkOneOf('method', opts.method ?? 'auto', ['auto', 'exact', 'sinkhorn']);
  checkOneOf('pairing', opts.pairing ?? 'argmax', ['argmax', 'sample']);
  return (x0, eps, rng) => {
    const perm = otPairing(x0, eps, rng, opts);
    return tf.tidy(() => ({ x0: x0.clone(), eps: tf.gather(eps, tf.tensor1d(perm, 'int32')) }));
  };
}
