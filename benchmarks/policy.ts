/**
 * Chunk latency of a shipped policy: time `predictChunks` for one observation window (the
 * control-loop case) over many windows taken from real episodes.
 *   npx tsx benchmarks/policy.ts [--checkpoint models/pusht-policy] [--env pusht] [--n 200] [--steps 10,5,1] [--out FILE]
 * Writes benchmarks/results/policy-<env>.json unless --out names another file.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setBackend } from '../src/backend/backend.js';
import type { SamplerName } from '../src/sample/registry.js';
import { envForPolicy } from '../domains/robotics/envs.js';
import { DiffusionPolicy } from '../domains/robotics/policy/policy.js';
import { percentile } from '../domains/robotics/policy/runner.js';

export interface PolicyLatency {
  readonly checkpoint: string;
  readonly env: string;
  readonly sampler: string;
  readonly steps: number;
  readonly n: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
}

/**
 * Default latency variants: the policy's own sampler at 10, 5 and 1 steps (DDIM for diffusion
 * policies, flow Euler for flow-matching ones), plus DPM-Solver++ 2M at 5 steps for diffusion.
 */
function samplerVariants(config: DiffusionPolicy['config']): { sampler: SamplerName; steps: number }[] {
  const own = [10, 5, 1].map((steps) => ({ sampler: config.sampler, steps }));
  return config.objective === 'flow-matching' ? own : [own[0], { sampler: 'dpmpp-2m', steps: 5 }, ...own.slice(1)];
}

export async function runPolicyBench(opts: { checkpoint: string; env: string; n?: number; variants?: { sampler: SamplerName; steps: number }[] }): Promise<PolicyLatency[]> {
  await setBackend('auto');
  const policy = DiffusionPolicy.load(opts.checkpoint, { env: opts.env });
  const env = await envForPolicy(policy.config);
  const n = opts.n ?? 200;
  // Observation windows from seeded resets followed by a few random-target steps.
  const windows: Float64Array[][] = [];
  for (let i = 0; windows.length < n; i++) {
    const o0 = env.reset({ seed: 1000 + i });
    const a = Float64Array.from(env.actionSpec.low, (lo, j) => (lo + env.actionSpec.high[j]) / 2);
    const o1 = env.step(a).observation;
    windows.push([o0, o1].slice(-policy.horizon.obs));
  }
  env.close();
  const variants = opts.variants ?? samplerVariants(policy.config);
  const out: PolicyLatency[] = [];
  for (const v of variants) {
    for (let w = 0; w < 10; w++) policy.predictChunks([windows[w]], { sampler: v.sampler, steps: v.steps, seed: w });
    const ts: number[] = [];
    windows.forEach((win, i) => ts.push(policy.predictChunks([win], { sampler: v.sampler, steps: v.steps, seed: i }).latencyMs));
    out.push({ checkpoint: opts.checkpoint, env: opts.env, sampler: v.sampler, steps: v.steps, n, p50Ms: percentile(ts, 50), p99Ms: percentile(ts, 99), meanMs: ts.reduce((a, b) => a + b, 0) / ts.length });
  }
  policy.dispose();
  return out;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { checkpoint: { type: 'string', default: 'models/pusht-policy' }, env: { type: 'string', default: 'pusht' }, n: { type: 'string', default: '200' }, steps: { type: 'string' }, out: { type: 'string' } } });
  const n = Number(values.n);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--n: expected a positive integer, received '${values.n}'`);
  let variants: { sampler: SamplerName; steps: number }[] | undefined;
  if (values.steps !== undefined) {
    const steps = values.steps.split(',').map(Number);
    if (steps.length === 0 || steps.some((k) => !Number.isInteger(k) || k < 1)) throw new Error(`--steps: expected comma-separated positive integers, received '${values.steps}'`);
    const sampler = DiffusionPolicy.readConfig(values.checkpoint as string).sampler;
    variants = steps.map((k) => ({ sampler, steps: k }));
  }
  const rows = await runPolicyBench({ checkpoint: values.checkpoint as string, env: values.env as string, n, variants });
  const file = values.out ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', `policy-${values.env}.json`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({ benchmark: 'policy-latency', date: new Date().toISOString(), rows }, null, 1));
  for (const r of rows) console.log(`${r.env} ${r.sampler}@${r.steps}: p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms (n=${r.n})`);
}
