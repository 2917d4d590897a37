/**
 * The replaced gradients of Sum and Mean (src/backend/registerGradients.ts) give tfjs's own
 * values bit for bit: dy spread over x's shape (and divided by the reduced size for Mean).
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { spreadGradients } from '../../src/backend/registerGradients.js';

function bits(t: tf.Tensor): number[] {
  return Array.from(new Uint32Array((t.dataSync() as Float32Array).slice().buffer));
}

describe('Sum / Mean gradients', () => {
  const shape = [3, 5, 4];
  const x = tf.tensor3d(Array.from({ length: 60 }, (_, i) => Math.sin(i) * 3), shape as [number, number, number]);
  const cases: { axis?: number | number[]; keepDims: boolean }[] = [{ keepDims: false }, { axis: 0, keepDims: false }, { axis: 1, keepDims: true }, { axis: [0, 2], keepDims: false }, { axis: -1, keepDims: true }];
  for (const { axis, keepDims } of cases) {
    it(`axis ${JSON.stringify(axis)}, keepDims ${keepDims}: same bits as dy * ones (/ n)`, () => {
      tf.tidy(() => {
        const outShape = tf.sum(x, axis, keepDims).shape;
        const dy = tf.tensor(Array.from({ length: outShape.reduce((a, b) => a * b, 1) }, (_, i) => 0.3 + Math.cos(7 * i)), outShape);
        const gSum = tf.grad((v: tf.Tensor) => tf.sum(v, axis, keepDims))(x, dy);
        const gMean = tf.grad((v: tf.Tensor) => tf.mean(v, axis, keepDims))(x, dy);
        const axes = tf.util.parseAxisParam(axis ?? null as unknown as number, shape);
        const expanded = shape.map((d, i) => (axes.includes(i) ? 1 : d));
        const n = axes.reduce((p, a) => p * shape[a], 1);
        const ref = tf.mul(tf.reshape(dy, expanded), tf.ones(shape, 'float32'));
        expect(gSum.shape).toEqual(shape);
        expect(bits(gSum)).toEqual(bits(ref));
        expect(bits(gMean)).toEqual(bits(tf.div(ref, n)));
      });
    });
  }
  it('are the registered gradients (not tfjs\'s dy * ones(x.shape))', () => {
    expect(tf.getGradient('Sum')).toBe(spreadGradients.Sum);
    expect(tf.getGradient('Mean')).toBe(spreadGradients.Mean);
  });
  it('leaves no tensors behind', () => {
    const before = tf.memory().numTensors;
    const g = tf.grad((v: tf.Tensor) => tf.mean(tf.square(v)))(x);
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
