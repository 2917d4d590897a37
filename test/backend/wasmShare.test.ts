/**
 * Copy-free Identity and same-dtype Cast on the WASM backend (src/backend/wasmShare.ts): a
 * clone shares storage and counts the reference, so the optimiser no longer writes through a
 * shared buffer; gradients are bit-identical with the stock copying kernels; nothing leaks.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '../../src/backend/backend.js';
import { installWasmShare, uninstallWasmShare, wasmShareInstalled } from '../../src/backend/wasmShare.js';
import { hostView, writableHostView } from '../../src/train/hostMemory.js';

beforeAll(async () => {
  await setBackend('wasm');
});

function gradsOfMlp(): Float32Array[] {
  return tf.tidy(() => {
    const x = tf.tensor2d(Array.from({ length: 6 * 8 }, (_, i) => Math.sin(i)), [6, 8]);
    const w1 = tf.variable(tf.tensor2d(Array.from({ length: 8 * 8 }, (_, i) => Math.cos(0.3 * i)), [8, 8]));
    const w2 = tf.variable(tf.tensor2d(Array.from({ length: 8 * 4 }, (_, i) => Math.sin(0.7 * i + 1)), [8, 4]));
    const { grads } = tf.variableGrads(() => tf.sum(tf.square(tf.matMul(tf.relu(tf.matMul(x, w1)), w2))) as tf.Scalar, [w1, w2]);
    const out = [grads[w1.name].dataSync().slice() as Float32Array, grads[w2.name].dataSync().slice() as Float32Array];
    tf.dispose([w1, w2]);
    return out;
  });
}

describe('wasm copy-free Identity / Cast', () => {
  it('is installed by setBackend', () => {
    expect(wasmShareInstalled()).toBe(true);
  });

  it('a clone shares storage until one of them is disposed; values stay right', () => {
    const a = tf.tensor1d([1, 2, 3, 4]);
    expect(writableHostView(a)).toBeDefined();
    const b = tf.clone(a);
    expect(hostView(b)!.byteOffset).toBe(hostView(a)!.byteOffset);
    // Shared: neither may be written in place now.
    expect(writableHostView(a)).toBeUndefined();
    a.dispose();
    expect(Array.from(b.dataSync())).toEqual([1, 2, 3, 4]);
    expect(writableHostView(b)).toBeDefined();
    b.dispose();
  });

  it('same-dtype Cast shares; a dtype change still converts', () => {
    const a = tf.tensor1d([1.5, -2.5, 3]);
    const same = tf.cast(a, 'float32');
    const ints = tf.cast(a, 'int32');
    expect(Array.from(same.dataSync())).toEqual([1.5, -2.5, 3]);
    expect(Array.from(ints.dataSync())).toEqual([1, -2, 3]);
    expect(ints.dtype).toBe('int32');
    tf.dispose([a, same, ints]);
  });

  it('gradients are bit-identical with the stock copying kernels, and nothing leaks', () => {
    const before = tf.memory().numTensors;
    const shared = gradsOfMlp();
    expect(tf.memory().numTensors).toBe(before);
    uninstallWasmShare();
    try {
      expect(wasmShareInstalled()).toBe(false);
      const copied = gradsOfMlp();
      for (let i = 0; i < shared.length; i++) expect(Array.from(shared[i])).toEqual(Array.from(copied[i]));
    } finally {
      installWasmShare();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
