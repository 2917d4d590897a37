/**
 * Run a trained policy inside your own control loop: you own the robot (here the Push-T
 * simulator stands in for it), the policy only maps the last To observations to an action chunk.
 * Receding horizon: execute Ta actions of each chunk, then replan from fresh observations.
 *
 *   npx tsx examples/policy-in-your-loop.ts [models/pusht-policy]
 */
import { setBackend } from '../src/backend/backend.js';
import { PushTEnv } from '../domains/robotics/env/pusht.js';
import { DiffusionPolicy } from '../domains/robotics/policy/policy.js';

await setBackend('auto');
const policy = DiffusionPolicy.load(process.argv[2] ?? 'models/pusht-policy', { env: 'pusht' });
const robot = new PushTEnv();
let obs = robot.reset({ seed: 42 });
const history: Float64Array[] = [obs, obs]; // To = 2 frames, oldest first

for (let replans = 0; replans < 40; replans++) {
  const { chunks, latencyMs } = policy.predictChunks([history.slice(-policy.horizon.obs)], { seed: replans });
  const actions = policy.executable(chunks[0]); // Ta actions, absolute targets in pixels
  let done = false;
  for (const a of actions) {
    const r = robot.step(a); // your controller: send `a`, read back the state
    obs = r.observation;
    history.push(obs);
    if (history.length > policy.horizon.obs) history.shift();
    if (r.terminated || r.truncated) {
      console.log(`finished after ${r.info.steps} steps, coverage ${Number(r.info.coverage).toFixed(3)}`);
      done = true;
      break;
    }
  }
  console.log(`chunk ${replans}: ${latencyMs.toFixed(1)} ms, block at (${obs[2].toFixed(0)}, ${obs[3].toFixed(0)})`);
  if (done) break;
}
robot.close();
policy.dispose();
