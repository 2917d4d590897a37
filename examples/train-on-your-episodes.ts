/**
 * Train a Diffusion Policy on your own recorded episodes and save it.
 *
 *   npx tsx examples/train-on-your-episodes.ts my_episodes.mcap runs/my-policy
 *
 * The MCAP file holds scoreflow.v1.Episode messages (write them with `writeEpisodesMcap`, or
 * convert a Diffusion Policy zarr with `scoreflow robot import`). Without arguments this example
 * records 60 expert episodes of the arm-reach task first, so it runs as is.
 */
import { lastValueFrom, tap } from 'rxjs';
import { setBackend } from '../src/backend/backend.js';
import { readEpisodesMcap, writeEpisodesMcap } from '../domains/robotics/data/episodes.js';
import { ArmReachEnv } from '../domains/robotics/env/armReach.js';
import { collectDemos } from '../domains/robotics/expert/armReachExpert.js';
import { DEFAULT_POLICY } from '../domains/robotics/policy/config.js';
import { policyTrainer } from '../domains/robotics/policy/train.js';

await setBackend('auto');
let file = process.argv[2];
const out = process.argv[3] ?? 'runs/example-policy';
if (!file) {
  file = 'runs/example_episodes.mcap';
  const env = await ArmReachEnv.create();
  const demos = collectDemos(env, { episodes: 60, seed: 1 }).filter((d) => d.success);
  env.close();
  await writeEpisodesMcap(file, demos.map((d, i) => ({ env: 'arm-reach', index: i, observations: d.observations, actions: d.actions, rewards: d.rewards })), { env: 'arm-reach' });
  console.log(`recorded ${demos.length} episodes to ${file}`);
}

const episodes = await readEpisodesMcap(file);
// Your episodes: observation vectors and the actions taken at them (a final observation without an action is dropped).
const demos = episodes.map((e) => ({ observations: e.observations.slice(0, e.actions.length), actions: e.actions }));
const run = policyTrainer(
  demos,
  { ...DEFAULT_POLICY, env: episodes[0].env, obsDim: demos[0].observations[0].length, actionDim: demos[0].actions[0].length },
  { steps: 300, batchSize: 64, lr: 1e-3, seed: 0 },
);
await lastValueFrom(
  run.trainer.fit().pipe(tap((p) => p.step % 50 === 0 && console.log(`step ${p.step}/${p.steps} loss ${p.loss.toFixed(4)}`))),
  { defaultValue: undefined },
);
await run.save(out);
run.dispose();
console.log(`policy saved to ${out}; evaluate it with: npx scoreflow robot eval --env ${episodes[0].env} --checkpoint ${out}`);
