/**
 * Where a training step of the core's MLP denoiser spends its time, next to its forward pass:
 * the "train step within 3x of the forward" question answered kernel by kernel.
 *
 *   npx tsx benchmarks/trainProfile.ts [--width 512] [--batch 256] [--threads 1] [--out FILE]
 *
 * Prints (and writes as JSON) the median train step and forward pass (wall time), the train
 * step's kernels from `tf.profile` grouped into matrix products / element-wise and reductions /
 * the rest, and the time outside kernels (the fused optimiser pass and the tape's bookkeeping).
 * The forward pass runs through kernel replay (src/nn/replay.ts), so it is timed, not profiled.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setBackend } from '../src/backend/backend.js';
import { installWasmMatMulFix } from '../src/backend/wasmMatMul.js';
import { mlpBench } from './core.js';
import { median } from './timing.js';

export interface TrainProfile {
  readonly width: number;
  readonly batch: number;
  readonly threads: number;
  readonly trainStepMs: number;
  readonly forwardMs: number;
  readonly ratio: number;
  /** Kernel time inside one profiled train step, by group. */
  readonly kernelsMs: { readonly matMul: number; readonly elementwise: number; readonly other: number };
  /** Train-step matrix products alone, in units of the forward pass. */
  readonly matMulRatio: number;
  /** Profiled step minus its kernels: the optimiser pass, tape bookkeeping, data gather. */
  readonly outsideKernelsMs: number;
  readonly kernels: number;
  readonly top: { readonly kernel: string; readonly calls: number; readonly ms: number }[];
}

const MATMUL = new Set(['BatchMatMul', '_FusedMatMul', 'MatMul']);
const ELEMENTWISE = new Set(['Add', 'AddN', 'Sub', 'Multiply', 'RealDiv', 'Sigmoid', 'Sum', 'Mean', 'Square', 'Exp', 'Neg', 'Relu', 'Cast', 'Identity', 'Maximum', 'Minimum', 'Sqrt', 'Rsqrt', 'Step', 'Pow', 'Tile', 'Sin', 'Cos']);

export async function profileTrainStep(opts: { width: number; batch: number; threads: number; reps?: number }): Promise<TrainProfile> {
  const { width, batch, threads } = opts;
  if (!Number.isInteger(width) || width < 1) throw new Error(`--width: expected a positive integer, received ${width}`);
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`--batch: expected a positive integer, received ${batch}`);
  await setBackend('wasm', { threads });
  installWasmMatMulFix();
  const { trainer, den, xb, dispose } = mlpBench(width, batch);
  const forward = (): void => void tf.tidy(() => den(xb, 0.5).dataSync());
  for (let i = 0; i < 3; i++) {
    trainer.trainStep();
    forward();
  }
  // Alternate the two so a slow stretch of the machine hits both alike.
  const train: number[] = [];
  const fwd: number[] = [];
  for (let i = 0; i < (opts.reps ?? 15); i++) {
    let t = performance.now();
    trainer.trainStep();
    train.push(performance.now() - t);
    t = performance.now();
    forward();
    fwd.push(performance.now() - t);
  }
  const trainStepMs = median(train);
  const forwardMs = median(fwd);

  const t0 = performance.now();
  const prof = await tf.profile(() => void trainer.trainStep());
  const profiledMs = performance.now() - t0;
  const groups = { matMul: 0, elementwise: 0, other: 0 };
  const byKernel = new Map<string, { calls: number; ms: number }>();
  for (const k of prof.kernels) {
    const raw = await Promise.resolve(k.kernelTimeMs as unknown);
    const ms = typeof raw === 'number' ? raw : ((raw as { kernelMs?: number } | undefined)?.kernelMs ?? 0);
    const group = MATMUL.has(k.name) ? 'matMul' : ELEMENTWISE.has(k.name) ? 'elementwise' : 'other';
    groups[group] += ms;
    const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
    const e = byKernel.get(key) ?? { calls: 0, ms: 0 };
    e.calls++;
    e.ms += ms;
    byKernel.set(key, e);
  }
  const kernelTotal = groups.matMul + groups.elementwise + groups.other;
  dispose();
  const r1 = (v: number): number => Math.round(v * 10) / 10;
  return {
    width,
    batch,
    threads,
    trainStepMs: r1(trainStepMs),
    forwardMs: r1(forwardMs),
    ratio: Math.round((trainStepMs / forwardMs) * 100) / 100,
    kernelsMs: { matMul: r1(groups.matMul), elementwise: r1(groups.elementwise), other: r1(groups.other) },
    matMulRatio: Math.round((groups.matMul / forwardMs) * 100) / 100,
    outsideKernelsMs: r1(Math.max(0, profiledMs - kernelTotal)),
    kernels: prof.kernels.length,
    top: [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 8).map(([kernel, v]) => ({ kernel, calls: v.calls, ms: r1(v.ms) })),
  };
}

const isMain = process.argv[1] && path.resolve(process.argv[1]).endsWith(path.join('benchmarks', 'trainProfile.ts'));
if (isMain) {
  const { values } = parseArgs({ options: { width: { type: 'string', default: '512' }, batch: { type: 'string', default: '256' }, threads: { type: 'string', default: '1' }, out: { type: 'string' } } });
  const p = await profileTrainStep({ width: Number(values.width), batch: Number(values.batch), threads: Number(values.threads) });
  const out = values.out ?? 'benchmarks/results/train-profile.json';
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ ...p, date: new Date().toISOString() }, null, 1));
  console.log(`MLP width ${p.width}, batch ${p.batch}, ${p.threads} thread(s): train step ${p.trainStepMs} ms, forward ${p.forwardMs} ms (${p.ratio}x)`);
  console.log(`one profiled train step: matrix products ${p.kernelsMs.matMul} ms (${p.matMulRatio}x the forward), element-wise/reductions ${p.kernelsMs.elementwise} ms, other kernels ${p.kernelsMs.other} ms, outside kernels (optimiser, tape) ${p.outsideKernelsMs} ms; ${p.kernels} kernels`);
  for (const t of p.top) console.log(`  ${String(t.ms).padStart(7)} ms ${String(t.calls).padStart(4)}x ${t.kernel}`);
}
