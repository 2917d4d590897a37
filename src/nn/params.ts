/**
 * Named parameters. Model-building code asks the store for a parameter by name: the first call
 * creates it (seeded initialiser), later calls return it. The same building code therefore works
 * over the live weights, over an EMA copy, or over weights loaded from a checkpoint.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng/rng.js';
import { describeShape, fail } from '../util/validate.js';

export type Init = 'glorot' | 'he' | 'zeros' | 'ones' | { normal: number };

export class ParamStore {
  private readonly vars = new Map<string, tf.Variable>();
  private readonly frozen = new Set<string>();

  constructor(private readonly rng?: Rng, readonly trainable = true) {}

  /** Get or create a parameter. Creating requires the store to have an Rng (or a constant initialiser). */
  param(name: string, shape: readonly number[], init: Init = 'glorot', opts: { frozen?: boolean } = {}): tf.Variable {
    if (opts.frozen) this.frozen.add(name);
    const existing = this.vars.get(name);
    if (existing) {
      if (existing.shape.length !== shape.length || existing.shape.some((d, i) => d !== shape[i])) {
        fail(`parameter '${name}': expected shape ${describeShape(shape)}, stored ${describeShape(existing.shape)}`);
      }
      return existing;
    }
    const value = tf.tidy(() => this.initial(name, shape, init));
    const v = tf.variable(value, this.trainable, `${name}_${uniqueSuffix++}`);
    value.dispose();
    this.vars.set(name, v);
    return v;
  }

  private initial(name: string, shape: readonly number[], init: Init): tf.Tensor {
    if (init === 'zeros') return tf.zeros(shape as number[]);
    if (init === 'ones') return tf.ones(shape as number[]);
    if (!this.rng) fail(`parameter '${name}' does not exist in this store and the store has no Rng to create it`);
    const fanIn = shape.length >= 2 ? shape.slice(0, -1).reduce((a, b) => a * b, 1) : shape[0];
    const fanOut = shape[shape.length - 1];
    let std: number;
    if (init === 'glorot') std = Math.sqrt(2 / (fanIn + fanOut));
    else if (init === 'he') std = Math.sqrt(2 / fanIn);
    else std = init.normal;
    return tf.mul(this.rng.normal(shape), std);
  }

  has(name: string): boolean {
    return this.vars.has(name);
  }

  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) fail(`parameter '${name}' not found`);
    return v;
  }

  names(): string[] {
    return [...this.vars.keys()];
  }

  variables(): tf.Variable[] {
    return [...this.vars.values()];
  }

  /** Names of the parameters an optimiser should update (everything not created as frozen). */
  trainableNames(): string[] {
    return this.names().filter((n) => !this.frozen.has(n));
  }

  /** Total number of scalar parameters. */
  size(): number {
    let n = 0;
    for (const v of this.vars.values()) n += v.size;
    return n;
  }

  /** A new store holding copies of every parameter (e.g. the EMA weights). */
  clone(trainable = false): ParamStore {
    const out = new ParamStore(undefined, trainable);
    for (const [name, v] of this.vars) out.set(name, v);
    for (const f of this.frozen) out.frozen.add(f);
    return out;
  }

  /** Set (or create) a parameter from a tensor; copies the value. */
  set(name: string, value: tf.Tensor): void {
    const existing = this.vars.get(name);
    if (existing) {
      if (existing.shape.length !== value.shape.length || existing.shape.some((d, i) => d !== value.shape[i])) {
        fail(`parameter '${name}': expected shape ${describeShape(existing.shape)}, received ${describeShape(value.shape)}`);
      }
      existing.assign(value);
      return;
    }
    const copy = value.clone();
    this.vars.set(name, tf.variable(copy, this.trainable, `${name}_${uniqueSuffix++}`));
    copy.dispose();
  }

  /** Snapshot as a plain name -> tensor map (the tensors are the live variables; do not dispose them). */
  toMap(prefix = ''): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [name, v] of this.vars) out[prefix + name] = v;
    return out;
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

let uniqueSuffix = 0;
