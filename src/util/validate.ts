/** Input validation helpers: every message names the argument, the expectation and what was received. */
import * as tf from '@tensorflow/tfjs-core';

export class ValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ValidationError';
  }
}

export function fail(message: string): never {
  throw new ValidationError(message);
}

/**
 * Input data that cannot be used: a file that is missing, truncated, corrupt or in the wrong
 * format. Like ValidationError, it is the caller's input that is wrong, not the library, so the
 * command line prints it as one line without a stack trace. Readers subclass it (McapError).
 */
export class DataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataError';
  }
}

export function failData(message: string): never {
  throw new DataError(message);
}

export function describeShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Check a tensor's rank and (optionally) dimensions; `null` entries match any size. */
export function checkShape(name: string, t: tf.Tensor, expected: readonly (number | null)[]): void {
  if (!(t instanceof tf.Tensor)) fail(`${name}: expected a tensor, received ${typeof t}`);
  const ok = t.shape.length === expected.length && expected.every((d, i) => d === null || d === t.shape[i]);
  if (!ok) {
    const exp = `[${expected.map((d) => (d === null ? '*' : String(d))).join(', ')}]`;
    fail(`${name}: expected shape ${exp}, received ${describeShape(t.shape)}`);
  }
}

export function checkRankAtLeast(name: string, t: tf.Tensor, rank: number): void {
  if (!(t instanceof tf.Tensor)) fail(`${name}: expected a tensor, received ${typeof t}`);
  if (t.shape.length < rank) fail(`${name}: expected rank >= ${rank}, received shape ${describeShape(t.shape)}`);
}

export function checkSameShape(nameA: string, a: tf.Tensor, nameB: string, b: tf.Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    fail(`${nameB}: expected the shape of ${nameA} ${describeShape(a.shape)}, received ${describeShape(b.shape)}`);
  }
}

/** Throws when the tensor holds NaN or Inf (reads the data synchronously: use at boundaries, not in inner loops). */
export function checkFiniteTensor(name: string, t: tf.Tensor): void {
  const data = t.dataSync();
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      fail(`${name}: contains a non-finite value (${data[i]}) at flat index ${i}`);
    }
  }
}

export function checkFiniteArray(name: string, a: ArrayLike<number>): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) fail(`${name}: contains a non-finite value (${a[i]}) at index ${i}`);
  }
}

export function checkNumber(name: string, v: unknown, opts: { min?: number; max?: number; integer?: boolean } = {}): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${name}: expected a finite number, received ${String(v)}`);
  if (opts.integer && !Number.isInteger(v)) fail(`${name}: expected an integer, received ${v}`);
  if (opts.min !== undefined && v < opts.min) fail(`${name}: expected >= ${opts.min}, received ${v}`);
  if (opts.max !== undefined && v > opts.max) fail(`${name}: expected <= ${opts.max}, received ${v}`);
  return v;
}

export function checkOneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    fail(`${name}: unknown value '${String(v)}' (expected one of ${allowed.join(', ')})`);
  }
  return v as T;
}
