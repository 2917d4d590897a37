/**
 * examples/pusht-over-grpc.ts end to end: the example starts its own policy server, drives the
 * Push-T simulator through a control loop over gRPC for 20 steps (2 s of real time) and must
 * exit by itself with a healthy loop report.
 */
import { spawn } from 'node:child_process';
import * as nodePath from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = nodePath.resolve(nodePath.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TIMEOUT_MS = 90_000;

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `npx tsx examples/pusht-over-grpc.ts ...` in its own process group, killed as a group in any case. */
async function runExample(args: string[], timeoutMs: number): Promise<Run> {
  const proc = spawn('npx', ['tsx', 'examples/pusht-over-grpc.ts', ...args], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let timer: NodeJS.Timeout | undefined;
  const killGroup = (sig: NodeJS.Signals): void => {
    try {
      if (proc.pid !== undefined) process.kill(-proc.pid, sig);
    } catch {
      // The group is gone already.
    }
  };
  try {
    return await new Promise<Run>((resolve, reject) => {
      proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.on('error', reject);
      proc.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      timer = setTimeout(() => {
        killGroup('SIGKILL');
        reject(new Error(`the example did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
      }, timeoutMs);
    });
  } finally {
    clearTimeout(timer);
    // npx may leave the tsx/node child behind; nothing of the group may outlive the test.
    killGroup('SIGKILL');
  }
}

function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('examples/pusht-over-grpc.ts', () => {
  it(
    'runs Push-T in closed loop through an in-process policy server and exits by itself',
    async () => {
      const r = await runExample(['--steps', '20', '--json'], TIMEOUT_MS - 10_000);
      const detail = `stdout: ${r.stdout}\nstderr: ${r.stderr}`;
      expect(r.code, detail).toBe(0);
      const lines = jsonLines(r.stdout);
      expect(lines.map((l) => l.event), detail).toEqual(['episode', 'summary']);
      const [ep, summary] = lines as [Record<string, unknown>, Record<string, unknown>];

      // 20 steps, or success earlier.
      if (ep.success === true) {
        expect(ep.end).toBe('success');
        expect(ep.steps as number).toBeLessThanOrEqual(20);
      } else {
        expect(ep.end).toBe('truncated');
        expect(ep.steps).toBe(20);
      }
      expect(typeof ep.maxCoverage).toBe('number');
      expect(ep.maxCoverage as number).toBeGreaterThanOrEqual(0);
      expect(ep.maxCoverage as number).toBeLessThanOrEqual(1);

      // The loop kept its 10 Hz and never had to stop the robot.
      expect(ep.achievedRateHz as number, detail).toBeGreaterThanOrEqual(8);
      expect(ep.achievedRateHz as number, detail).toBeLessThanOrEqual(12);
      expect(ep.safeStops, detail).toBe(0);
      expect(ep.chunks as number).toBeGreaterThan(0);
      expect(ep.inferenceP50Ms as number).toBeGreaterThan(0);
      expect(ep.inferenceP99Ms as number).toBeGreaterThanOrEqual(ep.inferenceP50Ms as number);

      expect(summary.episodes).toBe(1);
      expect(summary.steps).toBe(ep.steps);
      expect(summary.inProcessServer).toBe(true);
      expect(summary.policyId).toBe('pusht');
    },
    TIMEOUT_MS,
  );

  it(
    'refuses bad arguments with a one-line message and exit code 2',
    async () => {
      const r = await runExample(['--steps', '0'], 30_000);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--steps: expected an integer in \[1, 100000\], received '0'/);
      expect(r.stdout).toBe('');
    },
    TIMEOUT_MS,
  );
});
