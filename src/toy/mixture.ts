/**
 * The 2D toy problem: a mixture of 8 Gaussians on a circle (the standard benchmark of
 * torchcfm and many diffusion tutorials).
 */
import { Rng } from '../rng/rng.js';
import { checkNumber } from '../util/validate.js';

export interface MixtureSpec {
  readonly modes: number;
  readonly radius: number;
  readonly std: number;
}

export const EIGHT_GAUSSIANS: MixtureSpec = { modes: 8, radius: 2, std: 0.15 };

/** Draw n points; returns flat [n, 2] data and the mode index of each point. */
export function sampleMixture(n: number, seed: number, spec: MixtureSpec = EIGHT_GAUSSIANS): { data: Float32Array; modes: Int32Array } {
  checkNumber('n', n, { integer: true, min: 1 });
  checkNumber('modes', spec.modes, { integer: true, min: 1 });
  const rng = new Rng(seed);
  const data = new Float32Array(2 * n);
  const modes = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rng.int(spec.modes);
    const a = (2 * Math.PI * k) / spec.modes;
    data[2 * i] = spec.radius * Math.cos(a) + spec.std * rng.normalScalar();
    data[2 * i + 1] = spec.radius * Math.sin(a) + spec.std * rng.normalScalar();
    modes[i] = k;
  }
  return { data, modes };
}

/** Index of the nearest mode centre for each point (for mode-coverage statistics). */
export function nearestMode(points: ArrayLike<number>, spec: MixtureSpec = EIGHT_GAUSSIANS): Int32Array {
  const n = points.length / 2;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestD = Infinity;
    for (let k = 0; k < spec.modes; k++) {
      const a = (2 * Math.PI * k) / spec.modes;
      const d = (points[2 * i] - spec.radius * Math.cos(a)) ** 2 + (points[2 * i + 1] - spec.radius * Math.sin(a)) ** 2;
      if (d < bestD) {
        bestD = d;
        best = k;
      }
    }
    out[i] = best;
  }
  return out;
}
