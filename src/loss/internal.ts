/** Shared plumbing of the losses: argument checks, masks, per-sample coefficient tensors, stop-gradient. */
import * as tf from '@tensorflow/tfjs-core';
import type { Network } from '../denoiser/denoiser.js';
import type { Rng } from '../rng/rng.js';
import { checkFiniteTensor, describeShape, fail } from '../util/validate.js';

/** Throws unless `net` is a function (x, tFeature, cond?) => Tensor. */
export function checkNetwork(name: string, net: unknown): asserts net is Network {
  if (typeof net !== 'function') fail(`${name}: expected a network function (x, tFeature, cond?) => Tensor, received ${typeof net}`);
}

export function checkRng(rng: unknown): asserts rng is Rng {
  const r = rng as Partial<Rng> | undefined;
  if (!r || typeof r.normal !== 'function' || typeof r.uniform !== 'function') fail('rng: expected an Rng (seeded random source)');
}

/**
 * Validates a training batch: a tensor with a batch axis and at least one data axis, no
 * NaN/Inf (when `finite`), and a conditioning tensor with one row per example.
 */
export function checkBatch(x0: unknown, cond: unknown, finite: boolean): asserts x0 is tf.Tensor {
  if (!(x0 instanceof tf.Tensor)) fail(`x0Batch: expected a tensor [B, ...], received ${typeof x0}`);
  if (x0.rank < 2) fail(`x0Batch: expected shape [B, ...] with at least one data axis, received ${describeShape(x0.shape)}`);
  if (x0.shape[0] < 1) fail('x0Batch: the batch is empty');
  if (x0.dtype !== 'float32') fail(`x0Batch: expected dtype float32, received ${x0.dtype}`);
  if (finite) checkFiniteTensor('x0Batch', x0);
  if (cond !== undefined) {
    if (!(cond instanceof tf.Tensor)) fail(`cond: expected a tensor or undefined, received ${typeof cond}`);
    if (cond.shape[0] !== x0.shape[0]) {
      fail(`cond: expected ${x0.shape[0]} rows (one per example of x0Batch), received shape ${describeShape(cond.shape)}`);
    }
  }
}

/**
 * Checks a per-entry mask against the batch and returns it reshaped to the batch's rank.
 * Accepted shapes: the rank of x0 with each axis equal to x0's or 1 (e.g. [B, N, 1] for
 * [B, N, D] node features), or a prefix of x0's shape (e.g. [B, N]), padded with trailing 1s.
 * Values must be finite and >= 0 (1 = real entry, 0 = padding) with a positive total.
 * The returned tensor is new; the caller disposes it.
 */
export function prepareMask(mask: unknown, x0: tf.Tensor): tf.Tensor {
  if (!(mask instanceof tf.Tensor)) fail(`mask: expected a tensor, received ${typeof mask}`);
  const m: tf.Tensor = mask;
  let shape: number[] = [...m.shape];
  if (shape.length < x0.rank && shape.every((d, i) => d === x0.shape[i])) {
    shape = [...shape, ...Array(x0.rank - shape.length).fill(1)];
  }
  const ok = shape.length === x0.rank && shape.every((d, i) => d === x0.shape[i] || d === 1);
  if (!ok) fail(`mask: expected a shape broadcastable to x0Batch ${describeShape(x0.shape)} (same rank, each axis equal or 1, or a prefix of it), received ${describeShape(mask.shape)}`);
  const data = m.dataSync();
  let total = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v) || v < 0) fail(`mask: expected finite values >= 0 (1 = real entry, 0 = padding), found ${v} at flat index ${i}`);
    total += v;
  }
  if (!(total > 0)) fail('mask: every entry is masked out (the mask sums to 0)');
  return tf.tidy(() => tf.reshape(tf.cast(m, 'float32'), shape));
}

/**
 * Mean of `perEntry` (shape of x0) over real entries: sum(m * e) / sum(broadcast m) with a mask,
 * the plain mean otherwise.
 */
export function maskedMean(perEntry: tf.Tensor, mask: tf.Tensor | undefined): tf.Scalar {
  return tf.tidy(() => {
    if (!mask) return tf.mean(perEntry);
    const m = tf.broadcastTo(mask, perEntry.shape);
    return tf.div(tf.sum(tf.mul(perEntry, m)), tf.sum(m));
  });
}

/** Shape [B, 1, ..., 1] broadcasting a per-sample value against a batch of rank `rank`. */
export function perSampleShape(batch: number, rank: number): number[] {
  return [batch, ...Array(Math.max(0, rank - 1)).fill(1)];
}

/** A [B, 1, ..., 1] float32 tensor from per-sample numbers. */
export function perSample(values: ArrayLike<number>, rank: number): tf.Tensor {
  return tf.tensor(Float32Array.from(values), perSampleShape(values.length, rank));
}

/**
 * Runs `compute` off the gradient tape and returns its result as a constant for
 * differentiation (tfjs has no stop_gradient op). Implemented as a custom-gradient op whose
 * forward pass runs with recording paused (tfjs does not tape the inside of a kernel) and
 * whose gradient is zero, so the target network and teacher cost no tape memory and no
 * backward pass. `anchor` is any tensor not computed from trainable variables (the data
 * batch); it only gives the op an input.
 */
export function noGrad(compute: () => tf.Tensor, anchor: tf.Tensor): tf.Tensor {
  const op = tf.customGrad(((a: tf.Tensor) => ({ value: compute(), gradFunc: () => tf.zerosLike(a) })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(anchor);
}

/** A loss call's paired noise (optional): a finite tensor shaped like the batch. */
export function checkPairedNoise(noise: unknown, x0: tf.Tensor, finite: boolean): void {
  if (noise === undefined) return;
  if (!(noise instanceof tf.Tensor)) fail(`noise: expected a tensor shaped like x0Batch, received ${typeof noise}`);
  if (noise.shape.length !== x0.shape.length || (noise.shape as number[]).some((d: number, i: number) => d !== x0.shape[i])) fail(`noise: expected shape ${describeShape(x0.shape)} (like x0Batch), received ${describeShape(noise.shape)}`);
  if (finite) checkFiniteTensor('noise', noise);
}

/** Throws unless `out` (what `name` returned) is a tensor with the batch's shape. */
export function checkOutputShape(name: string, out: unknown, x: tf.Tensor): void {
  if (!(out instanceof tf.Tensor)) fail(`${name}: must return a tensor, returned ${typeof out}`);
  const shape: number[] = [...(out as tf.Tensor).shape];
  if (shape.length !== x.rank || shape.some((d, i) => d !== x.shape[i])) {
    fail(`${name}: returned shape ${describeShape(shape)}, expected the batch's shape ${describeShape(x.shape)}`);
  }
}

/**
 * The common prologue of every per-batch loss call: validate network, batch and Rng, and resolve
 * the mask (the call's mask replaces the options' one). Returns the prepared mask, if any.
 */
export function beginLossCall(net: unknown, x0Batch: tf.Tensor, rng: unknown, cond: tf.Tensor | undefined, mask: tf.Tensor | undefined, defaultMask: tf.Tensor | undefined, finite: boolean): tf.Tensor | undefined {
  checkNetwork('net', net);
  checkBatch(x0Batch, cond, finite);
  checkRng(rng);
  const m = mask ?? defaultMask;
  return m !== undefined ? prepareMask(m, x0Batch) : undefined;
}
