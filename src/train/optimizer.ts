/**
 * Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) over a ParamStore, with global
 * gradient-norm clipping. Written here (not tf.train) so its state is named, checkpointable
 * and restorable exactly.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ParamStore } from '../nn/params.js';
import { checkNumber, checkOneOf } from '../util/validate.js';

export interface OptimizerConfig {
  readonly kind: 'adam' | 'adamw';
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Adam: L2 penalty added to the gradient; AdamW: decoupled decay. */
  readonly weightDecay?: number;
}

export function validateOptimizerConfig(c: OptimizerConfig): Required<OptimizerConfig> {
  checkOneOf('optimizer.kind', c?.kind, ['adam', 'adamw']);
  return {
    kind: c.kind,
    beta1: checkNumber('optimizer.beta1', c.beta1 ?? 0.9, { min: 0, max: 0.999999 }),
    beta2: checkNumber('optimizer.beta2', c.beta2 ?? 0.999, { min: 0, max: 0.99999999 }),
    eps: checkNumber('optimizer.eps', c.eps ?? 1e-8, { min: 0 }),
    weightDecay: checkNumber('optimizer.weightDecay', c.weightDecay ?? (c.kind === 'adamw' ? 1e-4 : 0), { min: 0 }),
  };
}

export class AdamOptimizer {
  readonly config: Required<OptimizerConfig>;
  /** Number of updates applied so far. */
  step = 0;
  readonly m: ParamStore;
  readonly v: ParamStore;

  constructor(private readonly params: ParamStore, config: OptimizerConfig) {
    this.config = validateOptimizerConfig(config);
    this.m = params.clone(false);
    this.v = params.clone(false);
    for (const n of this.m.names()) this.m.get(n).assign(tf.zerosLike(this.m.get(n)));
    for (const n of this.v.names()) this.v.get(n).assign(tf.zerosLike(this.v.get(n)));
  }

  /**
   * Apply one update from the given gradients (name -> tensor). Returns the global gradient norm
   * before clipping. Does not dispose the gradients.
   */
  apply(grads: Record<string, tf.Tensor>, lr: number, clipNorm?: number): number {
    const { beta1, beta2, eps, weightDecay, kind } = this.config;
    const names = Object.keys(grads);
    const norm = tf.tidy(() => Math.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n])))).dataSync()[0]));
    const clip = clipNorm && norm > clipNorm ? clipNorm / (norm + 1e-12) : 1;
    this.step += 1;
    const bc1 = 1 - Math.pow(beta1, this.step);
    const bc2 = 1 - Math.pow(beta2, this.step);
    tf.tidy(() => {
      for (const n of names) {
        const p = this.params.get(n);
        let g = clip !== 1 ? tf.mul(grads[n], clip) : grads[n];
        if (kind === 'adam' && weightDecay > 0) g = tf.add(g, tf.mul(p, weightDecay));
        const m = this.m.get(n);
        const v = this.v.get(n);
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        let update = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), eps));
        if (kind === 'adamw' && weightDecay > 0) update = tf.add(update, tf.mul(p, weightDecay));
        p.assign(tf.sub(p, tf.mul(update, lr)));
      }
    });
    return norm;
  }

  dispose(): void {
    this.m.dispose();
    this.v.dispose();
  }
}
