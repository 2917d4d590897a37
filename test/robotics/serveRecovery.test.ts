import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { controlLoop, type ControlAction } from '../../domains/robotics/control/controlLoop.js';
import type { TimedObservation } from '../../domains/robotics/control/types.js';
import { shippedPolicyDir } from '../../domains/robotics/serve/cli.js';
import { WorkerEngine, type EngineResult, type InferenceEngine } from '../../domains/robotics/serve/engine.js';
import { PolicyClient } from '../../domains/robotics/serve/grpcClient.js';
import { PolicyServer } from '../../domains/robotics/serve/grpcServer.js';
import { PolicyHost } from '../../domains/robotics/serve/host.js';
import { LocalPolicy } from '../../domains/robotics/serve/localPolicy.js';
import { FAKE_INFO } from './serveFixtures.js';

/**
 * A policy whose action is a smooth function of time: the newest observation carries its own
 * time in seconds in state[0], and row r (row 0 = observation time) is that time + r * dt.
 * Executed actions therefore equal the current time in seconds, whichever chunk they come from.
 */
class RampEngine implements InferenceEngine {
  readonly info = FAKE_INFO;
  async predict(windows: readonly (readonly Float64Array[])[]): Promise<EngineResult> {
    await new Promise((r) => setTimeout(r, 15));
    return {
      chunks: windows.map((w) => {
        const t = w[w.length - 1]![0]!;
        const c = new Float32Array(FAKE_INFO.rows * 2);
        for (let r = 0; r < FAKE_INFO.rows; r++) c.fill(t + r / FAKE_INFO.controlRateHz, 2 * r, 2 * r + 2);
        return c;
      }),
      latencyMs: 15,
    };
  }
  async close(): Promise<void> {}
}

describe('server restart', () => {
  it('the client reconnects with backoff and the control loop resumes without a jump', async () => {
    const engine = new RampEngine();
    let host = new PolicyHost(engine);
    let server = await PolicyServer.start(host, { port: 0 });
    const port = server.port;
    const client = new PolicyClient(server.address);
    const policy = await client.policy({ initialBackoffMs: 20, maxBackoffMs: 200, requestTimeoutMs: 500 });
    const t0 = performance.now();
    const observations$ = new Subject<TimedObservation>();
    let seq = 0;
    // The "robot" reports an observation every 20 ms whose state[0] is its own time in seconds
    // (kept small so Float32 chunks stay exact to ~1e-6).
    const obsTimer = setInterval(() => {
      const now = performance.now();
      observations$.next({ timeMs: now, seq: seq++, state: Float64Array.of((now - t0) / 1000, 0, 0, 0, 0) });
    }, 20);
    const loop = controlLoop({ policy, observations$, rateHz: 50, blendMs: 400, stopAfterMs: 6000 });
    const actions: ControlAction[] = [];
    loop.actions$.subscribe((a) => actions.push(a));
    await new Promise((r) => setTimeout(r, 1000));
    // Restart the server on the same port: every stream fails with UNAVAILABLE, then nothing
    // listens for 1.8 s, longer than the 1.5 s a chunk covers, so the loop has to hold.
    const before = policy.connects;
    await server.close(0);
    await new Promise((r) => setTimeout(r, 1800));
    host = new PolicyHost(engine);
    server = await PolicyServer.start(host, { port });
    const restartedAt = performance.now();
    // grpc-js retries the connection on its own backoff (100 ms doubling to 1 s, with jitter), so
    // on a loaded machine the first chunk after the restart can take a second or more. Wait for
    // it (bounded), then for the 400 ms crossfade to finish.
    const deadline = restartedAt + 8000;
    while (performance.now() < deadline && !actions.some((a) => a.source === 'chunk' && a.timeMs > restartedAt)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 700));
    await loop.stop();
    clearInterval(obsTimer);
    const snap = loop.snapshot();
    await policy.close();
    client.close();
    await server.close(0);

    expect(policy.connects).toBeGreaterThan(before);
    expect(host.stats().chunks).toBeGreaterThanOrEqual(1);
    const active = actions.filter((a) => a.source !== 'idle');
    const sources = new Set(active.map((a) => a.source));
    expect(sources.has('hold')).toBe(true);
    expect(snap.inferenceErrors).toBeGreaterThan(0);
    expect(sources.has('stop')).toBe(false);
    // Continuity: the ramp rises 0.02 per tick; switching straight from the held action to the
    // new chunk would jump by the whole time spent holding (measured below, >= 0.3). The
    // crossfade spreads the catch-up over 400 ms (20 ticks).
    let maxStep = 0;
    for (let i = 1; i < active.length; i++) maxStep = Math.max(maxStep, Math.abs(active[i]!.action[0]! - active[i - 1]!.action[0]!));
    const holds = active.filter((a) => a.source === 'hold');
    const holdGap = (holds.at(-1)!.timeMs - t0) / 1000 - holds.at(-1)!.action[0]!;
    expect(holdGap).toBeGreaterThan(0.25);
    expect(maxStep).toBeLessThan(holdGap / 3);
    // And it caught up: the last actions are back on the ramp (action = time in seconds).
    const last = active.at(-1)!;
    expect(['chunk', 'blend']).toContain(last.source);
    expect(Math.abs(last.action[0]! - (last.timeMs - t0) / 1000)).toBeLessThan(0.005);
    console.log(`reconnects ${policy.connects - before}, gap after holding ${holdGap.toFixed(3)}, max step ${maxStep.toFixed(4)}, inference errors ${snap.inferenceErrors}`);
  }, 30_000);
});

describe('WorkerEngine', () => {
  it('serves the shipped Push-T policy from a worker thread and restarts a crashed worker', async () => {
    const engine = await WorkerEngine.start({ checkpoint: shippedPolicyDir('pusht'), env: 'pusht' });
    try {
      expect(engine.info).toMatchObject({ env: 'pusht', obsDim: 5, actionDim: 2, obsHorizon: 2, rows: 15, actionHorizon: 8, controlRateHz: 10 });
      expect(engine.info.modelVersion).toMatch(/^[0-9a-f]{16}$/);
      const host = new PolicyHost(engine);
      const policy = new LocalPolicy(host);
      const now = performance.now();
      const obs = (seq: number, x: number) => ({ timeMs: now + seq * 100, seq, state: Float64Array.of(x, 300, 256, 300, 0.3) });
      const c = await policy.requestChunk(obs(1, 200));
      expect(c.actions).toHaveLength(15);
      expect(c.startTimeMs).toBeCloseTo(now + 100, 3);
      expect(c.dtMs).toBeCloseTo(100);
      for (const row of c.actions) {
        // Inside the demonstrated action range (with a margin for sampling noise).
        expect(row[0]).toBeGreaterThan(engine.info.actionLow[0]! - 50);
        expect(row[0]).toBeLessThan(engine.info.actionHigh[0]! + 50);
      }
      // The first executed action is near the agent: the policy conditions on the observation.
      expect(Math.hypot(c.actions[0]![0]! - 200, c.actions[0]![1]! - 300)).toBeLessThan(120);

      // A crashed worker fails the request it held; a new worker then answers.
      const pending = policy.requestChunk(obs(2, 210));
      await engine.crashForTest();
      await expect(pending).rejects.toThrow(/inference worker exited/);
      const again = await policy.requestChunk(obs(3, 220));
      expect(again.obsSeq).toBe(3);
      expect(engine.starts).toBe(2);
      await policy.close();
    } finally {
      await engine.close();
    }
  }, 60_000);
});
