import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { pathFromSpec, PATH_KINDS, type NoisePath } from '../../src/path/index.js';
import {
  coefsAt,
  coefsForBatch,
  convert,
  fromX0Eps,
  PREDICTIONS,
  scoreFromX0,
  toX0Eps,
  velocityFromX0,
  type Prediction,
} from '../../src/predict/index.js';
import { Rng } from '../../src/rng/rng.js';

/** Three times per path: early, middle and late in its range. */
function timesFor(p: NoisePath): number[] {
  if (p.kind === 'edm') return [0.05, 1, 20];
  return [0.1, 0.5, 0.9].map((f) => f * p.tMax);
}

/** Every prediction computed directly from known x0 and eps (the closed forms). */
function closedForms(x0: tf.Tensor, eps: tf.Tensor, c: { a: number; s: number; da: number; ds: number }): Record<Prediction, tf.Tensor> {
  return {
    eps: eps.clone(),
    x0: x0.clone(),
    v: tf.sub(tf.mul(eps, c.a), tf.mul(x0, c.s)),
    score: tf.div(eps, -c.s),
    velocity: tf.add(tf.mul(x0, c.da), tf.mul(eps, c.ds)),
  };
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function maxAbs(a: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(a)).dataSync()[0]);
}

describe.each(PATH_KINDS)('prediction conversions on %s', (kind) => {
  const path = pathFromSpec(kind);

  it.each(timesFor(path))('agree with closed forms and round-trip for every pair at t = %f', (t) => {
    const rng = new Rng(11);
    const c = coefsAt(path, t) as { a: number; s: number; da: number; ds: number };
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x0 = rng.normal([64, 3]);
      const eps = rng.normal([64, 3]);
      const xt = tf.add(tf.mul(x0, c.a), tf.mul(eps, c.s));
      const y = closedForms(x0, eps, c);
      for (const from of PREDICTIONS) {
        for (const to of PREDICTIONS) {
          const got = convert(y[from], from, to, xt, c);
          // float32: errors scale with the magnitudes involved and with 1/alpha, 1/sigma amplification.
          const scale = 1 + maxAbs(y[to]) + maxAbs(xt) * (1 / Math.min(c.a, 1) + 1 / Math.min(c.s, 1));
          const err = maxAbsDiff(got, y[to]);
          expect(err, `${from} -> ${to} (t=${t})`).toBeLessThan(2e-6 * scale);
          const back = convert(got, to, from, xt, c);
          const scaleBack = 1 + maxAbs(y[from]) + maxAbs(xt) * (1 / Math.min(c.a, 1) + 1 / Math.min(c.s, 1));
          expect(maxAbsDiff(back, y[from]), `${from} -> ${to} -> ${from} (t=${t})`).toBeLessThan(4e-6 * scaleBack);
        }
      }
      // The sampler-side helpers agree with the closed forms too.
      expect(maxAbsDiff(velocityFromX0(x0, xt, c), y.velocity)).toBeLessThan(2e-6 * (1 + maxAbs(y.velocity) + maxAbs(xt) / c.s));
      expect(maxAbsDiff(scoreFromX0(x0, xt, c), y.score)).toBeLessThan(2e-6 * (1 + maxAbs(y.score) + maxAbs(xt) / (c.s * c.s)));
      const { x0: x0b, eps: epsb } = toX0Eps(y.v, 'v', xt, c);
      expect(maxAbsDiff(x0b, x0)).toBeLessThan(1e-4);
      expect(maxAbsDiff(epsb, eps)).toBeLessThan(1e-4);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('works with per-sample coefficient tensors (coefsForBatch)', () => {
    const ts = timesFor(path);
    const rng = new Rng(3);
    tf.tidy(() => {
      const cb = coefsForBatch(path, ts, 2);
      const x0 = rng.normal([ts.length, 4]);
      const eps = rng.normal([ts.length, 4]);
      const xt = tf.add(tf.mul(x0, cb.a), tf.mul(eps, cb.s));
      const y = fromX0Eps(x0, eps, 'velocity', cb);
      const back = convert(y, 'velocity', 'x0', xt, cb);
      expect(maxAbsDiff(back, x0)).toBeLessThan(1e-3);
      // Row i agrees with scalar coefficients at ts[i].
      const rows = tf.split(y, ts.length);
      ts.forEach((t, i) => {
        const c = coefsAt(path, t) as { da: number; ds: number };
        const ref = tf.add(tf.mul(tf.slice(x0, [i, 0], [1, 4]), c.da), tf.mul(tf.slice(eps, [i, 0], [1, 4]), c.ds));
        expect(maxAbsDiff(rows[i], ref)).toBeLessThan(1e-5 * (1 + maxAbs(ref)));
      });
    });
  });
});

describe('prediction validation', () => {
  it('rejects unknown prediction names with a message naming the argument', () => {
    const p = pathFromSpec('vp-linear');
    const c = coefsAt(p, 0.5);
    const x = tf.zeros([2, 2]);
    expect(() => convert(x, 'noise' as Prediction, 'x0', x, c)).toThrow(/prediction: unknown value 'noise'/);
    expect(() => convert(x, 'x0', 'flow' as Prediction, x, c)).toThrow(/prediction: unknown value 'flow'/);
    x.dispose();
  });
});
