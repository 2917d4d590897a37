import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../domains/robotics/control/clock.js';
import { driveEnv } from '../../domains/robotics/control/drive.js';
import { SimulatedLatencyPolicy } from '../../domains/robotics/control/simulatedPolicy.js';
import type { ChunkPolicy, TimedChunk, TimedObservation } from '../../domains/robotics/control/types.js';
import type { Env, StepResult } from '../../domains/robotics/env/types.js';
import { envForPolicy } from '../../domains/robotics/envs.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { shippedPolicyDir } from '../../domains/robotics/serve/cli.js';
import { PushTEnv } from '../../domains/robotics/env/pusht.js';
import { ArmReachEnv } from '../../domains/robotics/env/armReach.js';
import { armReachReplanCheck } from '../../domains/robotics/env/armReachReplan.js';
import { PolicyHost } from '../../domains/robotics/serve/host.js';
import { LocalPolicy } from '../../domains/robotics/serve/localPolicy.js';
import { EchoEngine } from './serveFixtures.js';

describe('driveEnv', () => {
  it('steps the simulator at its own rate while the loop ticks at rateHz', async () => {
    const host = new PolicyHost(new EchoEngine(20));
    const policy = new LocalPolicy(host);
    const env = new PushTEnv();
    try {
      const r = await driveEnv(env, policy, { rateHz: 50, seconds: 1.5, seed: 3 });
      expect(r.achievedRateHz).toBeGreaterThan(45);
      expect(r.achievedRateHz).toBeLessThan(55);
      // 10 Hz simulator for 1.5 s, minus the first step waiting for a chunk.
      expect(r.envSteps).toBeGreaterThanOrEqual(10);
      expect(r.envSteps).toBeLessThanOrEqual(15);
      expect(r.deadlineMisses).toBe(0);
      expect(r.safeStops).toBe(0);
      expect(r.chunksReceived).toBeGreaterThan(0);
      expect(r.inferenceP50Ms).toBeGreaterThanOrEqual(20);
      expect(host.stats().observations).toBeGreaterThanOrEqual(r.chunksReceived);
      await expect(driveEnv(env, policy, { rateHz: 50, seconds: 0 })).rejects.toThrow(/seconds/);
    } finally {
      await policy.close();
      env.close();
    }
  });

  it('tick-synchronous periods apply exactly the action for each period start, and report each state at its own time', async () => {
    // A 1-D "robot" whose state is the sum of the actions applied; the policy's row k holds the
    // time (s) it is meant for, so every applied action should equal its period's start time.
    const clock = new VirtualClock(1000);
    const applied: { action: number; at: number }[] = [];
    let x = 0;
    const env = {
      dt: 0.1,
      reset: () => Float64Array.of((x = 0)),
      step: (a: ArrayLike<number>): StepResult => {
        applied.push({ action: a[0]!, at: clock.now() });
        x += a[0]!;
        return { observation: Float64Array.of(x), reward: 0, terminated: applied.length >= 30, truncated: false, info: {} };
      },
      close: () => undefined,
    } as unknown as Env;
    const seen: TimedObservation[] = [];
    const policy: ChunkPolicy = {
      info: { actionDim: 1, observationDim: 1, predHorizon: 8, actionHorizon: 4, currentRow: 0, dtMs: 100, obsHorizon: 1 },
      observe: (o) => void seen.push(o),
      requestChunk: (o) => {
        seen.push(o);
        const chunk: TimedChunk = { obsSeq: o.seq, startTimeMs: o.timeMs, dtMs: 100, actions: Array.from({ length: 8 }, (_, k) => Float64Array.of((o.timeMs + 100 * k) / 1000)), latencyMs: 30 };
        return new Promise((resolve) => clock.setTimer(() => resolve(chunk), 30));
      },
      reset: async () => undefined,
      close: async () => undefined,
    };
    const r = await driveEnv(env, policy, { rateHz: 50, seconds: 100, maxEpisodes: 1, clock });
    expect(r.episodesFinished).toBe(1);
    expect(applied).toHaveLength(30);
    for (const a of applied) expect(a.action).toBeCloseTo(a.at / 1000, 9);
    // Each observation is the state after the actions applied before its time.
    for (const o of seen) {
      const before = applied.filter((a) => a.at < o.timeMs).reduce((sum, a) => sum + a.action, 0);
      expect(o.state[0]).toBeCloseTo(before, 9);
    }
    expect(r.jitterP99Ms).toBe(0);
    expect(r.deadlineMisses).toBe(0);
  });

  it('runs the shipped arm-reach policy in virtual time, deterministically', async () => {
    const dp = DiffusionPolicy.load(shippedPolicyDir('arm-reach'), { env: 'arm-reach' });
    const env = await envForPolicy(dp.config);
    try {
      const run = async () => {
        const clock = new VirtualClock(0);
        const policy = new SimulatedLatencyPolicy(dp, { clock, latencyMs: 30, dtMs: 100, seed: 1000 });
        const t0 = performance.now();
        const r = await driveEnv(env, policy, { rateHz: 50, seconds: 3600, seed: 1000, maxEpisodes: 3, clock });
        return { r, wallMs: performance.now() - t0 };
      };
      const a = await run();
      const b = await run();
      expect(a.r.episodesFinished).toBe(3);
      expect(b.r).toEqual(a.r);
      // Ticks per second of loop time (the waits between episodes, when no loop ticks, excluded).
      // Each loop ticks at 0 and every 20 ms after, so at least 50 per second; the waits counted
      // before gave less than 50.
      expect(a.r.achievedRateHz).toBeGreaterThanOrEqual(50);
      expect(a.r.achievedRateHz).toBeLessThan(51);
      expect(a.r.inferenceP50Ms).toBe(30);
      expect(a.r.earlyReplans).toBe(0);
      // Early replanning through the loop: the arm-reach check is asked with the chunk's rows and
      // asks for new chunks (a 0.2 m clearance is violated whenever a link passes the central obstacle).
      {
        const clock = new VirtualClock(0);
        const policy = new SimulatedLatencyPolicy(dp, { clock, latencyMs: 30, dtMs: 100, seed: 1000 });
        const replanWhen = armReachReplanCheck(env as ArmReachEnv, { clearance: 0.2 });
        const r = await driveEnv(env, policy, { rateHz: 50, seconds: 3600, seed: 1000, maxEpisodes: 1, clock, replanWhen });
        expect(r.episodesFinished).toBe(1);
        expect(r.earlyReplans).toBeGreaterThan(0);
        expect(r.deadlineMisses).toBe(0);
      }
      // Faster than real time: the episodes cover more virtual seconds than they take.
      expect(a.wallMs / 1000).toBeLessThan(a.r.elapsedSeconds);
      expect(() => new SimulatedLatencyPolicy(dp, { clock: new VirtualClock(), latencyMs: -1, dtMs: 100 })).toThrow(/latencyMs/);
      // Pinned rows (as the loop's pinLatency sends them) come back exactly; the rest is sampled.
      const clock = new VirtualClock(0);
      const pinning = new SimulatedLatencyPolicy(dp, { clock, latencyMs: 150, dtMs: 100, seed: 5 });
      const o0 = env.reset({ seed: 1000 });
      const first = pinning.requestChunk({ timeMs: 0, seq: 0, state: o0 });
      await clock.advance(150);
      const c1 = await first;
      // Time 100 ms: pin row -1 (0 ms) and rows 0, 1 (100, 200 ms) with c1's rows for those times.
      const second = pinning.requestChunk({ timeMs: 100, seq: 1, state: o0 }, { pinned: { firstRow: -1, rows: [c1.actions[0]!, c1.actions[1]!, c1.actions[2]!] } });
      await clock.advance(150);
      const c2 = await second;
      for (const k of [0, 1]) Array.from(c2.actions[k]!).forEach((v, j) => expect(v).toBeCloseTo(c1.actions[k + 1]![j]!, 4));
      expect(Math.max(...Array.from(c2.actions[2]!, (v, j) => Math.abs(v - c1.actions[3]![j]!)))).toBeGreaterThan(1e-4);
      await expect(pinning.requestChunk({ timeMs: 200, seq: 2, state: o0 }, { pinned: { firstRow: -2, rows: [c1.actions[0]!] } })).rejects.toThrow(/pinned.firstRow/);
      await expect(pinning.requestChunk({ timeMs: 300, seq: 3, state: o0 }, { pinned: { firstRow: 0, rows: c1.actions.slice() } })).rejects.toThrow(/one must stay free/);
    } finally {
      env.close();
      dp.dispose();
    }
  }, 60_000);
});
