/**
 * Conditional flow matching (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2023):
 *   (x0, eps) ~ coupling,  t ~ p(t),  x_t = a(t) x0 + s(t) eps + sigmaMin z,
 *   u_t = a'(t) x0 + s'(t) eps,        loss = mean || v_hat(x_t, t) - u_t ||^2
 * On rectified flow u_t = eps - x0. The velocity comes from the path's derivatives, never by
 * hand. sigmaMin > 0 is torchcfm's constant-width Gaussian tube around the conditional path
 * (the target is unchanged). A network predicting something other than 'velocity' is
 * converted to velocity at x_t, so the same loss trains x0/eps/v networks on any path.
 */
import * as tf from '@tensorflow/tfjs-core';
import { predictBatch, type Parameterization } from '../denoiser/denoiser.js';
import { coefsForBatch } from '../predict/coefs.js';
import { convert } from '../predict/convert.js';
import { checkNumber, fail } from '../util/validate.js';
import { independentCoupling, type Coupling } from './coupling.js';
import { checkParam, outputSpace, type DiffusionLoss } from './denoising.js';
import { beginLossCall, checkOutputShape, checkPairedNoise, maskedMean } from './internal.js';
import { checkTimeSampling, sampleTimes, type TimeSampling, type TimeSamplingOptions } from './timeSampling.js';

export interface FlowMatchingLossOptions extends TimeSamplingOptions {
  readonly param: Parameterization;
  /** Pairs data with noise (default: independent). */
  readonly coupling?: Coupling;
  /** Std of the Gaussian tube around the conditional path (default 0). */
  readonly sigmaMin?: number;
  /** p(t) (default 'uniform' on [tMin, tMax]). */
  readonly sampleT?: TimeSampling;
  /** Per-entry mask (1 real, 0 padding); a mask passed to the loss call replaces it. */
  readonly mask?: tf.Tensor;
  /** Check the batch for NaN/Inf on every call (default true). */
  readonly checkFinite?: boolean;
}

export function flowMatchingLoss(opts: FlowMatchingLossOptions): DiffusionLoss {
  if (!opts || typeof opts !== 'object') fail('flowMatchingLoss: expected an options object { param, coupling?, sigmaMin? }');
  const param = checkParam(opts.param);
  const path = param.path;
  const prediction = outputSpace(param);
  const coupling = opts.coupling ?? independentCoupling;
  if (typeof coupling !== 'function') fail('coupling: expected a function (x0, eps, rng) => { x0, eps }');
  const sigmaMin = checkNumber('sigmaMin', opts.sigmaMin ?? 0, { min: 0 });
  const sampleT = checkTimeSampling('sampleT', opts.sampleT ?? 'uniform');
  if (opts.mask !== undefined && !(opts.mask instanceof tf.Tensor)) fail(`mask: expected a tensor, received ${typeof opts.mask}`);
  const finite = opts.checkFinite ?? true;

  return (net, x0Batch, rng, cond, mask, given) => {
    const maskT = beginLossCall(net, x0Batch, rng, cond, mask, opts.mask, finite);
    try {
      checkPairedNoise(given, x0Batch, finite);
      // Paired noise is the coupling already; re-coupling it would break the pairs.
      if (given !== undefined && coupling !== independentCoupling) fail('noise: paired noise cannot be combined with a coupling (use the default independent coupling)');
      const n = x0Batch.shape[0];
      const t = sampleTimes(sampleT, path, n, rng, opts);
      return tf.tidy(() => {
        const c = coefsForBatch(path, t, x0Batch.rank);
        let noise = given ?? rng.normal(x0Batch.shape);
        if (maskT) noise = tf.mul(noise, maskT);
        const pair = coupling(x0Batch, noise, rng);
        if (!pair || !(pair.x0 instanceof tf.Tensor) || !(pair.eps instanceof tf.Tensor)) fail('coupling: must return { x0, eps } tensors');
        checkOutputShape('coupling', pair.x0, x0Batch);
        checkOutputShape('coupling', pair.eps, x0Batch);
        const x0 = pair.x0;
        const eps = maskT ? tf.mul(pair.eps, maskT) : pair.eps;
        let xt = tf.add(tf.mul(x0, c.a), tf.mul(eps, c.s));
        if (sigmaMin > 0) {
          let z = rng.normal(x0Batch.shape);
          if (maskT) z = tf.mul(z, maskT);
          xt = tf.add(xt, tf.mul(z, sigmaMin));
        }
        const u = tf.add(tf.mul(x0, c.da), tf.mul(eps, c.ds));
        const out = predictBatch(net, param, xt, t, cond);
        checkOutputShape('net', out, x0Batch);
        const pred = prediction === 'velocity' ? out : convert(out, prediction, 'velocity', xt, c);
        return maskedMean(tf.square(tf.sub(pred, u)), maskT);
      });
    } finally {
      maskT?.dispose();
    }
  };
}
