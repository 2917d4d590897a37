/**
 * DPM-Solver++ 2M (Lu et al. 2022), multistep second order in the data prediction, written in
 * (alpha, sigma, lambda = log alpha/sigma) so it serves VP, VE, EDM and flow paths alike.
 *   x_s = (s_s / s_t) x_t - a_s (e^{-h} - 1) D,   h = lambda_s - lambda_t
 *   D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1},      r = h_{i-1} / h_i   (first step and final step: D = x0_i)
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import { checkSamplerArgs, runSteps } from './loop.js';
import type { SampleOptions } from './types.js';

const lambdaOf = (path: NoisePath, t: number): number => Math.log(path.alpha(t)) - Math.log(path.sigma(t));

export function dpmSolverPlusPlus2M(den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor {
  checkSamplerArgs('dpmpp-2m', den, x, grid, path);
  let prevX0: tf.Tensor | undefined;
  let prevH = 0;
  try {
    return runSteps(grid, x, opts, (xt, i) => {
      const t = grid[i];
      const s = grid[i + 1];
      const x0 = den(xt, t);
      const ss = path.sigma(s);
      const as = path.alpha(s);
      const st = path.sigma(t);
      let next: tf.Tensor;
      if (ss === 0) {
        next = tf.mul(x0, as); // final step: e^{-h} = 0
      } else {
        const h = lambdaOf(path, s) - lambdaOf(path, t);
        const expm = Math.expm1(-h); // e^{-h} - 1
        let d = x0;
        if (prevX0 && prevH > 0) {
          const r = prevH / h;
          d = tf.sub(tf.mul(x0, 1 + 1 / (2 * r)), tf.mul(prevX0, 1 / (2 * r)));
        }
        next = tf.sub(tf.mul(xt, ss / st), tf.mul(d, as * expm));
        prevH = h;
      }
      if (prevX0) prevX0.dispose();
      prevX0 = tf.keep(x0.clone());
      return { x: next, x0 };
    });
  } finally {
    prevX0?.dispose();
  }
}
