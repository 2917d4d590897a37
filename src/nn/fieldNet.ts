/**
 * A small convolutional denoiser for gridded fields [B, H, W, C] with per-pixel conditioning:
 * the condition (e.g. a low-resolution field upsampled to the output grid) is concatenated to
 * the noisy input channel-wise, then residual conv blocks with FiLM from the time embedding
 * (the SR3 / CorrDiff pattern). Registered as network kind 'field-conv'.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Network } from '../denoiser/denoiser.js';
import { checkNumber, fail } from '../util/validate.js';
import { conv2d, residualConv2dBlock } from './blocks.js';
import { silu } from './layers.js';
import { conditioningEmbedding } from './mlp.js';
import type { ParamStore } from './params.js';

export interface FieldNetConfig {
  readonly channels: number;
  /** Channels of the per-pixel condition (0: unconditional). */
  readonly condChannels: number;
  readonly width: number;
  readonly blocks: number;
  readonly groups?: number;
}

export function fieldNetwork(config: FieldNetConfig, store: ParamStore): Network {
  checkNumber('field.channels', config.channels, { integer: true, min: 1 });
  checkNumber('field.condChannels', config.condChannels, { integer: true, min: 0 });
  checkNumber('field.width', config.width, { integer: true, min: 1 });
  checkNumber('field.blocks', config.blocks, { integer: true, min: 0 });
  return (x, tFeat, cond) =>
    tf.tidy(() => {
      if (x.rank !== 4 || x.shape[3] !== config.channels) fail(`x: expected shape [*, H, W, ${config.channels}], received [${x.shape.join(', ')}]`);
      let h = x;
      if (config.condChannels > 0) {
        if (!cond || cond.rank !== 4 || cond.shape[1] !== x.shape[1] || cond.shape[2] !== x.shape[2] || cond.shape[3] !== config.condChannels) {
          fail(`cond: expected a per-pixel condition of shape [*, ${x.shape[1]}, ${x.shape[2]}, ${config.condChannels}], received ${cond ? `[${cond.shape.join(', ')}]` : 'none'}`);
        }
        h = tf.concat([x, cond], 3);
      }
      const emb = conditioningEmbedding(store, 'emb', tFeat, undefined, 64, 0);
      h = conv2d(store, 'in', h, config.width, 3);
      for (let i = 0; i < config.blocks; i++) h = residualConv2dBlock(store, `block${i}`, h, emb, config.width, { groups: config.groups ?? 4 });
      return conv2d(store, 'out', silu(h), config.channels, 3);
    });
}
