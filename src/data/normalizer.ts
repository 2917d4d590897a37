/**
 * Per-feature data normalisers, fitted on training data and stored in checkpoints.
 * 'minmax' maps each feature's [min, max] to [-1, 1] (Diffusion Policy); 'standard' to zero
 * mean and unit variance. Features with zero range pass through shifted to 0.
 */
import { checkFiniteArray, checkNumber, checkOneOf, fail } from '../util/validate.js';

export type NormalizerKind = 'minmax' | 'standard';

export interface NormalizerState {
  readonly kind: NormalizerKind;
  /** x_norm = (x - offset) / scale, per feature. */
  readonly offset: number[];
  readonly scale: number[];
}

export class Normalizer {
  constructor(readonly state: NormalizerState) {
    checkOneOf('normalizer.kind', state?.kind, ['minmax', 'standard']);
    if (!Array.isArray(state.offset) || !Array.isArray(state.scale) || state.offset.length !== state.scale.length || state.offset.length === 0) {
      fail('normalizer: offset and scale must be non-empty arrays of equal length');
    }
    checkFiniteArray('normalizer.offset', state.offset);
    checkFiniteArray('normalizer.scale', state.scale);
    if (state.scale.some((s) => s <= 0)) fail('normalizer.scale: every entry must be > 0');
  }

  get dim(): number {
    return this.state.offset.length;
  }

  /** Fit on rows of `dim` features stored flat in `data`. */
  static fit(kind: NormalizerKind, data: ArrayLike<number>, dim: number): Normalizer {
    checkOneOf('kind', kind, ['minmax', 'standard']);
    checkNumber('dim', dim, { integer: true, min: 1 });
    if (data.length === 0 || data.length % dim !== 0) fail(`data: length ${data.length} is not a positive multiple of dim ${dim}`);
    checkFiniteArray('data', data);
    const n = data.length / dim;
    const offset: number[] = [];
    const scale: number[] = [];
    for (let j = 0; j < dim; j++) {
      if (kind === 'minmax') {
        let lo = Infinity;
        let hi = -Infinity;
        for (let i = 0; i < n; i++) {
          const v = data[i * dim + j];
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        offset.push((hi + lo) / 2);
        scale.push(hi - lo > 1e-12 ? (hi - lo) / 2 : 1);
      } else {
        let m = 0;
        for (let i = 0; i < n; i++) m += data[i * dim + j];
        m /= n;
        let v = 0;
        for (let i = 0; i < n; i++) v += (data[i * dim + j] - m) ** 2;
        const sd = Math.sqrt(v / n);
        offset.push(m);
        scale.push(sd > 1e-12 ? sd : 1);
      }
    }
    return new Normalizer({ kind, offset, scale });
  }

  private apply(x: ArrayLike<number>, forward: boolean, name: string): Float32Array {
    if (x.length % this.dim !== 0) fail(`${name}: length ${x.length} is not a multiple of the normaliser's dim ${this.dim}`);
    const out = new Float32Array(x.length);
    const { offset, scale } = this.state;
    for (let i = 0; i < x.length; i++) {
      const j = i % this.dim;
      out[i] = forward ? (x[i] - offset[j]) / scale[j] : x[i] * scale[j] + offset[j];
    }
    return out;
  }

  normalize(x: ArrayLike<number>): Float32Array {
    return this.apply(x, true, 'x');
  }

  unnormalize(x: ArrayLike<number>): Float32Array {
    return this.apply(x, false, 'x');
  }

  toJSON(): NormalizerState {
    return this.state;
  }
}
