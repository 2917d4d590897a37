/**
 * Diagnostics of one-step sampling and consistency distillation for a shipped Push-T policy, on
 * a fixed set of demonstration windows (Push-T demonstrations from ../shared/data):
 *   ode        rms distance of DDIM 1 / DDIM 10 / DPM-Solver++ 10 / Heun 20 samples to DDIM 100,
 *              from the same noise;
 *   intervals  for each interval of the distillation grid, the rms gap between the initial
 *              student (the teacher in 'denoiser' form) at t_{n+1} and at the teacher's Heun step
 *              to t_n, and the rms error of its x0 estimate against the clean chunk;
 *   drift      the student's one-step output against the teacher's own sampler (DDIM 10 or flow-Euler 10), every
 *              `--every` distillation steps.
 *   npx tsx benchmarks/distill.ts [--checkpoint models/pusht-policy] [--what ode,intervals,drift]
 *                                 [--steps 400] [--every 50] [--lr 2e-4] [--metric pseudo-huber|l2] [--sigma-data 0.5]
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { setBackend } from '../src/backend/backend.js';
import { predictBatch } from '../src/denoiser/denoiser.js';
import { consistencyForward, consistencyGrid, consistencyParam } from '../src/loss/consistencyParam.js';
import { Rng } from '../src/rng/rng.js';
import { sample, type SamplerName } from '../src/sample/registry.js';
import { loadPushtDemos } from '../domains/robotics/data/pushtDemos.js';
import { policyDistiller } from '../domains/robotics/policy/distill.js';
import { DiffusionPolicy } from '../domains/robotics/policy/policy.js';
import { buildWindows } from '../domains/robotics/policy/windows.js';

const { values: o } = parseArgs({
  options: {
    checkpoint: { type: 'string', default: 'models/pusht-policy' },
    what: { type: 'string', default: 'ode,intervals,drift' },
    steps: { type: 'string', default: '400' },
    every: { type: 'string', default: '50' },
    lr: { type: 'string', default: '2e-4' },
    metric: { type: 'string', default: 'pseudo-huber' },
    'sigma-data': { type: 'string', default: '0.5' },
    windows: { type: 'string', default: '64' },
  },
});
const what = new Set(o.what!.split(','));
for (const w of what) if (!['ode', 'intervals', 'drift'].includes(w)) throw new Error(`--what: unknown diagnostic '${w}' (ode, intervals, drift)`);
const steps = Number(o.steps);
const every = Number(o.every);
const lr = Number(o.lr);
const n = Number(o.windows);
if (!Number.isInteger(steps) || steps < 0) throw new Error(`--steps: expected an integer >= 0, received '${o.steps}'`);
if (!Number.isInteger(every) || every < 1) throw new Error(`--every: expected an integer >= 1, received '${o.every}'`);
if (!(lr > 0)) throw new Error(`--lr: expected a positive number, received '${o.lr}'`);
if (!Number.isInteger(n) || n < 2) throw new Error(`--windows: expected an integer >= 2, received '${o.windows}'`);
const sigmaData = Number(o['sigma-data']);
if (!(sigmaData > 0)) throw new Error(`--sigma-data: expected a positive number, received '${o['sigma-data']}'`);
if (o.metric !== 'l2' && o.metric !== 'pseudo-huber') throw new Error(`--metric: expected l2 or pseudo-huber, received '${o.metric}'`);

await setBackend('auto');
const teacher = DiffusionPolicy.load(o.checkpoint!, { env: 'pusht' });
const demos = await loadPushtDemos();
// Windows spread evenly over the first 40 demonstrations.
const w = buildWindows(demos.slice(0, 40), teacher.config, teacher.features);
const F = teacher.features.outputDim;
const { obsHorizon: To, predHorizon: Tp, actionDim: A } = teacher.config;
const condArr = new Float32Array(n * To * F);
const xArr = new Float32Array(n * Tp * A);
for (let i = 0; i < n; i++) {
  const k = Math.floor((i * w.count) / n);
  condArr.set(teacher.obsNormalizer.normalize(w.obs.subarray(k * To * F, (k + 1) * To * F)), i * To * F);
  xArr.set(teacher.actionNormalizer.normalize(w.actions.subarray(k * Tp * A, (k + 1) * Tp * A)), i * Tp * A);
}
const cond = tf.tensor2d(condArr, [n, To * F]);
const x0 = tf.tensor3d(xArr, [n, Tp, A]);
const shape = [n, Tp, A];
const path = teacher.path;
const rms = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => Math.sqrt(tf.mean(tf.square(tf.sub(a, b))).dataSync()[0]));
const run = (p: DiffusionPolicy, sampler: SamplerName, grid: { kind: 'uniform' | 'karras'; steps: number }): tf.Tensor =>
  sample({ denoiser: p.baseDenoiser(cond), path, shape, sampler, grid, rng: new Rng(5) });

if (what.has('ode')) {
  const ref = run(teacher, 'ddim', { kind: 'uniform', steps: 100 });
  const variants: [SamplerName, 'uniform' | 'karras', number][] = [['ddim', 'uniform', 1], ['ddim', 'uniform', 10], ['dpmpp-2m', 'uniform', 10], ['heun', 'karras', 20]];
  for (const [s, kind, k] of variants) {
    const y = run(teacher, s, { kind, steps: k });
    console.log(JSON.stringify({ diagnostic: 'ode', sampler: s, grid: kind, steps: k, rmsToDdim100: rms(y, ref) }));
    y.dispose();
  }
  ref.dispose();
}

if (what.has('intervals')) {
  if (!(path.alpha(path.tMax) > 0)) throw new Error(`--what intervals: works in scaled coordinates, which a '${path.kind}' teacher does not have; use --what drift`);
  const cp = consistencyParam({ path, sigmaData, inner: teacher.param });
  const grid = consistencyGrid(cp, 20);
  const z = new Rng(3).normal(shape);
  const net = teacher.network;
  const D = (x: tf.Tensor, t: number): tf.Tensor => predictBatch(net, teacher.param, x, new Float64Array(n).fill(t), cond);
  for (let k = 0; k < grid.length - 1; k++) {
    const [tLo, tHi] = [grid[k], grid[k + 1]];
    tf.tidy(() => {
      const xHi = tf.add(tf.mul(x0, path.alpha(tHi)), tf.mul(z, path.sigma(tHi)));
      const sHi = path.sigma(tHi) / path.alpha(tHi);
      const sLo = path.sigma(tLo) / path.alpha(tLo);
      // One Heun step of the probability-flow ODE in scaled coordinates, as the distillation loss takes it.
      const xs = tf.div(xHi, path.alpha(tHi));
      const d = tf.div(tf.sub(xs, D(xHi, tHi)), sHi);
      const xsEuler = tf.add(xs, tf.mul(d, sLo - sHi));
      const dLo = tf.div(tf.sub(xsEuler, D(tf.mul(xsEuler, path.alpha(tLo)), tLo)), sLo);
      const xLo = tf.mul(tf.add(xs, tf.mul(tf.add(d, dLo), (sLo - sHi) / 2)), path.alpha(tLo));
      const online = consistencyForward(net, cp, xHi, new Float64Array(n).fill(tHi), cond);
      const target = consistencyForward(net, cp, xLo, new Float64Array(n).fill(tLo), cond);
      console.log(JSON.stringify({ diagnostic: 'intervals', sigmaData, interval: k, tHi, sigmaOverAlpha: sHi, rmsOnlineToTarget: rms(online, target), rmsX0EstimateToData: rms(D(xHi, tHi), x0) }));
    });
  }
  z.dispose();
}

if (what.has('drift')) {
  // The teacher's own sampler and step count (DDIM 10 for a diffusion teacher, flow-Euler 10 for a flow one).
  const ref = run(teacher, teacher.config.sampler, { kind: 'uniform', steps: teacher.config.samplingSteps });
  const d = policyDistiller(teacher, demos, { steps: Math.max(1, steps), batchSize: 64, seed: 1, lr, sigmaData, metric: o.metric as 'l2' | 'pseudo-huber' });
  for (let s = 0; s <= steps; s++) {
    if (s % every === 0 || s === steps) {
      const student = d.student();
      const y = run(student, 'consistency-1step', { kind: 'uniform', steps: 1 });
      console.log(JSON.stringify({ diagnostic: 'drift', step: s, lr, sigmaData, metric: o.metric, teacherSampler: `${teacher.config.sampler}-${teacher.config.samplingSteps}`, rmsOneStepToTeacher: rms(y, ref) }));
      y.dispose();
      student.dispose();
    }
    if (s < steps) d.trainer.trainStep();
  }
  d.dispose();
  ref.dispose();
}
teacher.dispose();
