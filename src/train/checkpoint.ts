/**
 * Checkpoints: a directory holding `model.json` (self-describing: format, version, task, model
 * spec, parameterisation, normaliser, training state, and the tfjs weights manifest) and
 * `weights.bin` encoded with tfjs's own weight encoding, so other tfjs tools can read it.
 * Weight names are prefixed: `params/`, `ema/`, `opt/m/`, `opt/v/`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync, statSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { NormalizerState } from '../data/normalizer.js';
import type { Precond } from '../denoiser/denoiser.js';
import type { ModelSpec } from '../nn/registry.js';
import { ParamStore } from '../nn/params.js';
import type { PathSpec } from '../path/types.js';
import type { Prediction } from '../predict/convert.js';
import { fail } from '../util/validate.js';
import { prepareOutputDir } from '../util/output.js';
import { requireBackend } from '../backend/backend.js';

export const CHECKPOINT_FORMAT = 'scoreflow-checkpoint';
export const CHECKPOINT_VERSION = 1;

export interface CheckpointMeta {
  /** What the checkpoint is for, e.g. 'toy-2d' or 'robot-policy/pusht'. Loading checks it. */
  readonly task: string;
  readonly model: ModelSpec;
  readonly parameterization: { readonly path: PathSpec; readonly prediction: Prediction; readonly precond?: Precond };
  readonly normalizer?: NormalizerState | Record<string, NormalizerState>;
  readonly training?: { readonly step: number; readonly [k: string]: unknown };
  /** Anything else the task needs (data shapes, environment name, ...), JSON only. */
  readonly extra?: Record<string, unknown>;
}

export interface CheckpointContents {
  readonly meta: CheckpointMeta;
  readonly params: ParamStore;
  readonly ema?: ParamStore;
  readonly optimizer?: { readonly m: ParamStore; readonly v: ParamStore; readonly step: number };
}

interface ModelJson {
  format: string;
  version: number;
  createdAt: string;
  meta: CheckpointMeta;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

export async function saveCheckpoint(dir: string, c: CheckpointContents): Promise<void> {
  if (typeof dir !== 'string' || dir.length === 0) fail('checkpoint: directory path must be a non-empty string');
  const tensors: Record<string, tf.Tensor> = { ...c.params.toMap('params/') };
  if (c.ema) Object.assign(tensors, c.ema.toMap('ema/'));
  if (c.optimizer) Object.assign(tensors, c.optimizer.m.toMap('opt/m/'), c.optimizer.v.toMap('opt/v/'));
  const { data, specs } = await tf.io.encodeWeights(tensors);
  const json: ModelJson = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    createdAt: new Date().toISOString(),
    meta: c.optimizer ? { ...c.meta, training: { ...(c.meta.training ?? {}), step: c.meta.training?.step ?? 0, optimizerStep: c.optimizer.step } } : c.meta,
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
  };
  prepareOutputDir(dir, 'checkpoint directory');
  // Write to temporary names and rename, so a crash never leaves a half-written checkpoint.
  try {
    writeFileSync(path.join(dir, 'weights.bin.tmp'), new Uint8Array(data));
    writeFileSync(path.join(dir, 'model.json.tmp'), JSON.stringify(json, null, 1));
    renameSync(path.join(dir, 'weights.bin.tmp'), path.join(dir, 'weights.bin'));
    renameSync(path.join(dir, 'model.json.tmp'), path.join(dir, 'model.json'));
  } catch (err) {
    fail(`checkpoint directory '${dir}': cannot write the checkpoint (${(err as Error).message})`);
  }
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, float16: 2 };

/** Read only the metadata (cheap; no tensors). */
export function readCheckpointMeta(dir: string): CheckpointMeta {
  return readModelJson(dir).meta;
}

function readModelJson(dir: string): ModelJson {
  const file = path.join(dir, 'model.json');
  if (!existsSync(file)) fail(`checkpoint '${dir}': no model.json found (is this a scoreflow checkpoint directory?)`);
  let json: ModelJson;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as ModelJson;
  } catch (err) {
    return fail(`checkpoint '${dir}': model.json is not valid JSON (${(err as Error).message}); the file may be truncated`);
  }
  if (json?.format !== CHECKPOINT_FORMAT) fail(`checkpoint '${dir}': not a scoreflow checkpoint (format '${String(json?.format)}')`);
  if (json.version !== CHECKPOINT_VERSION) fail(`checkpoint '${dir}': format version ${json.version} is not supported (this scoreflow reads version ${CHECKPOINT_VERSION})`);
  if (!json.meta?.task || !json.meta.model?.kind) fail(`checkpoint '${dir}': model.json lacks task or model kind`);
  return json;
}

/**
 * Load a checkpoint. `expectTask` (exact match or prefix ending in '/') guards against loading a
 * checkpoint of another kind; a truncated or size-mismatched weights file is a clear error.
 */
export function loadCheckpoint(dir: string, opts: { expectTask?: string } = {}): CheckpointContents {
  requireBackend('loadCheckpoint');
  const json = readModelJson(dir);
  const task = json.meta.task;
  if (opts.expectTask && !(task === opts.expectTask || (opts.expectTask.endsWith('/') && task.startsWith(opts.expectTask)))) {
    fail(`checkpoint '${dir}': holds a '${task}' model, expected '${opts.expectTask}'`);
  }
  const specs = json.weightsManifest?.[0]?.weights;
  if (!Array.isArray(specs)) fail(`checkpoint '${dir}': model.json has no weights manifest`);
  const bin = path.join(dir, json.weightsManifest[0].paths[0] ?? 'weights.bin');
  if (!existsSync(bin)) fail(`checkpoint '${dir}': weights file ${path.basename(bin)} is missing`);
  const expected = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[s.dtype] ?? 4), 0);
  const actual = statSync(bin).size;
  if (actual !== expected) {
    fail(`checkpoint '${dir}': weights.bin has ${actual} bytes but the manifest describes ${expected}; the file is truncated or does not belong to this model.json`);
  }
  const buf = readFileSync(bin);
  const tensors = tf.io.decodeWeights(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), specs);
  const stores = { params: new ParamStore(undefined, true), ema: new ParamStore(), m: new ParamStore(), v: new ParamStore() };
  for (const [name, t] of Object.entries(tensors)) {
    const slash = name.startsWith('opt/') ? name.indexOf('/', 4) : name.indexOf('/');
    const group = name.slice(0, slash);
    const key = name.slice(slash + 1);
    const target = group === 'params' ? stores.params : group === 'ema' ? stores.ema : group === 'opt/m' ? stores.m : group === 'opt/v' ? stores.v : undefined;
    if (!target) fail(`checkpoint '${dir}': unexpected weight '${name}'`);
    target.set(key, t);
    t.dispose();
  }
  if (stores.params.names().length === 0) fail(`checkpoint '${dir}': contains no model parameters`);
  const optStep = Number((json.meta.training as { optimizerStep?: number } | undefined)?.optimizerStep ?? 0);
  return {
    meta: json.meta,
    params: stores.params,
    ema: stores.ema.names().length ? stores.ema : (stores.ema.dispose(), undefined),
    optimizer: stores.m.names().length ? { m: stores.m, v: stores.v, step: optStep } : (stores.m.dispose(), stores.v.dispose(), undefined),
  };
}
