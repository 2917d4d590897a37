/**
 * Mixed continuous + categorical features diffused jointly: points on 3 clusters whose class
 * label is the cluster index. A small MLP trained with flow matching on the joint vector must
 * produce samples whose decoded label agrees with the cluster their position falls in.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { decodeMixed, encodeMixed, mixedDim } from '../../src/data/mixed.js';
import { wrapNetwork } from '../../src/denoiser/denoiser.js';
import { flowMatchingLoss } from '../../src/loss/flowMatching.js';
import { rectifiedFlow } from '../../src/path/flow.js';
import { Rng } from '../../src/rng/rng.js';
import { sample } from '../../src/sample/registry.js';
import { Trainer } from '../../src/train/trainer.js';

const spec = { continuous: 2, categories: [3], scale: 1 };
const centres = [[-2, 0], [2, 0], [0, 2.5]];

function data(n: number, seed: number): { pos: number[][]; lab: number[][] } {
  const rng = new Rng(seed);
  const pos: number[][] = [];
  const lab: number[][] = [];
  for (let i = 0; i < n; i++) {
    const k = rng.int(3);
    pos.push([centres[k][0] + 0.2 * rng.normalScalar(), centres[k][1] + 0.2 * rng.normalScalar()]);
    lab.push([k]);
  }
  return { pos, lab };
}

describe('mixed continuous + categorical diffusion', () => {
  it('encodes and decodes exactly, and rejects bad labels', () => {
    const c = tf.tensor2d([[0.5, -1], [2, 3]]);
    const l = tf.tensor2d([[2], [0]]);
    const x = encodeMixed(spec, c, l);
    expect(x.shape).toEqual([2, mixedDim(spec)]);
    expect(Array.from(x.dataSync())).toEqual([0.5, -1, 0, 0, 1, 2, 3, 1, 0, 0]);
    const d = decodeMixed(spec, x);
    expect(Array.from(d.labels.dataSync())).toEqual([2, 0]);
    expect(() => encodeMixed(spec, c, tf.tensor2d([[3], [0]]))).toThrow(/labels: entry 0 is 3, expected an integer in \[0, 3\)/);
    tf.dispose([c, l, x, d.continuous, d.labels]);
  });

  it('samples carry labels consistent with their position', () => {
    const { pos, lab } = data(1500, 1);
    const c = tf.tensor2d(pos);
    const l = tf.tensor2d(lab);
    const x = encodeMixed(spec, c, l);
    const param = { path: rectifiedFlow(), prediction: 'velocity' as const };
    const loss = flowMatchingLoss({ param });
    const t = new Trainer(
      { model: { kind: 'mlp', config: { dim: mixedDim(spec), width: 64, depth: 2 } }, steps: 600, batchSize: 128, seed: 0, optimizer: { kind: 'adamw', weightDecay: 0 }, schedule: { kind: 'cosine', lr: 3e-3, warmup: 50 }, emaDecay: 0.99 },
      ({ net, rng }, b) => loss(net, b.x, rng),
      { x },
    );
    for (let i = 0; i < 600; i++) t.trainStep();
    const s = sample({ denoiser: wrapNetwork(t.emaNet, param), path: param.path, shape: [600, mixedDim(spec)], sampler: 'flow-euler', grid: { kind: 'uniform', steps: 20 }, rng: new Rng(5) });
    const d = decodeMixed(spec, s as tf.Tensor2D);
    const p = d.continuous.arraySync();
    const labels = d.labels.dataSync();
    let agree = 0;
    p.forEach(([u, v], i) => {
      const nearest = centres.map(([a, b]) => (u - a) ** 2 + (v - b) ** 2).reduce((best, dd, k, arr) => (dd < arr[best] ? k : best), 0);
      if (nearest === labels[i]) agree++;
    });
    const rate = agree / p.length;
    console.log(`label/position agreement ${rate.toFixed(3)} (chance 0.33)`);
    expect(rate).toBeGreaterThan(0.9);
    tf.dispose([c, l, x, s, d.continuous, d.labels]);
    t.dispose();
  });
});
