import { describe, expect, it } from 'vitest';
import { driveEnv } from '../../domains/robotics/control/drive.js';
import { PushTEnv } from '../../domains/robotics/env/pusht.js';
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
});
