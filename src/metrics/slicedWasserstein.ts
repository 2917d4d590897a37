/**
 * Sliced Wasserstein-1 distance between two point clouds of equal dimension: the mean over
 * random unit directions of the 1D Wasserstein-1 distance of the projections (computed by
 * sorting; unequal sizes compared through their quantile functions).
 */
import { Rng } from '../rng/rng.js';
import { checkNumber, fail } from '../util/validate.js';

function w1Sorted(a: Float64Array, b: Float64Array): number {
  // Quantile functions on a common grid of max(n, m) levels.
  const n = Math.max(a.length, b.length);
  let s = 0;
  for (let i = 0; i < n; i++) {
    const q = (i + 0.5) / n;
    s += Math.abs(a[Math.min(a.length - 1, Math.floor(q * a.length))] - b[Math.min(b.length - 1, Math.floor(q * b.length))]);
  }
  return s / n;
}

export function slicedWasserstein(x: ArrayLike<number>, y: ArrayLike<number>, dim: number, opts: { projections?: number; seed?: number } = {}): number {
  checkNumber('dim', dim, { integer: true, min: 1 });
  if (x.length === 0 || x.length % dim !== 0) fail(`x: length ${x.length} is not a positive multiple of dim ${dim}`);
  if (y.length === 0 || y.length % dim !== 0) fail(`y: length ${y.length} is not a positive multiple of dim ${dim}`);
  const P = opts.projections ?? 128;
  const rng = new Rng(opts.seed ?? 0);
  const nx = x.length / dim;
  const ny = y.length / dim;
  let total = 0;
  for (let p = 0; p < P; p++) {
    const dir = new Float64Array(dim);
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      dir[j] = rng.normalScalar();
      norm += dir[j] * dir[j];
    }
    norm = Math.sqrt(norm);
    const px = new Float64Array(nx);
    const py = new Float64Array(ny);
    for (let i = 0; i < nx; i++) for (let j = 0; j < dim; j++) px[i] += (x[i * dim + j] * dir[j]) / norm;
    for (let i = 0; i < ny; i++) for (let j = 0; j < dim; j++) py[i] += (y[i * dim + j] * dir[j]) / norm;
    px.sort();
    py.sort();
    total += w1Sorted(px, py);
  }
  return total / P;
}
