/**
 * Worker-thread entry of a data-parallel gradient replica (see dataParallel.ts): builds the
 * network named by the caller's replica module on its own single-threaded backend, then answers
 * gradient requests over shared memory until told to quit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { workerData } from 'node:worker_threads';
import { setBackend } from '../backend/backend.js';
import '../backend/registerGradients.js';
import type { Network } from '../denoiser/denoiser.js';
import { ParamStore } from '../nn/params.js';
import { buildNetwork } from '../nn/registry.js';
import { Rng } from '../rng/rng.js';
import { CTRL, ERROR_BYTES, STATUS, type ReplicaDefinition, type ReplicaWorkerData } from './dataParallel.js';
import { readValues, writeVariable } from './hostMemory.js';

const d = workerData as ReplicaWorkerData;
const ctrl = new Int32Array(d.ctrl);
const params = new Float32Array(d.params);
const grads = new Float32Array(d.grads);
const indices = new Int32Array(d.indices);
const lossOut = new Float64Array(d.loss);
const errorOut = new Uint8Array(d.error);

function report(err: unknown): void {
  const msg = new TextEncoder().encode(String((err as Error)?.message ?? err));
  errorOut.fill(0);
  errorOut.set(msg.subarray(0, ERROR_BYTES - 1));
  Atomics.store(ctrl, CTRL.status, STATUS.error);
  Atomics.store(ctrl, CTRL.done, Atomics.load(ctrl, CTRL.request));
  Atomics.notify(ctrl, CTRL.done);
}

async function setUp(): Promise<{ def: ReplicaDefinition; net: Network; vars: tf.Variable[]; offsets: number[]; x: tf.Tensor; cond?: tf.Tensor }> {
  await setBackend(d.backend, { threads: 1 });
  const mod = (await import(d.module)) as { createReplica?: (init: unknown) => ReplicaDefinition | Promise<ReplicaDefinition> };
  if (typeof mod.createReplica !== 'function') throw new Error(`${d.module} does not export createReplica(init)`);
  const def = await mod.createReplica(d.init);
  const x = tf.tensor(d.x.values, d.x.shape, 'float32');
  const cond = d.cond ? tf.tensor(d.cond.values, d.cond.shape, 'float32') : undefined;
  const store = new ParamStore(new Rng(0));
  const net = buildNetwork(d.model, store);
  // One forward pass creates every parameter, as in the Trainer.
  tf.tidy(() => {
    const n = Math.min(2, x.shape[0]);
    net(tf.slice(x, 0, n), tf.fill([n], 0.5), cond ? tf.slice(cond, 0, n) : undefined);
  });
  const names = store.trainableNames();
  if (names.length !== d.names.length || names.some((n, i) => n !== d.names[i])) {
    throw new Error(`the replica's network has parameters [${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''}] (${names.length}), the trainer's [${d.names.slice(0, 4).join(', ')}${d.names.length > 4 ? ', ...' : ''}] (${d.names.length})`);
  }
  const vars = names.map((n) => store.get(n));
  const offsets: number[] = [];
  let off = 0;
  vars.forEach((v, i) => {
    if (v.size !== d.sizes[i]) throw new Error(`parameter '${names[i]}' has ${v.size} values in the replica, ${d.sizes[i]} in the trainer`);
    offsets.push(off);
    off += v.size;
  });
  return { def, net, vars, offsets, x, cond };
}

function loadParams(vars: tf.Variable[], offsets: number[]): void {
  vars.forEach((v, i) => writeVariable(v, params.subarray(offsets[i], offsets[i] + v.size)));
}

try {
  const s = await setUp();
  const net = s.net;
  Atomics.store(ctrl, CTRL.status, STATUS.ready);
  let seen = Atomics.load(ctrl, CTRL.request);
  for (;;) {
    Atomics.wait(ctrl, CTRL.request, seen);
    const req = Atomics.load(ctrl, CTRL.request);
    if (req === seen) continue;
    seen = req;
    if (Atomics.load(ctrl, CTRL.quit) === 1) break;
    try {
      loadParams(s.vars, s.offsets);
      const count = Atomics.load(ctrl, CTRL.count);
      const step = Atomics.load(ctrl, CTRL.step);
      const rng = new Rng(Atomics.load(ctrl, CTRL.seed));
      const idx = indices.slice(0, count);
      tf.tidy(() => {
        const it = tf.tensor1d(idx, 'int32');
        const batch = { x: tf.gather(s.x, it), cond: s.cond ? tf.gather(s.cond, it) : undefined };
        const { value, grads: g } = tf.variableGrads(() => tf.reshape(s.def.objective({ net, emaNet: net, rng, step }, batch), []) as tf.Scalar, s.vars);
        lossOut[0] = value.dataSync()[0];
        s.vars.forEach((v, i) => grads.set(readValues(g[v.name]), s.offsets[i]));
      });
      Atomics.store(ctrl, CTRL.done, req);
      Atomics.notify(ctrl, CTRL.done);
    } catch (err) {
      report(err);
    }
  }
} catch (err) {
  report(err);
}
