/**
 * Pinned rows in served chunks (Observation.pinned_actions): the control loop's `pinLatency`
 * sends the rows it executes until a chunk arrives, and the served chunk must start with them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envForPolicy } from '../../domains/robotics/envs.js';
import type { Env } from '../../domains/robotics/env/types.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { shippedPolicyDir } from '../../domains/robotics/serve/cli.js';
import { InlineEngine, WorkerEngine } from '../../domains/robotics/serve/engine.js';
import { PolicyHost } from '../../domains/robotics/serve/host.js';
import { LocalPolicy } from '../../domains/robotics/serve/localPolicy.js';
import type { PinnedRows, TimedChunk } from '../../domains/robotics/control/types.js';

let policy: DiffusionPolicy;
let env: Env;
let obs: Float64Array[];

beforeAll(async () => {
  policy = DiffusionPolicy.load(shippedPolicyDir('arm-reach'), { env: 'arm-reach' });
  env = await envForPolicy(policy.config);
  obs = [0, 1, 2].map((seed) => env.reset({ seed }));
});

afterAll(() => {
  env?.close();
  policy?.dispose();
});

/** Rows far from what the policy would do unpinned, so an ignored pin cannot pass. */
function pins(firstRow: number, n: number, scale = 1): PinnedRows {
  return { firstRow, rows: Array.from({ length: n }, (_, k) => Float64Array.of(0.3 * scale, -0.2 * scale * (k + 1), 0.1)) };
}

function expectRowsPinned(c: TimedChunk, p: PinnedRows): void {
  p.rows.forEach((row, k) => {
    const r = p.firstRow + k;
    if (r < 0) return; // rows before the observation condition the chunk but are not returned
    row.forEach((v, j) => expect(c.actions[r]![j]).toBeCloseTo(v, 4));
  });
  // The first free row is sampled, not a copy of the last pin.
  const free = c.actions[p.firstRow + p.rows.length]!;
  expect(Math.max(...Array.from(free, (v, j) => Math.abs(v - p.rows[p.rows.length - 1]![j]!)))).toBeGreaterThan(1e-3);
}

describe('served chunks honour pinned rows', () => {
  it('InlineEngine batch: each session gets its own pins, with and without guided candidates', async () => {
    for (const sampling of [{}, { guidance: { spec: 'obstacle:1', candidates: 3 } }]) {
      const host = new PolicyHost(new InlineEngine(policy, env.observationSpec, env.dt, sampling));
      const a = new LocalPolicy(host);
      const b = new LocalPolicy(host);
      const c = new LocalPolicy(host);
      const pa = pins(-1, 4);
      const pb = pins(0, 2, -1);
      // Pinned from the past row, pinned from now, free: the first request starts a batch at once,
      // the other two wait and share the next one (a pinned and a free window in one batch).
      const [ca, cb, cc] = await Promise.all([
        a.requestChunk({ timeMs: 0, seq: 0, state: obs[0]! }, { pinned: pa }),
        b.requestChunk({ timeMs: 0, seq: 0, state: obs[1]! }, { pinned: pb }),
        c.requestChunk({ timeMs: 0, seq: 0, state: obs[2]! }),
      ]);
      expect(host.stats()).toMatchObject({ batches: 2, batchedRequests: 3 });
      expectRowsPinned(ca, pa);
      expectRowsPinned(cb, pb);
      expect(Math.abs(cc.actions[0]![0]! - 0.3)).toBeGreaterThan(1e-3);
      for (const p of [a, b, c]) await p.close();
      host.close();
    }
  });

  it('rejects bad pins with a message naming the field, and the session goes on', async () => {
    const host = new PolicyHost(new InlineEngine(policy, env.observationSpec, env.dt));
    const p = new LocalPolicy(host);
    const req = (seq: number, pinned: PinnedRows) => p.requestChunk({ timeMs: seq * 100, seq, state: obs[0]! }, { pinned });
    await expect(req(0, pins(-2, 1))).rejects.toThrow(/pinned_first_row: expected >= -1, received -2/);
    await expect(req(1, pins(0, 15))).rejects.toThrow(/pinned_actions: at most 14 rows from row 0 \(the chunk has 15 rows and one must stay free\)/);
    await expect(req(2, { firstRow: 0, rows: [Float64Array.of(0, NaN, 0)] })).rejects.toThrow(/pinned_actions\[0\]\[1\] is NaN; pinned actions must be finite/);
    // On the wire: a flat list that is not whole rows, pins on a history-only observation, a row with no actions.
    // A rejected observation is answered with a rejection chunk; the session stays open.
    const raw = (extra: object) => {
      let rejected: string | undefined;
      let ended = false;
      const s = host.openSession({ chunk: (m) => (rejected = `${m.errorCode}: ${m.errorMessage}`), error: () => (ended = true) });
      s.push({ timestampNs: 0n, seq: 0n, state: Array.from(obs[0]!), tensors: {}, sessionId: '', historyOnly: false, resetHistory: false, pinnedActions: [], pinnedFirstRow: 0, ...extra });
      expect(ended).toBe(false);
      expect(s.open).toBe(true);
      s.close();
      return rejected;
    };
    expect(raw({ pinnedActions: [1, 2, 3, 4] })).toMatch(/^INVALID_ARGUMENT: pinned_actions: expected a multiple of action_dim 3 values/);
    expect(raw({ pinnedActions: [1, 2, 3], historyOnly: true })).toMatch(/not allowed on a history_only observation/);
    expect(raw({ pinnedFirstRow: -1 })).toMatch(/pinned_first_row is -1 but pinned_actions is empty/);
    // The same session answers a good request.
    const ok = await req(10, pins(0, 3));
    expectRowsPinned(ok, pins(0, 3));
    await p.close();
    host.close();
  });

  it('WorkerEngine passes the pins to its worker thread', async () => {
    const engine = await WorkerEngine.start({ checkpoint: shippedPolicyDir('arm-reach'), env: 'arm-reach' });
    try {
      const host = new PolicyHost(engine);
      const p = new LocalPolicy(host);
      const pinned = pins(-1, 3);
      expectRowsPinned(await p.requestChunk({ timeMs: 0, seq: 0, state: obs[0]! }, { pinned }), pinned);
      await expect(engine.predict([[obs[0]!, obs[0]!]], 0, [pins(1, 1)])).rejects.toThrow(/predict: pins\[0\]\.firstRow: expected <= 0, received 1/);
      await p.close();
      host.close();
    } finally {
      await engine.close();
    }
  });
});
