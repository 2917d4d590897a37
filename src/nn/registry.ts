/**
 * Network kinds by name, so a checkpoint (kind + JSON config + named weights) can rebuild its
 * network. The core registers 'mlp'; domain modules register their own kinds.
 */
import type { Network } from '../denoiser/denoiser.js';
import { fail } from '../util/validate.js';
import { fieldNetwork, type FieldNetConfig } from './fieldNet.js';
import { mlpNetwork, type MlpConfig } from './mlp.js';
import type { ParamStore } from './params.js';
import { replayable } from './replay.js';

export interface ModelSpec {
  readonly kind: string;
  readonly config: Record<string, unknown>;
}

export type NetworkBuilder = (config: Record<string, unknown>, store: ParamStore) => Network;

export interface NetworkKindOptions {
  /**
   * The network's kernels and their attributes depend only on input shapes (true of networks
   * made of src/nn layers). Inference calls then replay recorded kernels (see replay.ts).
   */
  readonly staticGraph?: boolean;
}

const builders = new Map<string, { build: NetworkBuilder; opts: NetworkKindOptions }>();

export function registerNetwork(kind: string, builder: NetworkBuilder, opts: NetworkKindOptions = {}): void {
  if (typeof kind !== 'string' || kind.length === 0) fail('registerNetwork: kind must be a non-empty string');
  if (typeof builder !== 'function') fail(`registerNetwork('${kind}'): builder must be a function (config, store) => network`);
  builders.set(kind, { build: builder, opts });
}

export function networkKinds(): string[] {
  return [...builders.keys()];
}

/** Build (and, when the store is empty, initialise) the network described by `spec`. */
export function buildNetwork(spec: ModelSpec, store: ParamStore): Network {
  const b = builders.get(spec?.kind);
  if (!b) fail(`model.kind: unknown network kind '${String(spec?.kind)}' (registered: ${networkKinds().join(', ') || 'none'})`);
  const net = b.build(spec.config, store);
  return b.opts.staticGraph ? replayable(net) : net;
}

/** Release what a network built here holds besides its parameters (replay traces); safe on any network. */
export function releaseNetwork(net: Network): void {
  (net as Network & { dispose?: () => void }).dispose?.();
}

registerNetwork('mlp', (config, store) => mlpNetwork(config as unknown as MlpConfig, store), { staticGraph: true });
registerNetwork('field-conv', (config, store) => fieldNetwork(config as unknown as FieldNetConfig, store), { staticGraph: true });
