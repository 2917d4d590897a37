/** Environments by name. */
import { fail } from '../../src/util/validate.js';
import { ArmReachEnv, type ArmReachOptions } from './env/armReach.js';
import { PushTEnv } from './env/pusht.js';
import type { Env } from './env/types.js';

export const ENV_NAMES = ['pusht', 'arm-reach'] as const;
export type EnvName = (typeof ENV_NAMES)[number];

export async function makeEnv(name: string, opts: { seed?: number; arm?: ArmReachOptions } = {}): Promise<Env> {
  if (name === 'pusht') return new PushTEnv({ seed: opts.seed });
  if (name === 'arm-reach') return ArmReachEnv.create({ seed: opts.seed, ...(opts.arm ?? {}) });
  return fail(`env: unknown environment '${String(name)}' (expected one of ${ENV_NAMES.join(', ')})`);
}
