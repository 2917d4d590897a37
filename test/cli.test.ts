/** The `scoreflow` command as a user runs it: exit codes, one-line errors, JSON output. */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const bin = path.resolve('bin/scoreflow.js');
/**
 * Run the command as a child process without blocking this test worker: a synchronous spawn
 * would hold the worker's event loop for the whole command, and vitest's worker RPC gives up
 * (an unhandled "Timeout calling onTaskUpdate") once its loop has been blocked for 60 s.
 */
const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });

describe('scoreflow CLI', () => {
  it('doctor --json reports the backend and why', async () => {
    const r = await run(['doctor', '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(['wasm', 'tensorflow']).toContain(info.backend);
    expect(info.reason).toMatch(/auto/);
    expect(info.selfTest).toMatch(/^ok/);
    expect(info.kernels.optimizer).toBe('WebAssembly SIMD update (float32 arithmetic by default; float64 where optimizer.precision asks for it)');
    if (info.backend === 'wasm') {
      expect(info.kernels.matMulFix).toBe(true);
      expect(info.kernels.heapKernels).toMatch(/^SIMD/);
    }
  });

  it('user errors exit 2 with one line and no stack trace', async () => {
    for (const args of [['bogus'], ['toy', 'sample', '--checkpoint', '/nonexistent', '--sampler', 'nope'], ['toy', 'train', '--steps', 'abc'], ['robot', 'eval', '--env', 'mars', '--checkpoint', 'x']]) {
      const r = await run(args);
      expect(r.code).toBe(2);
      const first = r.stderr.trim().split('\n')[0];
      expect(first).toMatch(/^scoreflow: /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect((await run(['toy', 'sample', '--checkpoint', '/nonexistent'])).stderr).toMatch(/no model.json found/);
  });

  it('missing or malformed input files, unusable output paths and a bad thread count are user errors: one line, exit 2', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-cli-data-'));
    const cases: [string[], RegExp][] = [
      [['robot', 'train', '--env', 'pusht', '--data', path.join(dir, 'none.mcap'), '--steps', '1'], /readMcap: file not found: .*none\.mcap/],
      [['robot', 'train', '--env', 'pusht', '--data', 'README.md', '--steps', '1'], /README\.md is not an MCAP file/],
      [['robot', 'import', '--zarr', dir, '--out', path.join(dir, 'x.mcap')], /meta\/episode_ends' has no \.zarray metadata/],
      [['robot', 'import', '--zarr', path.join(dir, 'missing.zarr')], /no replay buffer at .*missing\.zarr/],
      [['robot', 'train', '--env', 'pusht', '--out', 'README.md', '--steps', '1'], /--out 'README\.md': exists and is not a directory/],
      [['toy', 'train', '--out', 'README.md/run', '--steps', '1'], /--out 'README\.md\/run': cannot create it \(ENOTDIR/],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    }
    const child = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, [bin, 'doctor'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SCOREFLOW_WASM_THREADS: 'abc' } });
      let stderr = '';
      c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      c.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    });
    expect(child.code).toBe(2);
    expect(child.stderr.trim()).toBe('scoreflow: SCOREFLOW_WASM_THREADS must be a positive integer, got abc');
  });

  it('robot eval without --checkpoint evaluates the policy shipped for the environment', async () => {
    const r = await run(['robot', 'eval', '--env', 'arm-reach', '--episodes', '1', '--seed', '3', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(out).toMatchObject({ event: 'eval', env: 'arm-reach', episodes: 1 });
    expect(path.relative(process.cwd(), out.checkpoint)).toBe(path.join('models', 'arm-reach-policy'));
  });

  it('robot eval and train reject bad sampling and prediction options with one line', async () => {
    const cases: [string[], RegExp][] = [
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--temperature=-1'], /--temperature: expected a number >= 0/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--action-horizon', '16'], /--action-horizon: at most Tp - To \+ 1 = 15/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--action-horizon', '0'], /--action-horizon: expected an integer >= 1/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--guide-mode', 'projection'], /--guide-mode, .* need --guide/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--guide', 'region:1', '--guide-mode', 'push'], /--guide-mode: unknown value 'push' \(expected one of gradient, projection\)/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--guide', 'region:1', '--guide-margin=-1'], /--guide-margin: expected a number >= 0, received '-1'/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--guide', 'region:1', '--guide-max-step', '0'], /--guide-max-step: expected a number > 0/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--guide', 'region:5', '--guide-mode', 'projection'], /Polyak step multiplier in \(0, 4\], received 5/],
      // serve / bridge check their guidance against the policy before starting a worker or a socket.
      [['robot', 'serve', '--env', 'pusht', '--port', '0', '--guide', 'region:1'], /'region' guidance needs forbidden circles/],
      [['robot', 'serve', '--env', 'pusht', '--port', '0', '--guide', 'obstacle:1'], /'obstacle' guidance is not available for env 'pusht'/],
      [['robot', 'serve', '--env', 'pusht', '--port', '0', '--candidates', '4'], /--candidates and --guide-regions need --guide/],
      [['robot', 'serve', '--env', 'pusht', '--port', '0', '--guide', 'region:1', '--guide-regions', '100,200'], /--guide-regions: circle 1 '100,200' must be three numbers x,y,r/],
      [['robot', 'bridge', '--stdio', '--env', 'arm-reach', '--guide', 'obstacle:1', '--guide-max-step', '0.3'], /maxStep only applies to mode 'projection'/],
      [['robot', 'serve', '--env', 'arm-reach', '--port', '0', '--temperature', '11'], /--temperature: expected a number in \[0, 10\]/],
      [['robot', 'drive', '--env', 'arm-reach', '--port', '50051'], /--port: drive serves in-process only/],
      [['robot', 'eval', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--guide', 'region:1', '--guide-region-model', 'pd'], /--guide-region-model: unknown value 'pd' \(expected one of targets, path\)/],
      [['robot', 'drive', '--env', 'arm-reach', '--seconds', '0'], /--seconds: expected a number in \[1, 86400\]/],
      [['robot', 'export', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--out', path.join(os.tmpdir(), 'sf-never'), '--temperature=-1'], /--temperature: expected a number >= 0/],
      [['robot', 'export', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--out', path.join(os.tmpdir(), 'sf-never'), '--temperature', 'warm'], /--temperature: expected a number, received 'warm'/],
      [['robot', 'export', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--out', path.join(os.tmpdir(), 'sf-never'), '--action-horizon', '16'], /--action-horizon: .*Ta = 16 must be <= Tp - To \+ 1 = 15/],
      [['robot', 'export', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--out', path.join(os.tmpdir(), 'sf-never'), '--action-horizon', '2.5'], /--action-horizon: expected an integer >= 1, received '2.5'/],
      [['robot', 'train', '--env', 'pusht', '--objective', 'flow-matching', '--prediction', 'eps'], /--prediction: flow matching always predicts the velocity/],
      [['robot', 'train', '--env', 'pusht', '--prediction', 'score'], /--prediction: unknown value 'score' \(expected one of eps, x0, v\)/],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('robot drive runs arm-reach in real time through the served, guided policy and reports JSON', async () => {
    const r = await run(['robot', 'drive', '--env', 'arm-reach', '--seconds', '3', '--seed', '1000', '--guide', 'obstacle:1', '--guide-mode', 'projection', '--guide-max-step', '0.3', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(out).toMatchObject({ event: 'drive', env: 'arm-reach', seed: 1000, rateHz: 50, inferenceErrors: 0 });
    expect(JSON.parse(out.guidance)).toEqual({ spec: 'obstacle:1', mode: 'projection', maxStep: 0.3 });
    // Timing-free checks (CI shares two cores between test files): the loop ticked, chunks came, the arm moved.
    expect(out.ticks).toBeGreaterThan(50);
    expect(out.chunksReceived).toBeGreaterThan(0);
    expect(out.envSteps).toBeGreaterThan(0);
  });

  it('robot export --temperature / --action-horizon store the policy\'s sampling defaults, and eval uses them', async () => {
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'sf-export-')), 'policy');
    const r = await run(['robot', 'export', '--env', 'pusht', '--checkpoint', 'models/pusht-policy', '--out', out, '--temperature', '0.7', '--action-horizon', '5', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop() as string)).toMatchObject({ event: 'export', out });
    const policyOf = (dir: string): { temperature?: number; actionHorizon: number } =>
      (JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8')) as { meta: { extra: { policy: { temperature?: number; actionHorizon: number } } } }).meta.extra.policy;
    expect(policyOf(out)).toMatchObject({ temperature: 0.7, actionHorizon: 5 });
    // Options not passed keep what the checkpoint stores.
    expect(policyOf('models/pusht-policy').actionHorizon).toBe(8);
    const again = path.join(path.dirname(out), 'again');
    expect((await run(['robot', 'export', '--env', 'pusht', '--checkpoint', out, '--out', again])).code).toBe(0);
    expect(policyOf(again)).toMatchObject({ temperature: 0.7, actionHorizon: 5 });
    const e = await run(['robot', 'eval', '--env', 'pusht', '--checkpoint', out, '--episodes', '1', '--json']);
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout.trim().split('\n').pop() as string)).toMatchObject({ event: 'eval', temperature: 0.7, actionHorizon: 5 });
  });

  it('toy train + toy sample write a checkpoint and print metrics as JSON lines', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-cli-'));
    const t = await run(['toy', 'train', '--steps', '60', '--out', dir, '--json']);
    expect(t.code).toBe(0);
    const lines = t.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.some((l) => l.event === 'progress')).toBe(true);
    expect(lines[lines.length - 1]).toMatchObject({ event: 'done', checkpoint: dir, steps: 60 });
    const s = await run(['toy', 'sample', '--checkpoint', dir, '--sampler', 'heun', '--steps', '5', '--grid', 'karras', '--n', '256', '--json']);
    expect(s.code).toBe(0);
    const m = JSON.parse(s.stdout.trim());
    expect(m).toMatchObject({ event: 'metrics', sampler: 'heun', steps: 5, n: 256 });
    expect(m.slicedWasserstein).toBeGreaterThan(0);
  });

  it('robot collect --policy (expert corrections) and robot train --init fine-tune a shipped policy; mixed or mismatched data is a usage error', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-cli-dagger-'));
    const vel = path.join(dir, 'vel.mcap');
    const pos = path.join(dir, 'pos.mcap');
    const corr = path.join(dir, 'corr.mcap');
    expect((await run(['robot', 'collect', '--env', 'arm-reach', '--episodes', '2', '--seed', '1', '--out', vel])).code).toBe(0);
    expect((await run(['robot', 'collect', '--env', 'arm-reach', '--episodes', '2', '--seed', '1', '--action-mode', 'position', '--out', pos])).code).toBe(0);
    const noisy = path.join(dir, 'noisy.mcap');
    expect((await run(['robot', 'collect', '--env', 'arm-reach', '--episodes', '2', '--seed', '2', '--action-noise', '0.3', '--noise-correlation', '0.5', '--out', noisy])).code).toBe(0);
    const c = await run(['robot', 'collect', '--env', 'arm-reach', '--policy', 'models/arm-reach-policy', '--episodes', '2', '--seed', '3', '--out', corr, '--json']);
    expect(c.code).toBe(0);
    const report = JSON.parse(c.stdout.trim().split('\n').pop() as string);
    expect(report).toMatchObject({ event: 'collect', rollouts: 2, out: corr });
    expect(report.corrections + report.failed).toBe(report.queried);
    const ft = path.join(dir, 'ft');
    const t = await run(['robot', 'train', '--env', 'arm-reach', '--data', `${vel},${noisy},${corr}`, '--init', 'models/arm-reach-policy', '--steps', '2', '--batch', '8', '--out', ft, '--json']);
    expect(t.code).toBe(0);
    expect(JSON.parse(t.stdout.trim().split('\n').pop() as string)).toMatchObject({ event: 'done', checkpoint: ft });

    const errors: [string[], RegExp][] = [
      [['robot', 'train', '--env', 'arm-reach', '--data', `${vel},${pos}`, '--steps', '1'], /mixes position and velocity action episodes|mixes velocity and position action episodes/],
      [['robot', 'train', '--env', 'arm-reach', '--data', pos, '--init', 'models/arm-reach-policy', '--steps', '1'], /acts with velocity actions, the data has position actions/],
      [['robot', 'train', '--env', 'arm-reach', '--data', vel, '--init', 'models/arm-reach-policy', '--resume', ft], /--init and --resume: pass one/],
      [['robot', 'train', '--env', 'arm-reach', '--data', vel, '--init', 'models/arm-reach-policy', '--channels', '16,32'], /--channels: a fine-tuned policy keeps the network/],
      [['robot', 'collect', '--env', 'arm-reach', '--policy', 'models/arm-reach-policy', '--action-mode', 'position'], /--action-mode: corrections use the action mode/],
      [['robot', 'collect', '--env', 'arm-reach', '--every', '2'], /--every: only with --policy/],
      [['robot', 'collect', '--env', 'arm-reach', '--action-mode', 'torque'], /action-mode/],
      [['robot', 'collect', '--env', 'arm-reach', '--action-noise', 'loud'], /--action-noise: expected a number/],
      [['robot', 'collect', '--env', 'arm-reach', '--action-noise=-0.1'], /--action-noise: expected a standard deviation >= 0/],
      [['robot', 'collect', '--env', 'arm-reach', '--action-noise', '0.3', '--noise-correlation', '1'], /--noise-correlation: expected a number in \[0, 1\)/],
      [['robot', 'collect', '--env', 'arm-reach', '--noise-correlation', '0.5'], /--noise-correlation: only with --action-noise/],
      [['robot', 'collect', '--env', 'arm-reach', '--policy', 'models/arm-reach-policy', '--action-noise', '0.3'], /--action-noise: only for expert demonstrations/],
    ];
    for (const [args, message] of errors) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  }, 240_000);
});
