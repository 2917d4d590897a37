import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
const mod = (p: string): string => JSON.stringify(pathToFileURL(path.join(root, p)).href);

/** Run an ES module in a fresh Node process (no test setup, so no backend) and return its stdout. */
function runFresh(source: string): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-backend-'));
  const file = path.join(dir, 'main.mts');
  writeFileSync(file, source);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      rmSync(dir, { recursive: true, force: true });
      if (code !== 0) reject(new Error(`exit ${code}: ${err}`));
      else resolve(out);
    });
  });
}

describe('requireBackend', () => {
  it('tells a caller who never chose a backend what to do, and lets everyone else through', async () => {
    const out = await runFresh(`
      import { DiffusionPolicy } from ${mod('domains/robotics/policy/policy.ts')};
      import { setBackend } from ${mod('src/backend/backend.ts')};
      const report = (f) => { try { f(); return 'ok'; } catch (e) { return e.name + ': ' + e.message; } };
      console.log(report(() => DiffusionPolicy.load(${JSON.stringify(path.join(root, 'models/pusht-policy'))})));
      await setBackend('cpu');
      console.log(report(() => DiffusionPolicy.load(${JSON.stringify(path.join(root, 'models/pusht-policy'))}).dispose()));
    `);
    const [before, after] = out.trim().split('\n');
    expect(before).toBe("ValidationError: loadCheckpoint: no tensor backend is active. Call `await setBackend('auto')` (from 'scoreflow') once before using the library");
    expect(after).toBe('ok');
  }, 120_000);
});
