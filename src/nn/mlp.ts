/**
 * MLP denoiser network with FiLM conditioning on the time embedding (and an optional
 * conditioning vector, e.g. an observation embedding or a class one-hot).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Network } from '../denoiser/denoiser.js';
import { checkNumber, fail } from '../util/validate.js';
import { residualMlpBlock } from './blocks.js';
import { fourierEmbedding, sinusoidalEmbedding } from './embedding.js';
import { dense, silu } from './layers.js';
import type { ParamStore } from './params.js';

export interface MlpConfig {
  /** Data dimension (input and output). */
  readonly dim: number;
  readonly width: number;
  /** Number of residual blocks. */
  readonly depth: number;
  readonly timeEmbedding?: 'sinusoidal' | 'fourier';
  readonly timeDim?: number;
  /** Size of the conditioning vector (0: unconditional). */
  readonly condDim?: number;
}

export function validateMlpConfig(c: MlpConfig): MlpConfig {
  if (!c || typeof c !== 'object') fail('mlp config: expected an object');
  checkNumber('mlp.dim', c.dim, { integer: true, min: 1 });
  checkNumber('mlp.width', c.width, { integer: true, min: 1 });
  checkNumber('mlp.depth', c.depth, { integer: true, min: 0 });
  if (c.timeDim !== undefined) checkNumber('mlp.timeDim', c.timeDim, { integer: true, min: 2 });
  if (c.condDim !== undefined) checkNumber('mlp.condDim', c.condDim, { integer: true, min: 0 });
  return c;
}

/** Embedding of the time feature plus the condition: the vector every FiLM layer reads. */
export function conditioningEmbedding(store: ParamStore, prefix: string, tFeat: tf.Tensor, cond: tf.Tensor | undefined, dim: number, condDim: number, kind: 'sinusoidal' | 'fourier' = 'sinusoidal'): tf.Tensor {
  const te = kind === 'fourier' ? fourierEmbedding(store, `${prefix}/fourier`, tFeat, dim) : sinusoidalEmbedding(tFeat, dim);
  let e = dense(store, `${prefix}/t2`, silu(dense(store, `${prefix}/t1`, te, dim)), dim);
  if (condDim > 0) {
    if (!cond) fail(`network: expects a condition of size ${condDim}, none given`);
    if (cond.rank !== 2 || cond.shape[1] !== condDim) fail(`cond: expected shape [*, ${condDim}], received [${cond.shape.join(', ')}]`);
    e = tf.add(e, dense(store, `${prefix}/c2`, silu(dense(store, `${prefix}/c1`, cond, dim)), dim));
  }
  return e;
}

export function mlpNetwork(config: MlpConfig, store: ParamStore): Network {
  const c = validateMlpConfig(config);
  const timeDim = c.timeDim ?? 64;
  const condDim = c.condDim ?? 0;
  return (x, tFeat, cond) =>
    tf.tidy(() => {
      if (x.rank !== 2 || x.shape[1] !== c.dim) fail(`x: expected shape [*, ${c.dim}], received [${x.shape.join(', ')}]`);
      const emb = conditioningEmbedding(store, 'emb', tFeat, cond, timeDim, condDim, c.timeEmbedding);
      let h = dense(store, 'in', x, c.width);
      for (let i = 0; i < c.depth; i++) h = residualMlpBlock(store, `block${i}`, h, emb);
      return dense(store, 'out', silu(h), c.dim);
    });
}
