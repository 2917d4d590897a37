/**
 * Diffusion Policy's conditional 1D temporal U-Net (Chi et al. 2023, after Janner et al. 2022):
 * an action chunk [B, H, A] is processed as a sequence with residual conv blocks whose FiLM
 * layers read the diffusion-time embedding plus the observation-history embedding; two
 * resolutions down, a middle, and skip connections up.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Network } from '../../../src/denoiser/denoiser.js';
import { conditioningEmbedding } from '../../../src/nn/mlp.js';
import { silu } from '../../../src/nn/layers.js';
import { conv1d, residualConv1dBlock } from '../../../src/nn/blocks.js';
import type { ParamStore } from '../../../src/nn/params.js';
import { registerNetwork } from '../../../src/nn/registry.js';
import { checkNumber, fail } from '../../../src/util/validate.js';

export interface TemporalUnetConfig {
  /** Action dimension A. */
  readonly actionDim: number;
  /** Chunk length H (must be divisible by 2^(levels-1)). */
  readonly horizon: number;
  /** Size of the global conditioning vector (observation history, flattened). */
  readonly condDim: number;
  /** Channels per resolution, e.g. [64, 128, 256]. */
  readonly channels: readonly number[];
  readonly embedDim?: number;
  readonly kernel?: number;
  readonly groups?: number;
}

export function validateUnetConfig(c: TemporalUnetConfig): TemporalUnetConfig {
  if (!c || typeof c !== 'object') fail('unet config: expected an object');
  checkNumber('unet.actionDim', c.actionDim, { integer: true, min: 1 });
  checkNumber('unet.horizon', c.horizon, { integer: true, min: 1 });
  checkNumber('unet.condDim', c.condDim, { integer: true, min: 0 });
  if (!Array.isArray(c.channels) || c.channels.length < 1) fail('unet.channels: expected a non-empty array');
  c.channels.forEach((ch, i) => checkNumber(`unet.channels[${i}]`, ch, { integer: true, min: 1 }));
  const factor = 2 ** (c.channels.length - 1);
  if (c.horizon % factor !== 0) fail(`unet.horizon: ${c.horizon} must be divisible by ${factor} for ${c.channels.length} resolutions`);
  return c;
}

/** Nearest-neighbour x2 upsampling along the sequence axis of [B, 1, L, C] (concat, not Tile: Tile is slow on WASM). */
function upsample2(x: tf.Tensor): tf.Tensor {
  const [b, , l, c] = x.shape as [number, number, number, number];
  const r = tf.reshape(x, [b, l, 1, c]);
  return tf.reshape(tf.concat([r, r], 2), [b, 1, 2 * l, c]);
}

export function temporalUnet(config: TemporalUnetConfig, store: ParamStore): Network {
  const c = validateUnetConfig(config);
  const embedDim = c.embedDim ?? 64;
  const k = c.kernel ?? 5;
  const g = c.groups ?? 8;
  return (x, tFeat, cond) =>
    tf.tidy(() => {
      if (x.rank !== 3 || x.shape[1] !== c.horizon || x.shape[2] !== c.actionDim) {
        fail(`x: expected shape [*, ${c.horizon}, ${c.actionDim}], received [${x.shape.join(', ')}]`);
      }
      // Every FiLM layer reads silu(emb): computed once. The sequence is kept in the image
      // layout [B, 1, H, C] from input to output, so no convolution reshapes its input.
      const emb = silu(conditioningEmbedding(store, 'emb', tFeat, cond, embedDim, c.condDim));
      const opts = { kernel: k, groups: g, embActivated: true };
      let h = tf.reshape(x, [x.shape[0], 1, c.horizon, c.actionDim]);
      const skips: tf.Tensor[] = [];
      c.channels.forEach((ch, i) => {
        h = residualConv1dBlock(store, `down${i}/a`, h, emb, ch, opts);
        h = residualConv1dBlock(store, `down${i}/b`, h, emb, ch, opts);
        skips.push(h);
        if (i < c.channels.length - 1) h = conv1d(store, `down${i}/pool`, h, ch, 3, { stride: 2 });
      });
      const top = c.channels[c.channels.length - 1];
      h = residualConv1dBlock(store, 'mid/a', h, emb, top, opts);
      h = residualConv1dBlock(store, 'mid/b', h, emb, top, opts);
      for (let i = c.channels.length - 1; i >= 0; i--) {
        const ch = c.channels[i];
        h = tf.concat([h, skips[i]], 3);
        h = residualConv1dBlock(store, `up${i}/a`, h, emb, ch, opts);
        if (i > 0) h = conv1d(store, `up${i}/up`, upsample2(h), c.channels[i - 1], 3);
      }
      return tf.reshape(conv1d(store, 'out', h, c.actionDim, 1), [x.shape[0], c.horizon, c.actionDim]);
    });
}

registerNetwork('temporal-unet', (config, store) => temporalUnet(config as unknown as TemporalUnetConfig, store), { staticGraph: true });
