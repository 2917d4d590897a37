/**
 * Seeded, splittable random number source. Every random draw in scoreflow goes through an
 * `Rng`, so the same seed gives the same samples and the same training curve.
 *
 * Implementation: a 32-bit counter-based generator (splitmix-style mixing of seed and
 * counter) producing per-call seeds for tfjs's seeded `randomNormal`/`randomUniform`, plus
 * scalar draws for data shuffling.
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkNumber } from '../util/validate.js';
import { standardNormal } from './gaussian.js';

function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

export class Rng {
  private counter = 0;
  private readonly key: number;

  constructor(seed: number) {
    checkNumber('seed', seed, { integer: true });
    this.key = mix32((seed | 0) ^ 0x9e3779b9);
  }

  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number {
    this.counter = (this.counter + 1) >>> 0;
    return mix32(this.key ^ mix32(this.counter * 0x27d4eb2d));
  }

  /** Uniform float in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Standard normal scalar (Box-Muller). */
  normalScalar(): number {
    return standardNormal(() => this.uniform());
  }

  /** Integer in [0, n). */
  int(n: number): number {
    checkNumber('n', n, { integer: true, min: 1 });
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal tensor of the given shape. */
  normal(shape: readonly number[]): tf.Tensor {
    return tf.randomNormal(shape as number[], 0, 1, 'float32', this.nextUint32());
  }

  /** Uniform tensor in [lo, hi). */
  uniformTensor(shape: readonly number[], lo = 0, hi = 1): tf.Tensor {
    return tf.randomUniform(shape as number[], lo, hi, 'float32', this.nextUint32());
  }

  /** A random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): Int32Array {
    checkNumber('n', n, { integer: true, min: 0 });
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.uniform() * (i + 1));
      const tmp = p[i];
      p[i] = p[j];
      p[j] = tmp;
    }
    return p;
  }

  /** `n` independent child generators (deterministic given this generator's state). */
  split(n: number): Rng[] {
    checkNumber('n', n, { integer: true, min: 1 });
    return Array.from({ length: n }, () => new Rng(this.nextUint32() | 0));
  }
}
