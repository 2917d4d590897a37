/** Environments by name. */
import { fail } from '../../src/util/validate.js';
import { ArmReachEnv, type ArmReachOptions } from './env/armReach.js';
import { PushTEnv } from './env/pusht.js';
import type { Env } from './env/types.js';

export const ENV_NAMES = ['pusht', 'arm-reach'] as const;
export type EnvName = (typeof ENV_NAMES)[number];

/** arm-reach options a policy may carry (`DiffusionPolicyConfig.envOptions`), validated. */
function armOptions(o: Readonly<Record<string, unknown>> | undefined): ArmReachOptions {
  if (o === undefined) return {};
  const out: { actionMode?: 'velocity' | 'position' } = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === 'actionMode') {
      if (v !== 'velocity' && v !== 'position') fail(`envOptions.actionMode: expected 'velocity' or 'position', received ${String(v)}`);
      out.actionMode = v;
    } else {
      fail(`envOptions.${k}: not an arm-reach option a policy can carry (known: actionMode)`);
    }
  }
  return out;
}

/**
 * The arm-reach action mode a policy acts with ('velocity' unless its demonstrations were
 * recorded with position actions). Fails on an invalid `envOptions.actionMode`.
 */
export function armActionMode(config: { readonly envOptions?: Readonly<Record<string, unknown>> }): 'velocity' | 'position' {
  return armOptions(config.envOptions).actionMode ?? 'velocity';
}

/** The arm-reach joint speed bound (rad/s) a policy acts under (the environment's default unless its demonstrations set one). */
export function armMaxJointSpeed(config: { readonly envOptions?: Readonly<Record<string, unknown>> }): number | undefined {
  return armOptions(config.envOptions).maxJointSpeed;
}

/** The environment a policy acts in: its `env` with the options its demonstrations were recorded under. */
export async function envForPolicy(config: { readonly env: string; readonly envOptions?: Readonly<Record<string, unknown>> }, opts: { seed?: number } = {}): Promise<Env> {
  if (config.env === 'pusht' && config.envOptions !== undefined && Object.keys(config.envOptions).length > 0) {
    fail(`envOptions: pusht takes no options, received ${Object.keys(config.envOptions).join(', ')}`);
  }
  return makeEnv(config.env, { seed: opts.seed, arm: config.env === 'arm-reach' ? armOptions(config.envOptions) : undefined });
}

export async function makeEnv(name: string, opts: { seed?: number; arm?: ArmReachOptions } = {}): Promise<Env> {
  if (name === 'pusht') return new PushTEnv({ seed: opts.seed });
  if (name === 'arm-reach') return ArmReachEnv.create({ seed: opts.seed, ...(opts.arm ?? {}) });
  return fail(`env: unknown environment '${String(name)}' (expected one of ${ENV_NAMES.join(', ')})`);
}
