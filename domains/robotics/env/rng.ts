/**
 * Small seeded PRNG for environment resets (mulberry32: a 32-bit state advanced by a Weyl
 * increment and mixed with two multiply-xorshift rounds). Environments use this instead of the
 * tensor-backed core `Rng` so that physics code never depends on the tensor backend.
 */
import { standardNormal } from '../../../src/rng/gaussian.js';
import { fail } from '../../../src/util/validate.js';

export class EnvRng {
  private state: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) fail(`EnvRng: seed must be an integer, received ${seed}`);
    this.state = seed >>> 0;
  }

  /** Uniform float in [0, 1). */
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform float in [lo, hi). */
  range(lo: number, hi: number): number {
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi)) {
      fail(`EnvRng.range: expected finite lo < hi, received [${lo}, ${hi})`);
    }
    return lo + (hi - lo) * this.uniform();
  }

  /** Standard normal draw (the core's backend-free Box-Muller). */
  normal(): number {
    return standardNormal(() => this.uniform());
  }

  /** Uniform integer in [lo, hi). */
  int(lo: number, hi: number): number {
    if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo < hi)) {
      fail(`EnvRng.int: expected integers lo < hi, received [${lo}, ${hi})`);
    }
    return lo + Math.floor((hi - lo) * this.uniform());
  }
}
