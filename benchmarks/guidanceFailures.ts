/**
 * Why do guided arm-reach episodes with novel obstacles fail? Runs `robot eval`'s episodes (same
 * scenes, seeds and sampling) and, for every episode that touches an obstacle, reports what the
 * executed chunk predicted at the moment of contact:
 *   - its guidance cost (> 0: even the best guided candidate predicted a violation),
 *   - the smallest link clearance along its executed actions, at the control instants only and
 *     along the swept path (10 poses per control period), from exact geometry.
 *     "swept only" contacts are the ones a cost checking only the control instants cannot see.
 * Failures without contact are arms that did not reach the target within the step limit.
 *
 *   npx tsx benchmarks/guidanceFailures.ts [--checkpoint models/arm-reach-policy] [--seed 8] [--episodes 30]
 *       [--guide obstacle:1] [--guide-mode gradient|projection] [--guide-iterations K] [--guide-max-step X]
 *       [--guide-substeps S] [--candidates 16] [--temperature 1] [--action-horizon Ta] [--novel-obstacles 1 (0: training scenes)]
 */
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { setBackend } from '../src/backend/backend.js';
import { armClearance, type Obstacle } from '../domains/robotics/env/armReachKinematics.js';
import { MAX_OBSTACLES, OBS_LAYOUT } from '../domains/robotics/env/armReachSpec.js';
import { armActionMode, armMaxJointSpeed, envForPolicy } from '../domains/robotics/envs.js';
import { evaluatePolicy } from '../domains/robotics/evaluate.js';
import { ARM_DT, ARM_MAX_JOINT_SPEED, parseGuideSpec } from '../domains/robotics/guidance/index.js';
import { DiffusionPolicy, GUIDE_MODES, type CostTerm, type GuideMode } from '../domains/robotics/policy/policy.js';

const { values: o } = parseArgs({
  options: {
    checkpoint: { type: 'string', default: 'models/arm-reach-policy' },
    seed: { type: 'string', default: '8' },
    episodes: { type: 'string', default: '30' },
    guide: { type: 'string', default: 'obstacle:1' },
    'guide-mode': { type: 'string', default: 'gradient' },
    'guide-iterations': { type: 'string' },
    'guide-max-step': { type: 'string' },
    'guide-substeps': { type: 'string' },
    candidates: { type: 'string', default: '16' },
    temperature: { type: 'string', default: '1' },
    'action-horizon': { type: 'string' },
    'novel-obstacles': { type: 'string', default: '1' },
  },
});

function num(name: string, v: string | undefined, integer = false): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new Error(`--${name}: expected ${integer ? 'an integer' : 'a number'}, received '${v}'`);
  return x;
}

const mode = o['guide-mode'] as GuideMode;
if (!GUIDE_MODES.includes(mode)) throw new Error(`--guide-mode: expected one of ${GUIDE_MODES.join(', ')}, received '${mode}'`);
const guideOpts = {
  mode,
  iterations: num('guide-iterations', o['guide-iterations'], true),
  maxStep: num('guide-max-step', o['guide-max-step']),
  substeps: num('guide-substeps', o['guide-substeps'], true),
};

await setBackend('auto');
const policy = DiffusionPolicy.load(o.checkpoint!, { env: 'arm-reach' });
const env = await envForPolicy(policy.config);
const Ta = num('action-horizon', o['action-horizon'], true) ?? policy.config.actionHorizon;

function obstaclesOf(obs: Float64Array): Obstacle[] {
  const out: Obstacle[] = [];
  for (let k = 0; k < MAX_OBSTACLES; k++) {
    const i = OBS_LAYOUT.obstacles + 3 * k;
    if (obs[i + 2]! > 0 && Math.abs(obs[i]!) < 1.5) out.push({ x: obs[i]!, y: obs[i + 1]!, radius: obs[i + 2]! });
  }
  return out;
}

const speed = armMaxJointSpeed(policy.config) ?? ARM_MAX_JOINT_SPEED;

