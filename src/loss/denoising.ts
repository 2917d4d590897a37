/**
 * The denoising (score-matching) loss: E_t E_eps [ w(t) || T_hat(x_t, t) - T(x0, eps, t) ||^2 ]
 * with x_t = a(t) x0 + s(t) eps, the network's output converted to the target space T when it
 * predicts something else, and w(t) from `lossWeight` (see weighting.ts for the formulas).
 * With a mask the mean runs over real entries only: sum(m w err^2) / sum(m).
 */
import * as tf from '@tensorflow/tfjs-core';
import { predictBatch, type Network, type Parameterization } from '../denoiser/denoiser.js';
import { coefsForBatch } from '../predict/coefs.js';
import { convert, fromX0Eps, PREDICTIONS, type Prediction } from '../predict/convert.js';
import type { Rng } from '../rng/rng.js';
import { checkNumber, checkOneOf, fail } from '../util/validate.js';
import { beginLossCall, checkPairedNoise, checkOutputShape, maskedMean, perSample } from './internal.js';
import { checkTimeSampling, sampleTimes, type TimeSampling, type TimeSamplingOptions } from './timeSampling.js';
import { LOSS_TARGETS, lossWeight, WEIGHTINGS, type LossTarget, type Weighting } from './weighting.js';

/**
 * A training loss over a batch of clean data; differentiable w.r.t. the network's variables.
 * `noise`, when given, is the Gaussian noise paired with each example (same shape as x0Batch),
 * used instead of fresh draws from `rng`: e.g. reflow's (noise, ODE(noise)) pairs (Liu et al.
 * 2023), where the pairing is the point.
 */
export type DiffusionLoss = (net: Network, x0Batch: tf.Tensor, rng: Rng, cond?: tf.Tensor, mask?: tf.Tensor, noise?: tf.Tensor) => tf.Scalar;

export interface DenoisingLossOptions extends TimeSamplingOptions {
  readonly param: Parameterization;
  /** Space the squared error is measured in (default: the parameterisation's prediction; 'eps' for 'score'). */
  readonly target?: LossTarget;
  /** Default 'none' (plain MSE of the target). */
  readonly weighting?: Weighting;
  /** min-SNR gamma (default 5). */
  readonly gamma?: number;
  /** sigma_data of the 'edm' weighting (default: the path's). */
  readonly sigmaData?: number;
  /** p(t) (default 'uniform'). */
  readonly sampleT?: TimeSampling;
  /**
   * Per-entry mask (1 real, 0 padding), broadcastable to the batch; a mask passed to the loss
   * call replaces it. The noise is masked too, so padded entries of x_t stay a x0.
   */
  readonly mask?: tf.Tensor;
  /** Check the batch for NaN/Inf on every call (default true; reads the batch). */
  readonly checkFinite?: boolean;
}

/** The prediction space of a parameterisation's (preconditioned) network output. */
export function outputSpace(param: Parameterization): Prediction {
  if ((param.precond ?? 'none') === 'edm') return 'x0';
  return checkOneOf('param.prediction', param.prediction, PREDICTIONS);
}

export function checkParam(param: unknown): Parameterization {
  const p = param as Partial<Parameterization> | undefined;
  if (!p || typeof p !== 'object') fail('param: expected a Parameterization { path, prediction, precond? }');
  if (!p.path || typeof p.path.alpha !== 'function') fail('param.path: expected a NoisePath');
  checkOneOf('param.precond', p.precond ?? 'none', ['none', 'edm']);
  checkOneOf('param.prediction', p.prediction, PREDICTIONS);
  return p as Parameterization;
}

export function denoisingLoss(opts: DenoisingLossOptions): DiffusionLoss {
  if (!opts || typeof opts !== 'object') fail('denoisingLoss: expected an options object { param, target?, weighting?, sampleT?, mask? }');
  const param = checkParam(opts.param);
  const path = param.path;
  const prediction = outputSpace(param);
  const target = checkOneOf('target', opts.target ?? (prediction === 'score' ? 'eps' : prediction), LOSS_TARGETS);
  const weighting = checkOneOf('weighting', opts.weighting ?? 'none', WEIGHTINGS);
  const gamma = checkNumber('gamma', opts.gamma ?? 5, { min: 0 });
  const sigmaData = checkNumber('sigmaData', opts.sigmaData ?? path.sigmaData, { min: 1e-12 });
  const sampleT = checkTimeSampling('sampleT', opts.sampleT ?? 'uniform');
  if (opts.mask !== undefined && !(opts.mask instanceof tf.Tensor)) fail(`mask: expected a tensor, received ${typeof opts.mask}`);
  const finite = opts.checkFinite ?? true;

  return (net, x0Batch, rng, cond, mask, noise) => {
    const maskT = beginLossCall(net, x0Batch, rng, cond, mask, opts.mask, finite);
    try {
      checkPairedNoise(noise, x0Batch, finite);
      const n = x0Batch.shape[0];
      const rank = x0Batch.rank;
      const t = sampleTimes(sampleT, path, n, rng, opts);
      const w = Array.from(t, (ti) => lossWeight(weighting, target, path, ti, { gamma, sigmaData }));
      return tf.tidy(() => {
        const c = coefsForBatch(path, t, rank);
        let eps = noise ?? rng.normal(x0Batch.shape);
        if (maskT) eps = tf.mul(eps, maskT);
        const xt = tf.add(tf.mul(x0Batch, c.a), tf.mul(eps, c.s));
        const out = predictBatch(net, param, xt, t, cond);
        checkOutputShape('net', out, x0Batch);
        const pred = prediction === target ? out : convert(out, prediction, target, xt, c);
        const tgt = fromX0Eps(x0Batch, eps, target, c);
        const err = tf.mul(tf.square(tf.sub(pred, tgt)), perSample(w, rank));
        return maskedMean(err, maskT);
      });
    } finally {
      maskT?.dispose();
    }
  };
}
