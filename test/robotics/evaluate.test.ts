import { describe, expect, it } from 'vitest';
import { PushTEnv } from '../../domains/robotics/env/pusht.js';
import { evaluatePolicy, PUSHT_FORBIDDEN_RADIUS, PUSHT_FORBIDDEN_START_GAP, pushtForbidden } from '../../domains/robotics/evaluate.js';
import { Rng } from '../../src/rng/rng.js';
import { PUSHT_AGENT_RADIUS } from '../../domains/robotics/env/pusht.js';
import { parseGuideSpec } from '../../domains/robotics/guidance/costs.js';
import { shippedPolicyDir } from '../../domains/robotics/serve/cli.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';

describe('pushtForbidden', () => {
  it('puts each circle on the way from the agent to the block, never over the agent\'s start', () => {
    const env = new PushTEnv();
    let moved = 0;
    for (let seed = 0; seed < 400; seed++) {
      const obs = env.reset({ seed });
      const [ax, ay, bx, by] = [obs[0], obs[1], obs[2], obs[3]];
      const d = Math.hypot(bx - ax, by - ay);
      const u = new Rng(seed).uniform();
      const [c] = pushtForbidden(obs, 1, new Rng(seed));
      expect(c.r).toBe(PUSHT_FORBIDDEN_RADIUS);
      const along = Math.hypot(c.x - ax, c.y - ay);
      // On the agent-to-block line ...
      expect(Math.abs((c.x - ax) * (by - ay) - (c.y - ay) * (bx - ax)) / d).toBeLessThan(1e-9);
      expect((c.x - ax) * (bx - ax) + (c.y - ay) * (by - ay)).toBeGreaterThan(0);
      // ... clear of the agent's disc at the start ...
      expect(along).toBeGreaterThanOrEqual(PUSHT_FORBIDDEN_RADIUS + PUSHT_AGENT_RADIUS + PUSHT_FORBIDDEN_START_GAP - 1e-9);
      // ... and 35-65% of the way wherever that already holds.
      const f = 0.35 + 0.3 * u;
      if (f * d >= PUSHT_FORBIDDEN_RADIUS + PUSHT_AGENT_RADIUS + PUSHT_FORBIDDEN_START_GAP) expect(along).toBeCloseTo(f * d, 9);
      else moved++;
    }
    // Agent and block start close together in some resets: those circles were moved.
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(200);
  });
});

describe('evaluatePolicy', () => {
  it('aggregates its per-episode results and places the same forbidden regions for the same seed', () => {
    const policy = DiffusionPolicy.load(shippedPolicyDir('pusht'), { env: 'pusht' });
    // Short episodes keep the test fast: 40 steps = 5 chunks of 8 actions.
    const env = new PushTEnv({ maxSteps: 40 });
    try {
      const seen: number[][] = [];
      const run = () =>
        evaluatePolicy(env, policy, {
          episodes: 3,
          seed: 4,
          novel: 1,
          guidanceFor: (circles) => {
            seen.push(circles.flatMap((c) => [c.x, c.y, c.r]));
            return parseGuideSpec('region:0.00001', 'pusht', { constraints: circles });
          },
        });
      const r = run();
      expect(r.env).toBe('pusht');
      expect(r.episodes).toBe(3);
      expect(r.perEpisode).toHaveLength(3);
      const mean = (f: (p: (typeof r.perEpisode)[number]) => number): number => r.perEpisode.reduce((a, p) => a + f(p), 0) / 3;
      expect(r.successRate).toBeCloseTo(mean((p) => (p.success ? 1 : 0)), 12);
      expect(r.successWithoutViolationsRate).toBeCloseTo(mean((p) => (p.success && p.violations === 0 ? 1 : 0)), 12);
      expect(r.successWithoutViolationsRate).toBeLessThanOrEqual(r.successRate);
      expect(r.episodesWithViolations).toBe(r.perEpisode.filter((p) => p.violations > 0).length);
      expect(r.meanViolationSteps).toBeCloseTo(mean((p) => p.violations), 12);
      expect(r.meanFinalCoverage).toBeCloseTo(mean((p) => p.finalCoverage!), 12);
      for (const p of r.perEpisode) {
        expect(p.steps).toBeLessThanOrEqual(40);
        expect(p.violations).toBeLessThanOrEqual(p.steps + 1);
      }
      expect(r.latencyMs.chunks).toBeGreaterThanOrEqual(3);
      expect(r.latencyMs.p99).toBeGreaterThanOrEqual(r.latencyMs.p50);
      // One forbidden circle of radius 30 per episode, and the same ones again for the same seed.
      expect(seen).toHaveLength(3);
      for (const c of seen) expect(c).toHaveLength(3);
      const again = run();
      expect(seen.slice(3)).toEqual(seen.slice(0, 3));
      expect(again.perEpisode.map((p) => p.seed)).toEqual(r.perEpisode.map((p) => p.seed));
    } finally {
      env.close();
      policy.dispose();
    }
  }, 120_000);

  it('replans after actionHorizon actions when asked to', () => {
    const policy = DiffusionPolicy.load(shippedPolicyDir('pusht'), { env: 'pusht' });
    const env = new PushTEnv({ maxSteps: 12 });
    try {
      const r = evaluatePolicy(env, policy, { episodes: 1, seed: 2, actionHorizon: 3 });
      // 12 steps, 3 actions per chunk: 4 chunks (8 per chunk would give 2).
      expect(r.perEpisode[0].steps).toBe(12);
      expect(r.latencyMs.chunks).toBe(4);
      expect(() => evaluatePolicy(env, policy, { episodes: 1, seed: 2, actionHorizon: 16 })).toThrow(/^actionHorizon: expected <= 15/);
      expect(r.earlyReplans).toBe(0);
      expect(r.meanActionsPerChunk).toBe(3);
    } finally {
      env.close();
      policy.dispose();
    }
  }, 60_000);

  it('cuts a chunk short where replanWhen says so, and counts it', () => {
    const policy = DiffusionPolicy.load(shippedPolicyDir('pusht'), { env: 'pusht' });
    const env = new PushTEnv({ maxSteps: 16 });
    try {
      const calls: number[] = [];
      // Replan before the third action of every chunk: 16 steps of 2 actions = 8 chunks.
      const r = evaluatePolicy(env, policy, {
        episodes: 1,
        seed: 2,
        replanWhen: (obs, upcoming) => {
          expect(obs).toHaveLength(5);
          calls.push(upcoming.length);
          return upcoming.length === 6;
        },
      });
      expect(r.perEpisode[0].steps).toBe(16);
      expect(r.latencyMs.chunks).toBe(8);
      // The eighth chunk ends with the episode (step 16) before its third action is asked about.
      expect(r.earlyReplans).toBe(7);
      expect(r.meanActionsPerChunk).toBe(2);
      // Asked before actions 2 and 3 of each chunk (7 and 6 still to run), never before the first.
      expect(calls).toEqual([...Array.from({ length: 7 }, () => [7, 6]).flat(), 7]);
    } finally {
      env.close();
      policy.dispose();
    }
  }, 60_000);
});
