/**
 * Replica module of data-parallel policy training (`robot train --workers N`): a worker thread
 * imports it (which registers the temporal U-Net) and computes the same loss as the trainer.
 */
import type { ReplicaDefinition } from '../../../src/train/dataParallel.js';
import type { DiffusionPolicyConfig } from './config.js';
import { policyObjective } from './train.js';

export function createReplica(init: unknown): ReplicaDefinition {
  const config = (init as { policy?: DiffusionPolicyConfig } | null)?.policy;
  if (!config || typeof config !== 'object') throw new Error('trainReplica: expected { policy: DiffusionPolicyConfig }');
  return { objective: policyObjective(config) };
}
