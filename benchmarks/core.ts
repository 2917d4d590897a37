/**
 * Core timings for the MLP denoiser: one training step (forward + backward + AdamW) and sampler
 * latency at 1, 10 and 50 steps, for several widths and batch sizes. Run in its own process per
 * configuration (WASM threads are fixed when the backend starts):
 *   npx tsx benchmarks/core.ts --threads 1 --fix on --out benchmarks/results/core-t1-fix.json
 */
import * as tf from '@tensorflow/tfjs-core';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setBackend } from '../src/backend/backend.js';
import { installWasmMatMulFix, uninstallWasmMatMulFix } from '../src/backend/wasmMatMul.js';
import { wrapNetwork, type Denoiser } from '../src/denoiser/denoiser.js';
import { flowMatchingLoss } from '../src/loss/flowMatching.js';
import { buildNetwork } from '../src/nn/registry.js';
import { ParamStore } from '../src/nn/params.js';
import { rectifiedFlow } from '../src/path/flow.js';
import { Rng } from '../src/rng/rng.js';
import { sample } from '../src/sample/registry.js';
import { Trainer } from '../src/train/trainer.js';
import { timeCalls } from './timing.js';

export interface CoreRow {
  readonly width: number;
  readonly batch: number;
  readonly trainStepMs: number;
  readonly forwardMs: number;
  readonly sample1Ms: number;
  readonly sample10Ms: number;
  readonly sample50Ms: number;
}

/** Median wall time of `reps` calls after one warm-up. */
const time = (fn: () => void, reps: number): number => timeCalls(fn, reps, 1).medianMs;

/**
 * The benchmarked MLP denoiser (depth 3, 2-D data, flow matching with AdamW): a trainer on a
 * random batch, the same network wrapped as a denoiser, and a forward input of `batch` rows.
 */
export function mlpBench(width: number, batch: number): { trainer: Trainer; den: Denoiser; xb: tf.Tensor; dispose: () => void } {
  const param = { path: rectifiedFlow(), prediction: 'velocity' as const };
  const model = { kind: 'mlp', config: { dim: 2, width, depth: 3 } };
  const x = tf.randomNormal([Math.max(batch, 2), 2], 0, 1, 'float32', 1);
  const loss = flowMatchingLoss({ param, checkFinite: false });
  const trainer = new Trainer({ model, steps: 1_000_000, batchSize: batch, seed: 0, optimizer: { kind: 'adamw' } }, ({ net, rng }, b) => loss(net, b.x, rng), { x });
  const store = new ParamStore(new Rng(0));
  const den = wrapNetwork(buildNetwork(model, store), param);
  const xb = tf.randomNormal([batch, 2]);
  return {
    trainer,
    den,
    xb,
    dispose: () => {
      trainer.dispose();
      store.dispose();
      x.dispose();
      xb.dispose();
    },
  };
}

export async function runCoreBench(opts: { threads: number; fix: boolean; widths?: number[]; batches?: number[] }): Promise<{ threads: number; fix: boolean; backend: string; rows: CoreRow[] }> {
  const choice = await setBackend('wasm', { threads: opts.threads });
  if (opts.fix) installWasmMatMulFix();
  else uninstallWasmMatMulFix();
  const path_ = rectifiedFlow();
  const rows: CoreRow[] = [];
  for (const width of opts.widths ?? [64, 256, 512]) {
    for (const batch of opts.batches ?? [1, 256]) {
      const { trainer, den, xb, dispose } = mlpBench(width, batch);
      const trainStepMs = time(() => trainer.trainStep(), batch >= 256 ? 10 : 30);
      const forwardMs = time(() => tf.tidy(() => den(xb, 0.5).dataSync()), 20);
      const s = (steps: number): number =>
        time(() => {
          const y = sample({ denoiser: den, path: path_, shape: [batch, 2], sampler: 'flow-euler', grid: { kind: 'uniform', steps }, rng: new Rng(1) });
          y.dataSync();
          y.dispose();
        }, steps >= 50 ? 3 : 10);
      rows.push({ width, batch, trainStepMs, forwardMs, sample1Ms: s(1), sample10Ms: s(10), sample50Ms: s(50) });
      dispose();
    }
  }
  return { threads: opts.threads, fix: opts.fix, backend: choice.backend, rows };
}

const isMain = process.argv[1] && path.resolve(process.argv[1]).endsWith(path.join('benchmarks', 'core.ts'));
if (isMain) {
  const { values } = parseArgs({ options: { threads: { type: 'string', default: '1' }, fix: { type: 'string', default: 'on' }, out: { type: 'string' } } });
  const r = await runCoreBench({ threads: Number(values.threads), fix: values.fix !== 'off' });
  const out = values.out ?? `benchmarks/results/core-t${values.threads}-fix${values.fix}.json`;
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ ...r, date: new Date().toISOString() }, null, 1));
  console.log(JSON.stringify(r));
}
