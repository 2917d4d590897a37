/**
 * mish and groupNorm (src/nn/layers.ts) use hand-written gradients while a tape records (they are
 * faster on WASM). Values and gradients must equal tfjs autodiff of the textbook formulas, and
 * the inference path (no tape) must give the same values.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { groupNorm, mish } from '../../src/nn/layers.js';
import { ParamStore } from '../../src/nn/params.js';
import { Rng } from '../../src/rng/rng.js';

function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tidy(() => tf.mul(new Rng(seed).normal(shape), scale));
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

const mishRef = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.tanh(tf.softplus(x)));

function groupNormRef(x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, groups: number, eps = 1e-5): tf.Tensor {
  const [b, ...rest] = x.shape;
  const c = rest[rest.length - 1];
  const spatial = rest.slice(0, -1).reduce((p, q) => p * q, 1);
  const r = tf.reshape(x, [b, spatial, groups, c / groups]);
  const { mean, variance } = tf.moments(r, [1, 3], true);
  const y = tf.reshape(tf.div(tf.sub(r, mean), tf.sqrt(tf.add(variance, eps))), x.shape);
  return tf.add(tf.mul(y, gain), bias);
}

describe('mish', () => {
  it('matches x * tanh(softplus(x)) in value (with and without a tape) and gradient, including large |x|', () => {
    const x = tf.concat([randn([200], 1, 3), tf.tensor1d([-30, -12, -5, 0, 5, 12, 30])]);
    const w = randn([207], 2);
    const start = tf.memory().numTensors;
    let taped: Float32Array = new Float32Array(0);
    const g = tf.grad((v: tf.Tensor) => {
      const y = mish(v);
      taped = y.dataSync() as Float32Array;
      return tf.sum(tf.mul(y, w));
    })(x);
    const gRef = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(mishRef(v), w)))(x);
    const inference = tf.tidy(() => mish(x));
    const ref = tf.tidy(() => mishRef(x));
    const refArr = ref.dataSync();
    expect(maxAbsDiff(inference, ref)).toBeLessThan(1e-5);
    for (let i = 0; i < refArr.length; i++) expect(Math.abs(taped[i] - refArr[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(refArr[i])));
    expect(maxAbsDiff(g, gRef)).toBeLessThan(1e-4);
    tf.dispose([g, gRef, inference, ref]);
    expect(tf.memory().numTensors).toBe(start);
    tf.dispose([x, w]);
  });
});

describe('groupNorm', () => {
  for (const shape of [[3, 16, 32], [2, 4, 5, 16]]) {
    it(`matches autodiff of the moments formula for x, gain and bias (${shape.join('x')})`, () => {
      const groups = 8;
      const c = shape[shape.length - 1];
      const store = new ParamStore();
      const gain = store.param('gn/g', [c], 'ones');
      const bias = store.param('gn/b', [c], 'zeros');
      tf.tidy(() => {
        gain.assign(tf.add(1, randn([c], 5, 0.3)) as tf.Tensor1D);
        bias.assign(randn([c], 6, 0.3) as tf.Tensor1D);
      });
      const x = tf.tidy(() => tf.add(randn(shape, 7, 2), 0.5));
      const w = randn(shape, 8);
      const start = tf.memory().numTensors;
      const xVar = tf.variable(x, true, `gn-x-${shape.length}`);
      const ours = tf.variableGrads(() => tf.sum(tf.mul(groupNorm(store, 'gn', xVar, groups), w)) as tf.Scalar, [xVar, gain, bias]);
      const ref = tf.grads((xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => tf.sum(tf.mul(groupNormRef(xi, gi, bi, groups), w)))([x, gain, bias]);
      expect(maxAbsDiff(ours.grads[xVar.name], ref[0])).toBeLessThan(1e-4);
      expect(maxAbsDiff(ours.grads[gain.name], ref[1])).toBeLessThan(1e-3);
      expect(maxAbsDiff(ours.grads[bias.name], ref[2])).toBeLessThan(1e-3);
      const inf = tf.tidy(() => groupNorm(store, 'gn', x, groups));
      const refVal = tf.tidy(() => groupNormRef(x, gain, bias, groups));
      expect(maxAbsDiff(inf, refVal)).toBeLessThan(1e-5);
      tf.dispose([xVar, ours.value, ...Object.values(ours.grads), ...ref, inf, refVal]);
      expect(tf.memory().numTensors).toBe(start);
      tf.dispose([x, w]);
      store.dispose();
    });
  }
});
