/**
 * `npm run bench`: runs every benchmark in its own process (WASM threads are fixed per process),
 * writes benchmarks/results/*.json and prints one summary table.
 *   npm run bench            # everything (~10-15 min on 2 cores)
 *   npm run bench -- --quick # core + policy + serving (with a 20 s control loop)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const results = path.join(here, 'results');
const quick = process.argv.includes('--quick');

function run(script: string, args: string[] = []): void {
  process.stderr.write(`\n== ${script} ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, script), ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.stderr.write(`(${script} exited with ${r.status})\n`);
}

const read = (f: string): any => (existsSync(path.join(results, f)) ? JSON.parse(readFileSync(path.join(results, f), 'utf8')) : undefined); // eslint-disable-line @typescript-eslint/no-explicit-any

const coreRuns = [
  { threads: 1, fix: 'off' },
  { threads: 1, fix: 'on' },
  { threads: 2, fix: 'on' },
];
for (const c of coreRuns) run('core.ts', ['--threads', String(c.threads), '--fix', c.fix, '--out', path.join(results, `core-t${c.threads}-fix${c.fix}.json`)]);
run('trainProfile.ts');
if (!quick) {
  run('matmul.ts');
  run('heapKernels.ts');
  run('conv.ts');
  run('threads.ts');
  run('dataParallel.ts');
}
for (const [env, ck] of [['pusht', 'models/pusht-policy'], ['arm-reach', 'models/arm-reach-policy']]) {
  if (existsSync(ck)) run('policy.ts', ['--env', env, '--checkpoint', ck]);
}
run('serve.ts', quick ? ['--loop-seconds', '20', '--throughput-seconds', '5'] : []);

const lines: string[] = [];
lines.push('MLP denoiser (depth 3), flow-euler sampling, median ms');
lines.push('threads fix  width batch | train step | forward | sample 1 | sample 10 | sample 50');
for (const c of coreRuns) {
  const r = read(`core-t${c.threads}-fix${c.fix}.json`);
  if (!r) continue;
  for (const row of r.rows) {
    lines.push(
      `${String(c.threads).padStart(7)} ${c.fix.padEnd(4)} ${String(row.width).padStart(5)} ${String(row.batch).padStart(5)} | ${row.trainStepMs.toFixed(2).padStart(10)} | ${row.forwardMs.toFixed(2).padStart(7)} | ${row.sample1Ms.toFixed(2).padStart(8)} | ${row.sample10Ms.toFixed(2).padStart(9)} | ${row.sample50Ms.toFixed(2).padStart(9)}`,
    );
  }
}
const tp = read('train-profile.json');
if (tp) {
  lines.push('');
  lines.push(`MLP width ${tp.width}, batch ${tp.batch}: train step ${tp.trainStepMs} ms = ${tp.ratio}x forward ${tp.forwardMs} ms; in one profiled step matrix products ${tp.kernelsMs.matMul} ms (${tp.matMulRatio}x the forward), element-wise ${tp.kernelsMs.elementwise} ms, outside kernels ${tp.outsideKernelsMs} ms`);
}
const dp = read('data-parallel-arm-reach.json');
if (dp) {
  lines.push('');
  lines.push(`arm-reach policy U-Net training, batch ${dp.batch} (best of ${dp.rounds} alternating rounds)`);
  for (const r of dp.rows) lines.push(`  ${r.config.padEnd(40)} ${r.bestMs.toFixed(1)} ms/step, ${r.speedupOverOneThread.toFixed(2)}x`);
}
for (const env of ['pusht', 'arm-reach']) {
  const p = read(`policy-${env}.json`);
  if (!p) continue;
  lines.push('');
  lines.push(`${env} policy chunk latency (one window)`);
  for (const r of p.rows) lines.push(`  ${r.sampler}@${r.steps}: p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`);
}
const sv = read('serve.json');
if (sv) {
  const rt = sv.roundTrip;
  const cl = sv.controlLoop;
  lines.push('');
  lines.push(`pusht policy served over gRPC (${sv.sampler}, ${sv.backend})`);
  lines.push(`  loopback round trip: p50 ${rt.roundTripP50Ms} ms, p99 ${rt.roundTripP99Ms} ms (inference p50 ${rt.inferenceP50Ms} ms)`);
  lines.push(
    `  control loop 50 Hz for ${cl.seconds} s: ${cl.achievedRateHz} Hz, jitter p50 ${cl.jitterP50Ms} ms, p99 ${cl.jitterP99Ms} ms, max ${cl.jitterMaxMs} ms, ` +
      `deadline misses ${cl.deadlineMisses}, safe stops ${cl.safeStops}, Push-T max coverage ${cl.maxReward}`,
  );
  for (const t of sv.throughput) lines.push(`  ${String(t.clients).padStart(2)} clients, max batch ${String(t.maxBatch).padStart(2)}: ${t.chunksPerS} chunks/s (mean batch ${t.meanBatch}, latency p50 ${t.latencyP50Ms} ms)`);
}
process.stdout.write('\n' + lines.join('\n') + '\n');
