/**
 * Training throughput of the Diffusion Policy U-Net on two cores, three ways:
 *   - one WASM thread (the default),
 *   - one WASM backend with two threads (`SCOREFLOW_WASM_THREADS=2`: XNNPACK's pool splits every kernel),
 *   - data parallelism (`robot train --workers 2`: two one-thread backends, half a batch each).
 *
 *   npx tsx benchmarks/dataParallel.ts [--env arm-reach|pusht] [--batch 128] [--steps 40] [--rounds 3]
 *
 * The WASM thread count is fixed per process, so every configuration runs in a child process
 * (this file with `--child`); configurations alternate over rounds so that load from other
 * processes hits them alike. The network is the shipped policy's (same configuration, fresh
 * weights), on random windows of the environment's sizes. Writes
 * benchmarks/results/data-parallel-<env>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setBackend } from '../src/backend/backend.js';
import { policyTrainer } from '../domains/robotics/policy/train.js';
import { shippedConfigAndRandomDemos } from './policyData.js';
import { median } from './timing.js';

interface Config {
  readonly threads: number;
  readonly workers: number;
}
const CONFIGS: Config[] = [
  { threads: 1, workers: 1 },
  { threads: 2, workers: 1 },
  { threads: 1, workers: 2 },
];
const label = (c: Config): string => (c.workers > 1 ? `${c.workers} workers x 1 thread (data parallel)` : `1 backend x ${c.threads} thread${c.threads > 1 ? 's' : ''}`);

interface ChildResult {
  readonly threads: number;
  readonly workers: number;
  readonly stepMs: number[];
  readonly medianMs: number;
}

const { values: args } = parseArgs({
  options: { env: { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' }, rounds: { type: 'string' }, child: { type: 'boolean' }, threads: { type: 'string' }, workers: { type: 'string' } },
});
const envArg = args.env ?? 'arm-reach';
if (envArg !== 'arm-reach' && envArg !== 'pusht') throw new Error(`--env: expected arm-reach or pusht, received ${envArg}`);
const env: 'arm-reach' | 'pusht' = envArg;
const batch = Number(args.batch ?? 128);
const steps = Number(args.steps ?? 40);
const rounds = Number(args.rounds ?? 3);
for (const [k, v] of [['batch', batch], ['steps', steps], ['rounds', rounds]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k}: expected a positive integer, received ${String(v)}`);
}

async function child(threads: number, workers: number): Promise<ChildResult> {
  await setBackend('wasm', { threads });
  const { cfg, demos } = shippedConfigAndRandomDemos(env);
  const run = policyTrainer(demos, cfg, { steps: steps + 10, batchSize: batch, seed: 0 });
  try {
    if (workers > 1) await run.startWorkers(workers - 1);
    for (let i = 0; i < 5; i++) run.trainer.trainStep();
    const stepMs: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      run.trainer.trainStep();
      stepMs.push(performance.now() - t0);
    }
    return { threads, workers, stepMs, medianMs: median(stepMs) };
  } finally {
    await run.trainer.stopReplicas();
    run.dispose();
  }
}

function runChild(c: Config): Promise<ChildResult> {
  const file = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, file, '--child', '--threads', String(c.threads), '--workers', String(c.workers), '--env', env, '--batch', String(batch), '--steps', String(steps)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, SCOREFLOW_WASM_THREADS: undefined },
    });
    let out = '';
    p.stdout.on('data', (d) => (out += String(d)));
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`child ${label(c)} exited with ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop() as string) as ChildResult);
    });
  });
}

if (args.child) {
  const r = await child(Number(args.threads), Number(args.workers));
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(0);
} else {
  const loadavgBefore = os.loadavg();
  const byConfig = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    for (const c of CONFIGS) {
      const res = await runChild(c);
      byConfig.set(label(c), [...(byConfig.get(label(c)) ?? []), res.medianMs]);
      console.error(`round ${r + 1}: ${label(c).padEnd(40)} ${res.medianMs.toFixed(1)} ms/step`);
    }
  }
  const base = Math.min(...(byConfig.get(label(CONFIGS[0])) as number[]));
  const rows = CONFIGS.map((c) => {
    const ms = byConfig.get(label(c)) as number[];
    const best = Math.min(...ms);
    return { config: label(c), threads: c.threads, workers: c.workers, medianMsPerRound: ms, bestMs: best, samplesPerSec: (1000 * batch) / best, speedupOverOneThread: base / best };
  });
  console.log(`${env} policy U-Net, batch ${batch}, ${steps} timed steps per run, best of ${rounds} alternating rounds:`);
  for (const r of rows) console.log(`  ${r.config.padEnd(40)} ${r.bestMs.toFixed(1).padStart(7)} ms/step  ${r.samplesPerSec.toFixed(0).padStart(5)} samples/s  ${r.speedupOverOneThread.toFixed(2)}x`);
  const outDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `data-parallel-${env}.json`);
  writeFileSync(out, JSON.stringify({ benchmark: 'data-parallel', env, date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, loadavgBefore, batch, steps, rounds, rows }, null, 2) + '\n');
  console.log(`wrote ${out}`);
}
