import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPushtDemos } from '../../domains/robotics/data/pushtDemos.js';
import { DEFAULT_DISTILL_SIGMA_DATA, policyDistiller, policyReflow } from '../../domains/robotics/policy/distill.js';
import { makeGrid } from '../../src/grid/grid.js';
import { getSampler } from '../../src/sample/registry.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { DEFAULT_POLICY } from '../../domains/robotics/policy/config.js';
import { policyTrainer } from '../../domains/robotics/policy/train.js';

describe('consistency distillation of a policy', () => {
  it("starts from the teacher's one-step estimate, trains, and round-trips through a checkpoint", async () => {
    // A diffusion teacher of its own (the shipped Push-T policy is a flow-matching one).
    const demos = await loadPushtDemos(undefined, { episodes: 3 });
    const teacherDir = mkdtempSync(path.join(os.tmpdir(), 'sf-teacher-'));
    const t = policyTrainer(demos, { ...DEFAULT_POLICY, env: 'pusht', obsDim: 5, actionDim: 2, channels: [16, 32], embedDim: 32 }, { steps: 2, batchSize: 8, seed: 0 });
    t.trainer.trainStep();
    await t.save(teacherDir);
    t.dispose();
    const teacher = DiffusionPolicy.load(teacherDir, { env: 'pusht' });
    rmSync(teacherDir, { recursive: true, force: true });
    const d = policyDistiller(teacher, demos, { steps: 3, batchSize: 8, seed: 1 });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-distill-'));
    try {
      const cond = tf.tidy(() => tf.randomUniform([4, teacher.config.obsHorizon * teacher.features.outputDim], -1, 1, 'float32', 3));
      const x = tf.tidy(() => tf.randomNormal([4, teacher.config.predHorizon, teacher.config.actionDim], 0, 1, 'float32', 4));
      const tMax = teacher.path.tMax;
      // Before any step the student is the teacher with a consistency boundary: at tMax its
      // output is c_skip x / alpha + (1 - c_skip) x0_teacher.
      const s0 = d.student();
      expect(s0.config.consistency).toMatchObject({ form: 'denoiser', sigmaData: DEFAULT_DISTILL_SIGMA_DATA });
      const cp = s0.consistencyParam()!;
      const a = s0.baseDenoiser(cond)(x, tMax);
      const b = teacher.baseDenoiser(cond)(x, tMax);
      const sig = teacher.path.sigma(tMax) / teacher.path.alpha(tMax);
      const sd2 = cp.sigmaData ** 2;
      const cSkip = sd2 / ((sig - cp.sigmaMin) ** 2 + sd2);
      const want = tf.add(tf.mul(tf.div(x, teacher.path.alpha(tMax)), cSkip), tf.mul(b, 1 - cSkip));
      expect(tf.max(tf.abs(tf.sub(a, want))).dataSync()[0]).toBeLessThan(1e-4);
      s0.dispose();

      const losses: number[] = [];
      for (let i = 0; i < 3; i++) losses.push(d.trainer.trainStep().loss);
      for (const l of losses) expect(Number.isFinite(l) && l >= 0).toBe(true);

      const s1 = d.student();
      await s1.save(dir);
      const back = DiffusionPolicy.load(dir, { env: 'pusht' });
      expect(back.config.consistency).toEqual(s1.config.consistency);
      expect(back.config.sampler).toBe('consistency-1step');
      const window = [Float64Array.of(200, 300, 256, 300, 0.3), Float64Array.of(202, 300, 256, 300, 0.3)];
      const c1 = s1.predictChunks([window], { seed: 5 });
      const c2 = back.predictChunks([window], { seed: 5 });
      expect(c1.chunks[0]).toHaveLength(teacher.config.predHorizon * 2);
      expect(Array.from(c2.chunks[0]!)).toEqual(Array.from(c1.chunks[0]!));
      tf.dispose([cond, x, a, b, want]);
      s1.dispose();
      back.dispose();
    } finally {
      d.dispose();
      teacher.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('distils a flow-matching teacher in unscaled coordinates: the student starts as one flow-Euler step and loads back', async () => {
    const demos = await loadPushtDemos(undefined, { episodes: 2 });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-flow-teacher-'));
    const cfg = { ...DEFAULT_POLICY, env: 'pusht', obsDim: 5, actionDim: 2, channels: [16, 32], embedDim: 32, objective: 'flow-matching', path: 'rectified-flow', prediction: 'velocity', sampler: 'flow-euler' } as const;
    const t = policyTrainer(demos, cfg, { steps: 1, batchSize: 8, seed: 0 });
    t.trainer.trainStep();
    await t.save(dir);
    t.dispose();
    const flow = DiffusionPolicy.load(dir, { env: 'pusht' });
    const d = policyDistiller(flow, demos, { steps: 2, batchSize: 8, seed: 1 });
    try {
      const s0 = d.student();
      const cp = s0.consistencyParam()!;
      expect(cp.coordinates).toBe('unscaled');
      // One consistency step of the fresh student and one flow-Euler step of the teacher, from
      // the same noise: identical up to c_skip (~4e-4) times the difference of x_T and x0.
      const window = [Float64Array.of(200, 300, 256, 300, 0.3), Float64Array.of(202, 300, 256, 300, 0.3)];
      const a = s0.predictChunks([window], { seed: 5 }).chunks[0]!;
      const b = flow.predictChunks([window], { seed: 5, steps: 1 }).chunks[0]!;
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
      expect(worst).toBeLessThan(0.5); // pixels; the chunks span hundreds
      expect(worst).toBeGreaterThan(0); // c_skip mixes in the noise
      s0.dispose();
      for (let i = 0; i < 2; i++) expect(Number.isFinite(d.trainer.trainStep().loss)).toBe(true);
      const s1 = d.student();
      await s1.save(dir);
      const back = DiffusionPolicy.load(dir, { env: 'pusht' });
      expect(back.consistencyParam()!.coordinates).toBe('unscaled');
      expect(Array.from(back.predictChunks([window], { seed: 5 }).chunks[0]!)).toEqual(Array.from(s1.predictChunks([window], { seed: 5 }).chunks[0]!));
      s1.dispose();
      back.dispose();
    } finally {
      d.dispose();
      flow.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('reflow of a policy', () => {
  it("pairs each noise with the teacher's own chunk from it, trains the student on the pairs, and round-trips", async () => {
    const demos = await loadPushtDemos(undefined, { episodes: 2 });
    const teacherDir = mkdtempSync(path.join(os.tmpdir(), 'sf-teacher-'));
    const t = policyTrainer(demos, { ...DEFAULT_POLICY, env: 'pusht', obsDim: 5, actionDim: 2, channels: [16, 32], embedDim: 32, samplingSteps: 4, temperature: 0.8 }, { steps: 2, batchSize: 8, seed: 0 });
    t.trainer.trainStep();
    await t.save(teacherDir);
    t.dispose();
    const teacher = DiffusionPolicy.load(teacherDir, { env: 'pusht' });
    rmSync(teacherDir, { recursive: true, force: true });
    const progress: number[] = [];
    const r = policyReflow(teacher, demos, { steps: 3, batchSize: 8, seed: 1, pairsPerWindow: 2, studentSteps: 2, onPairs: (done) => progress.push(done) });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-reflow-'));
    try {
      const { x, cond } = r.data;
      const { predHorizon: Tp, actionDim: A } = teacher.config;
      expect(x.shape).toEqual([r.pairs, 2, Tp, A]);
      expect(r.pairs % 2).toBe(0);
      expect(progress.at(-1)).toBe(r.pairs);
      // Pair k: the teacher's deterministic sampler from 0.8 x noise_k gives chunk_k.
      for (const k of [0, r.pairs - 1]) {
        tf.tidy(() => {
          const pair = tf.slice(x, [k, 0, 0, 0], [1, 2, Tp, A]);
          const [chunk, noise] = tf.unstack(tf.squeeze(pair, [0]), 0).map((v) => tf.expandDims(v, 0));
          const grid = makeGrid(teacher.path, { kind: 'uniform', steps: 4 });
          const again = getSampler(teacher.config.sampler)(teacher.baseDenoiser(tf.slice(cond, [k, 0], [1, -1])), tf.mul(noise!, teacher.path.sigma(grid[0]!) * 0.8), grid, teacher.path, {});
          expect(tf.max(tf.abs(tf.sub(again, chunk!))).dataSync()[0]).toBeLessThan(1e-5);
        });
      }
      // The two copies of a window hold different noise.
      const differ = tf.tidy(() => tf.max(tf.abs(tf.sub(tf.slice(x, [0, 1, 0, 0], [1, 1, Tp, A]), tf.slice(x, [r.pairs / 2, 1, 0, 0], [1, 1, Tp, A])))).dataSync()[0]!);
      expect(differ).toBeGreaterThan(1e-3);
      for (let i = 0; i < 3; i++) {
        const l = r.trainer.trainStep().loss;
        expect(Number.isFinite(l) && l >= 0).toBe(true);
      }
      const s1 = r.student();
      expect(s1.config).toMatchObject({ samplingSteps: 2, temperature: 1, sampler: teacher.config.sampler });
      await s1.save(dir);
      const back = DiffusionPolicy.load(dir, { env: 'pusht' });
      const window = [Float64Array.of(200, 300, 256, 300, 0.3), Float64Array.of(202, 300, 256, 300, 0.3)];
      expect(Array.from(back.predictChunks([window], { seed: 5 }).chunks[0]!)).toEqual(Array.from(s1.predictChunks([window], { seed: 5 }).chunks[0]!));
      s1.dispose();
      back.dispose();
      // A consistency student has no ODE to reflow.
      const cd = policyDistiller(teacher, demos, { steps: 1, batchSize: 8 });
      const student = cd.student();
      expect(() => policyReflow(student, demos, { steps: 1 })).toThrow(/reflow: the teacher is a consistency student/);
      expect(() => policyReflow(teacher, demos, { steps: 0 })).toThrow(/steps/);
      student.dispose();
      cd.dispose();
    } finally {
      r.dispose();
      teacher.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
