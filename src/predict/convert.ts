/**
 * Conversions between what a network predicts and what samplers need.
 *
 * Given x_t = a x0 + s eps with time derivatives a' and s':
 *   eps:      eps
 *   x0:       x0
 *   v:        a eps - s x0          (Salimans & Ho 2022, generalised to any path)
 *   score:    -eps / s              (grad log p_t(x_t))
 *   velocity: a' x0 + s' eps        (probability-flow ODE drift dx/dt)
 * Every conversion is affine in (x_t, prediction) and goes through (x0, eps).
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkOneOf } from '../util/validate.js';

export type Prediction = 'eps' | 'x0' | 'v' | 'score' | 'velocity';
export const PREDICTIONS: readonly Prediction[] = ['eps', 'x0', 'v', 'score', 'velocity'];

/** A scalar or a tensor broadcastable against x (e.g. per-sample coefficients of shape [B, 1, ...]). */
export type Coef = number | tf.Tensor;

/** Path coefficients at one time: alpha, sigma and their time derivatives. */
export interface PathCoefs {
  readonly a: Coef;
  readonly s: Coef;
  readonly da: Coef;
  readonly ds: Coef;
}

const mul = (c: Coef, x: tf.Tensor): tf.Tensor => (typeof c === 'number' ? tf.mul(x, c) : tf.mul(x, c));
const lin = (c1: Coef, x1: tf.Tensor, c2: Coef, x2: tf.Tensor): tf.Tensor => tf.add(mul(c1, x1), mul(c2, x2));
const div = (x: tf.Tensor, c: Coef): tf.Tensor => tf.div(x, c);

/** (x0, eps) implied by a prediction at x_t. */
export function toX0Eps(out: tf.Tensor, kind: Prediction, xt: tf.Tensor, c: PathCoefs): { x0: tf.Tensor; eps: tf.Tensor } {
  checkOneOf('prediction', kind, PREDICTIONS);
  return tf.tidy(() => {
    const { a, s, da, ds } = c;
    let x0: tf.Tensor;
    let eps: tf.Tensor;
    switch (kind) {
      case 'x0':
        x0 = out;
        eps = div(tf.sub(xt, mul(a, out)), s);
        break;
      case 'eps':
        eps = out;
        x0 = div(tf.sub(xt, mul(s, out)), a);
        break;
      case 'score':
        eps = tf.neg(mul(s, out));
        x0 = div(tf.sub(xt, mul(s, eps)), a);
        break;
      case 'v': {
        // x0 = (a x - s v)/(a^2 + s^2), eps = (s x + a v)/(a^2 + s^2)
        const n2 = typeof a === 'number' && typeof s === 'number' ? a * a + s * s : tf.add(tf.square(a), tf.square(s));
        x0 = div(lin(a, xt, typeof s === 'number' ? -s : tf.neg(s), out), n2);
        eps = div(lin(s, xt, a, out), n2);
        break;
      }
      case 'velocity': {
        // x = a x0 + s eps, u = a' x0 + s' eps  =>  solve the 2x2 system
        const det = typeof a === 'number' && typeof s === 'number' && typeof da === 'number' && typeof ds === 'number'
          ? a * ds - da * s
          : tf.sub(tf.mul(a, ds), tf.mul(da, s));
        x0 = div(lin(ds, xt, typeof s === 'number' ? -s : tf.neg(s), out), det);
        eps = div(lin(a, out, typeof da === 'number' ? -da : tf.neg(da), xt), det);
        break;
      }
    }
    return { x0, eps };
  });
}

/** The given prediction expressed from (x0, eps). */
export function fromX0Eps(x0: tf.Tensor, eps: tf.Tensor, kind: Prediction, c: PathCoefs): tf.Tensor {
  checkOneOf('prediction', kind, PREDICTIONS);
  return tf.tidy(() => {
    const { a, s, da, ds } = c;
    switch (kind) {
      case 'x0':
        return x0.clone();
      case 'eps':
        return eps.clone();
      case 'score':
        return tf.neg(div(eps, s));
      case 'v':
        return tf.sub(mul(a, eps), mul(s, x0));
      case 'velocity':
        return lin(da, x0, ds, eps);
    }
  });
}

/** Convert any prediction into any other at x_t. */
export function convert(out: tf.Tensor, from: Prediction, to: Prediction, xt: tf.Tensor, c: PathCoefs): tf.Tensor {
  return tf.tidy(() => {
    const { x0, eps } = toX0Eps(out, from, xt, c);
    return fromX0Eps(x0, eps, to, c);
  });
}

/** Probability-flow ODE velocity from an x0 estimate: u = a' x0 + s' (x - a x0) / s. */
export function velocityFromX0(x0: tf.Tensor, xt: tf.Tensor, c: PathCoefs): tf.Tensor {
  return tf.tidy(() => {
    const eps = div(tf.sub(xt, mul(c.a, x0)), c.s);
    return lin(c.da, x0, c.ds, eps);
  });
}

/** Score from an x0 estimate: (a x0 - x) / s^2. */
export function scoreFromX0(x0: tf.Tensor, xt: tf.Tensor, c: PathCoefs): tf.Tensor {
  return tf.tidy(() => div(tf.sub(mul(c.a, x0), xt), typeof c.s === 'number' ? c.s * c.s : tf.square(c.s)));
}

