import * as tf from '@tensorflow/tfjs-core';
import { lastValueFrom, toArray } from 'rxjs';
import { mkdtempSync, readFileSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { flowMatchingLoss } from '../../src/loss/flowMatching.js';
import { rectifiedFlow } from '../../src/path/flow.js';
import { loadCheckpoint, readCheckpointMeta } from '../../src/train/checkpoint.js';
import { learningRate } from '../../src/train/schedule.js';
import { Trainer, type TrainerConfig } from '../../src/train/trainer.js';

const param = { path: rectifiedFlow(), prediction: 'velocity' as const };
const loss = flowMatchingLoss({ param });
const objective: ConstructorParameters<typeof Trainer>[1] = ({ net, rng }, b) => loss(net, b.x, rng);
const config = (steps: number): TrainerConfig => ({
  model: { kind: 'mlp', config: { dim: 2, width: 16, depth: 1 } },
  steps,
  batchSize: 32,
  seed: 7,
  optimizer: { kind: 'adamw', weightDecay: 1e-3 },
  schedule: { kind: 'cosine', lr: 1e-2, warmup: 5 },
  clipNorm: 1,
  emaDecay: 0.9,
  logEvery: 5,
});
const data = (): tf.Tensor => tf.tensor2d(Array.from({ length: 200 }, (_, i) => [Math.cos(i), Math.sin(i * 0.7)]));
const tmp = (): string => mkdtempSync(path.join(os.tmpdir(), 'sf-trainer-'));

describe('Trainer', () => {
  it('is reproducible: same seed, same training curve', () => {
    const x = data();
    const curve = (): number[] => {
      const t = new Trainer(config(20), objective, { x });
      const out = Array.from({ length: 20 }, () => t.trainStep().loss);
      t.dispose();
      return out;
    };
    expect(curve()).toEqual(curve());
    x.dispose();
  });

  it('emits progress as an Observable and lowers the loss', async () => {
    const x = data();
    const t = new Trainer({ ...config(100), logEvery: 10 }, objective, { x });
    const events = await lastValueFrom(t.fit().pipe(toArray()));
    expect(events.map((e) => e.step)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    expect(events[9].loss).toBeLessThan(events[0].loss);
    expect(events.every((e) => e.samplesPerSec > 0 && e.lr > 0)).toBe(true);
    t.dispose();
    x.dispose();
  });

  it('resumes exactly from a checkpoint (weights, EMA, optimiser state, data order)', async () => {
    const x = data();
    const full = new Trainer(config(30), objective, { x });
    const lossesFull = Array.from({ length: 30 }, () => full.trainStep().loss);
    const first = new Trainer(config(30), objective, { x });
    for (let i = 0; i < 15; i++) first.trainStep();
    const dir = tmp();
    await first.save(dir, { task: 'test/resume', parameterization: { path: param.path.spec, prediction: 'velocity' } });
    first.dispose();
    const { trainer: resumed, meta } = Trainer.resume(dir, objective, { x }, { expectTask: 'test/resume' });
    expect(meta.training?.step).toBe(15);
    const rest = Array.from({ length: 15 }, () => resumed.trainStep().loss);
    rest.forEach((l, i) => expect(l).toBeCloseTo(lossesFull[15 + i], 5));
    resumed.dispose();
    full.dispose();
    x.dispose();
  });

  it('has no tensor leak over 100 training steps', () => {
    const x = data();
    const t = new Trainer(config(200), objective, { x });
    t.trainStep();
    const n = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) t.trainStep();
    expect(tf.memory().numTensors).toBe(n);
    t.dispose();
    x.dispose();
  });

  it('warmup + cosine schedule', () => {
    const s = { kind: 'cosine' as const, lr: 1, warmup: 10, minLr: 0.1 };
    expect(learningRate(s, 0, 110)).toBeCloseTo(0.1);
    expect(learningRate(s, 9, 110)).toBeCloseTo(1);
    expect(learningRate(s, 60, 110)).toBeCloseTo(0.55);
    expect(learningRate(s, 110, 110)).toBeCloseTo(0.1);
  });

  it('rejects bad input with a message naming the argument', () => {
    const x = data();
    expect(() => new Trainer({ ...config(10), batchSize: 0 }, objective, { x })).toThrow(/batchSize: expected >= 1/);
    const nan = tf.tensor2d([[0, NaN]]);
    expect(() => new Trainer(config(10), objective, { x: nan })).toThrow(/data.x: contains a non-finite value/);
    expect(() => new Trainer({ ...config(10), model: { kind: 'nope', config: {} } }, objective, { x })).toThrow(/model.kind: unknown network kind 'nope'/);
    nan.dispose();
    x.dispose();
  });
});

describe('checkpoints', () => {
  it('round-trip with tfjs weight encoding, and refuse truncated, mismatched or foreign files', async () => {
    const x = data();
    const t = new Trainer(config(5), objective, { x });
    for (let i = 0; i < 5; i++) t.trainStep();
    const dir = tmp();
    await t.save(dir, { task: 'toy/8gaussians', parameterization: { path: param.path.spec, prediction: 'velocity' }, normalizer: { kind: 'standard', offset: [0, 0], scale: [1, 1] } });
    const json = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8'));
    expect(json.format).toBe('scoreflow-checkpoint');
    expect(json.weightsManifest[0].paths).toEqual(['weights.bin']);
    const ck = loadCheckpoint(dir, { expectTask: 'toy/8gaussians' });
    for (const n of t.params.names()) {
      expect(Array.from(ck.params.get(n).dataSync())).toEqual(Array.from(t.params.get(n).dataSync()));
    }
    expect(ck.ema).toBeDefined();
    expect(ck.optimizer?.step).toBe(5);
    expect(readCheckpointMeta(dir).normalizer).toEqual({ kind: 'standard', offset: [0, 0], scale: [1, 1] });
    ck.params.dispose();
    ck.ema?.dispose();
    ck.optimizer?.m.dispose();
    ck.optimizer?.v.dispose();

    expect(() => loadCheckpoint(dir, { expectTask: 'robot-policy/pusht' })).toThrow(/holds a 'toy\/8gaussians' model, expected 'robot-policy\/pusht'/);
    const bin = path.join(dir, 'weights.bin');
    truncateSync(bin, statSync(bin).size - 8);
    expect(() => loadCheckpoint(dir)).toThrow(/weights.bin has \d+ bytes but the manifest describes \d+; the file is truncated/);
    writeFileSync(path.join(dir, 'model.json'), '{"format": "scoreflow-checkpoint", "vers');
    expect(() => loadCheckpoint(dir)).toThrow(/model.json is not valid JSON/);
    expect(() => loadCheckpoint(tmp())).toThrow(/no model.json found/);
    t.dispose();
    x.dispose();
  });
});
