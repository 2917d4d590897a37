/**
 * The shipped arm-reach policy in your own loop, with the early replanning it was exported
 * with: run up to Ta = 8 actions of each chunk, but sample a fresh chunk as soon as the next
 * actions would bring a link within `replanClearance` metres of an obstacle.
 *
 *   npx tsx examples/arm-reach-replanning.ts [models/arm-reach-policy] [episodes]
 */
import { setBackend } from '../src/backend/backend.js';
import { ArmReachEnv } from '../domains/robotics/env/armReach.js';
import { armReachReplanCheck } from '../domains/robotics/env/armReachReplan.js';
import { DiffusionPolicy } from '../domains/robotics/policy/policy.js';

await setBackend('auto');
const policy = DiffusionPolicy.load(process.argv[2] ?? 'models/arm-reach-policy', { env: 'arm-reach' });
const episodes = Number(process.argv[3] ?? 5);
const robot = await ArmReachEnv.create();
const clearance = policy.config.replanClearance;
// No stored clearance: plain receding horizon (the check never fires).
const unsafe = clearance === undefined ? () => false : armReachReplanCheck(robot, { clearance });
let successes = 0;
for (let ep = 0; ep < episodes; ep++) {
  let obs = robot.reset({ seed: 1000 + ep });
  let prev = obs;
  const history: Float64Array[] = [obs, obs]; // To = 2 frames, oldest first
  let chunks = 0;
  let early = 0;
  let done = false;
  while (!done) {
    const { chunks: c } = policy.predictChunks([history.slice(-policy.horizon.obs)], { seed: ep * 1000 + chunks++ });
    const actions = policy.executable(c[0]); // up to Ta joint-velocity actions
    for (let k = 0; k < actions.length && !done; k++) {
      if (k > 0 && unsafe(obs, actions.slice(k), prev)) {
        early++;
        break; // replan from the current observations
      }
      const r = robot.step(actions[k]); // your controller: send the action, read back the state
      prev = obs;
      obs = r.observation;
      history.push(obs);
      if (history.length > policy.horizon.obs) history.shift();
      if (r.terminated || r.truncated) {
        const ok = r.terminated && !r.info.collided;
        if (ok) successes++;
        console.log(`episode ${ep}: ${ok ? 'reached' : r.info.collided ? 'collided' : 'timed out'} after ${r.info.steps} steps, ${chunks} chunks (${early} cut short)`);
        done = true;
      }
    }
  }
}
console.log(`${successes}/${episodes} reached the target without touching an obstacle (Ta = ${policy.config.actionHorizon}, replanning clearance ${clearance ?? 'none'})`);
robot.close();
policy.dispose();
