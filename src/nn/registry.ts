/**
 * Network kinds by name, so a checkpoint (kind + JSON config + named weights) can rebuild its
 * network. The core registers 'mlp'; domain modules register their own kinds.
 */
import type { Network } from '../denoiser/denoiser.js';
import { fail } from '../util/validate.js';
import { fieldNetwork, type FieldNetConfig } from './fieldNet.js';
import { mlpNetwork, type MlpConfig } from './mlp.js';
import type { ParamStore } from './params.js';

export interface ModelSpec {
  readonly kind: string;
  readonly config: Record<string, unknown>;
}

export type NetworkBuilder = (config: Record<string, unknown>, store: ParamStore) => Network;

const builders = new Map<string, NetworkBuilder>();

export function registerNetwork(kind: string, builder: NetworkBuilder): void {
  if (typeof kind !== 'string' || kind.length === 0) fail('registerNetwork: kind must be a non-empty string');
  builders.set(kind, builder);
}

export function networkKinds(): string[] {
  return [...builders.keys()];
}

/** Build (and, when the store is empty, initialise) the network described by `spec`. */
export function buildNetwork(spec: ModelSpec, store: ParamStore): Network {
  const b = builders.get(spec?.kind);
  if (!b) fail(`model.kind: unknown network kind '${String(spec?.kind)}' (registered: ${networkKinds().join(', ') || 'none'})`);
  return b(spec.config, store);
}

registerNetwork('mlp', (config, store) => mlpNetwork(config as unknown as MlpConfig, store));
registerNetwork('field-conv', (config, store) => fieldNetwork(config as unknown as FieldNetConfig, store));