/** Smallest clearance along the executed actions (clamped to the joint speed bound, as the environment does) from joint angles q, at the instants and swept. */
function predictedClearance(q0: ArrayLike<number>, actions: readonly Float64Array[], obstacles: readonly Obstacle[]): { instants: number; swept: number } {
  const q = Array.from(q0);
  let instants = Infinity;
  let swept = Infinity;
  for (const a of actions) {
    const start = [...q];
    for (let s = 1; s <= 10; s++) {
      for (let j = 0; j < 3; j++) q[j] = start[j]! + (ARM_DT * Math.min(Math.max(a[j]!, -speed), speed) * s) / 10;
      const c = armClearance(q, obstacles);
      swept = Math.min(swept, c);
      if (s === 10) instants = Math.min(instants, c);
    }
  }
  return { instants, swept };
}

interface Contact {
  episode: number;
  step: number;
  chunkCost: number;
  instants: number;
  swept: number;
}
let guidance: readonly CostTerm[] | undefined;
let novel: Obstacle[] = [];
let current: { cost: number; instants: number; swept: number } | undefined;
let touched = false;
const contacts: Contact[] = [];

const report = evaluatePolicy(env, policy, {
  episodes: num('episodes', o.episodes, true)!,
  seed: num('seed', o.seed, true)!,
  novel: num('novel-obstacles', o['novel-obstacles'], true),
  candidates: num('candidates', o.candidates, true),
  temperature: num('temperature', o.temperature),
  actionHorizon: Ta,
  guidanceFor: (constraints) => parseGuideSpec(o.guide!, 'arm-reach', { constraints, actionMode: armActionMode(policy.config), maxJointSpeed: armMaxJointSpeed(policy.config), ...guideOpts }),
  onEpisodeStart: (_i, e) => {
    guidance = e.guidance;
    touched = false;
    novel = e.constraints.map((c) => ({ x: c.x, y: c.y, radius: c.r }));
  },
  onChunk: (_i, c) => {
    const w = c.window as Float64Array[];
    const cost = guidance?.length
      ? tf.tidy(() => tf.addN(guidance!.map((g) => tf.mul(g.cost(tf.tensor3d(c.chunk, [1, policy.config.predHorizon, 3]), { obs: [w] }), g.scale))).dataSync()[0]!)
      : NaN;
    const last = w[w.length - 1]!;
    // The policy sees the training obstacle; the novel ones are hidden from it but known here.
    const obstacles = [...obstaclesOf(last), ...novel];
    current = { cost, ...predictedClearance(last.subarray(OBS_LAYOUT.q, OBS_LAYOUT.q + 3), policy.executable(c.chunk, Ta), obstacles) };
  },
  onStep: (i, step, r) => {
    if (r.info.collided && !touched) {
      touched = true;
      contacts.push({ episode: i, step, chunkCost: current?.cost ?? NaN, instants: current?.instants ?? NaN, swept: current?.swept ?? NaN });
    }
  },
});
env.close();
policy.dispose();

for (const c of contacts) {
  console.log(
    `episode ${c.episode}: contact at step ${c.step}; executed chunk's guidance cost ${c.chunkCost.toExponential(2)}, ` +
      `predicted clearance ${c.instants.toFixed(3)} m at the control instants, ${c.swept.toFixed(3)} m swept`,
  );
}
const timeouts = report.perEpisode.filter((p) => !p.success && p.violations === 0).length;
const summary = {
  event: 'guidance-failures',
  checkpoint: o.checkpoint,
  seed: Number(o.seed),
  episodes: report.episodes,
  guide: o.guide,
  ...guideOpts,
  candidates: Number(o.candidates),
  temperature: Number(o.temperature),
  actionHorizon: Ta,
  novelObstacles: Number(o['novel-obstacles']),
  successRate: report.successRate,
  contactEpisodes: contacts.length,
  timeoutEpisodes: timeouts,
  contactsWithPositiveChunkCost: contacts.filter((c) => c.chunkCost > 0).length,
  contactsPredictedAtInstants: contacts.filter((c) => c.instants < 0).length,
  contactsPredictedSweptOnly: contacts.filter((c) => c.instants >= 0 && c.swept < 0).length,
  contactsNotPredicted: contacts.filter((c) => c.swept >= 0).length,
  chunkLatencyMs: report.latencyMs,
};
console.log(JSON.stringify(summary));
