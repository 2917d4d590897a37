/** Shared set-up of the benchmarks that train a shipped policy's network on random data. */
import { DiffusionPolicy } from '../domains/robotics/policy/policy.js';
import type { DiffusionPolicyConfig } from '../domains/robotics/policy/config.js';
import type { Demo } from '../domains/robotics/policy/windows.js';
import { shippedPolicyDir } from '../domains/robotics/serve/cli.js';
import { pseudoRandom } from './timing.js';

/**
 * The shipped policy's configuration for `env` and 20 random episodes of 100 steps of its
 * observation and action sizes: training-step timings do not depend on the values.
 */
export function shippedConfigAndRandomDemos(env: 'pusht' | 'arm-reach'): { cfg: DiffusionPolicyConfig; demos: Demo[] } {
  const shipped = DiffusionPolicy.load(shippedPolicyDir(env), { env });
  const cfg = shipped.config;
  shipped.dispose();
  const demos: Demo[] = Array.from({ length: 20 }, (_, e) => {
    const obs = pseudoRandom(100 * cfg.obsDim, 10 + e, 1);
    const act = pseudoRandom(100 * cfg.actionDim, 1000 + e, 1);
    return {
      observations: Array.from({ length: 100 }, (_, t) => Float64Array.from(obs.subarray(t * cfg.obsDim, (t + 1) * cfg.obsDim))),
      actions: Array.from({ length: 100 }, (_, t) => Float64Array.from(act.subarray(t * cfg.actionDim, (t + 1) * cfg.actionDim))),
    };
  });
  return { cfg, demos };
}
