/**
 * Fixed-step ODE solvers on the probability-flow velocity dx/dt = a' x0 + s' (x - a x0) / s,
 * integrated in the path's own time (for rectified flow this is the learned velocity field).
 * Stage evaluations are kept at t >= tEps, where the velocity is finite for every path.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import { coefsAt } from '../predict/coefs.js';
import { velocityFromX0 } from '../predict/convert.js';
import { checkSamplerArgs, runSteps } from './loop.js';
import type { SampleOptions } from './types.js';

type Tableau = 'euler' | 'midpoint' | 'rk4';

function velocity(den: Denoiser, path: NoisePath, x: tf.Tensor, t: number): { u: tf.Tensor; x0: tf.Tensor } {
  const x0 = den(x, t);
  return { u: velocityFromX0(x0, x, coefsAt(path, t)), x0 };
}

function odeSampler(name: string, method: Tableau) {
  return (den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts: SampleOptions = {}): tf.Tensor => {
    checkSamplerArgs(name, den, x, grid, path);
    const tEps = Math.min(path.tMin, 1e-4 * path.tMax);
    const at = (t: number): number => Math.max(t, tEps);
    return runSteps(grid, x, opts, (xt, i) => {
      const t = at(grid[i]);
      const tn = grid[i + 1];
      const h = tn - grid[i]; // negative: integrating toward data
      const k1 = velocity(den, path, xt, t);
      if (method === 'euler') {
        // On the last step the final state is the denoised estimate's limit; Euler lands there exactly for linear paths.
        return { x: tf.add(xt, tf.mul(k1.u, h)), x0: k1.x0 };
      }
      if (method === 'midpoint') {
        const xm = tf.add(xt, tf.mul(k1.u, h / 2));
        const k2 = velocity(den, path, xm, at(grid[i] + h / 2));
        return { x: tf.add(xt, tf.mul(k2.u, h)), x0: k1.x0 };
      }
      const k2 = velocity(den, path, tf.add(xt, tf.mul(k1.u, h / 2)), at(grid[i] + h / 2));
      const k3 = velocity(den, path, tf.add(xt, tf.mul(k2.u, h / 2)), at(grid[i] + h / 2));
      const k4 = velocity(den, path, tf.add(xt, tf.mul(k3.u, h)), at(tn));
      const sum = tf.addN([k1.u, tf.mul(k2.u, 2), tf.mul(k3.u, 2), k4.u]);
      return { x: tf.add(xt, tf.mul(sum, h / 6)), x0: k1.x0 };
    });
  };
}

export const flowEuler = odeSampler('flow-euler', 'euler');
export const flowMidpoint = odeSampler('flow-midpoint', 'midpoint');
export const flowRk4 = odeSampler('flow-rk4', 'rk4');
