/**
 * Data-parallel gradients on worker threads: each training step splits the batch between the
 * calling thread and `workers` replicas, each a `worker_threads` Worker with its own single-
 * threaded tfjs backend, its own copy of the data and the same network. The main thread keeps
 * the only optimiser, EMA and checkpoint; replicas only compute gradients.
 *
 * Why: on 2 CPU cores, two single-threaded WASM backends on half a batch each process ~1.6x the
 * samples per second of one backend with XNNPACK's two-thread pool on the whole batch (see
 * README, "Data-parallel training"), because the pool synchronises inside every kernel and the
 * replicas only once per step.
 *
 * Protocol (shared memory, no event loop needed on either side, so `Trainer.trainStep` stays
 * synchronous): the main thread writes the current parameters into one shared vector, each
 * replica's batch indices, step and seed into its control block, and bumps the request counter;
 * the replica copies the parameters into its variables, computes the loss and gradients of its
 * part, writes them (flat, in the optimiser's parameter order) into its gradient vector and bumps
 * the done counter. Errors travel back as a status code and a UTF-8 message.
 *
 * A replica is built by a module the caller names (`ReplicaSpec.module`): it exports
 * `createReplica(init)` returning the network spec and the objective, so domain code (which
 * registers its networks) runs in the worker while this core module never imports it.
 */
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../util/moduleWorker.js';
import { fail } from '../util/validate.js';
import type { ModelSpec } from '../nn/registry.js';
import type { Objective } from './trainer.js';

/**
 * What a replica module's `createReplica(init)` returns. Importing the module must also register
 * the trainer's network kind (the replica builds the trainer's own `ModelSpec`).
 */
export interface ReplicaDefinition {
  /**
   * Must compute the same loss as the main thread's objective. A replica has no EMA: its
   * context's `emaNet` is the live network, so objectives that need EMA targets (consistency
   * training) cannot be split this way.
   */
  readonly objective: Objective;
}

export interface ReplicaSpec {
  /** Worker threads besides the calling thread (1 on a 2-core machine). */
  readonly workers: number;
  /** URL (file:) of a module exporting `createReplica(init): ReplicaDefinition | Promise<ReplicaDefinition>`. */
  readonly module: string;
  /** Structured-cloneable argument for `createReplica`. */
  readonly init: unknown;
  /** tfjs backend of the replicas ('wasm' or 'cpu'; default 'wasm', one thread each). */
  readonly backend?: 'wasm' | 'cpu';
  /** Give up on a replica that has not answered for this long (ms; default 120000). */
  readonly timeoutMs?: number;
}

/** Indices of the control block (Int32Array). */
export const CTRL = { request: 0, done: 1, status: 2, count: 3, step: 4, seed: 5, quit: 6, size: 8 } as const;
export const STATUS = { starting: 0, ready: 1, error: 2 } as const;
export const ERROR_BYTES = 4096;

/** What the main thread hands a replica worker as `workerData`. */
export interface ReplicaWorkerData {
  readonly module: string;
  readonly init: unknown;
  readonly model: ModelSpec;
  readonly backend: 'wasm' | 'cpu';
  readonly names: readonly string[];
  readonly sizes: readonly number[];
  readonly x: { values: Float32Array; shape: number[] };
  readonly cond?: { values: Float32Array; shape: number[] };
  readonly ctrl: SharedArrayBuffer;
  readonly params: SharedArrayBuffer;
  readonly grads: SharedArrayBuffer;
  readonly indices: SharedArrayBuffer;
  readonly loss: SharedArrayBuffer;
  readonly error: SharedArrayBuffer;
}

interface Replica {
  readonly worker: Worker;
  readonly ctrl: Int32Array;
  readonly grads: Float32Array;
  readonly indices: Int32Array;
  readonly loss: Float64Array;
  readonly error: Uint8Array;
  exited: boolean;
}

export function validateReplicaSpec(spec: ReplicaSpec): Required<ReplicaSpec> {
  if (!spec || typeof spec !== 'object') fail('replicas: expected { workers, module, init }');
  if (!Number.isInteger(spec.workers) || spec.workers < 1 || spec.workers > 16) fail(`replicas.workers: expected an integer in [1, 16], received ${String(spec.workers)}`);
  if (typeof spec.module !== 'string' || !spec.module.startsWith('file:')) fail(`replicas.module: expected a file: URL of a module exporting createReplica, received ${String(spec.module)}`);
  const backend = spec.backend ?? 'wasm';
  if (backend !== 'wasm' && backend !== 'cpu') fail(`replicas.backend: expected 'wasm' or 'cpu', received ${String(spec.backend)}`);
  const timeoutMs = spec.timeoutMs ?? 120_000;
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) fail(`replicas.timeoutMs: expected a positive number, received ${String(spec.timeoutMs)}`);
  return { workers: spec.workers, module: spec.module, init: spec.init, backend, timeoutMs };
}

function readError(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(bytes.slice(0, end < 0 ? bytes.length : end));
}

/**
 * The worker side of a step split: `workers` replicas that compute gradients of batch parts on
 * request. Use through `Trainer.startReplicas`.
 */
export class GradientReplicas {
  private readonly replicas: Replica[] = [];
  /** Parameters as the replicas read them (flat, optimiser order). */
  readonly params: Float32Array;
  private readonly spec: Required<ReplicaSpec>;
  private seq = 0;
  private closed = false;

  private constructor(spec: Required<ReplicaSpec>, size: number) {
    this.spec = spec;
    this.params = new Float32Array(new SharedArrayBuffer(4 * size));
  }

  get workers(): number {
    return this.replicas.length;
  }

  /** Start the workers and wait until each has built its network and checked its parameters. */
  static async start(
    specIn: ReplicaSpec,
    layout: { model: ModelSpec; names: readonly string[]; sizes: readonly number[]; maxBatch: number },
    data: { x: { values: Float32Array; shape: number[] }; cond?: { values: Float32Array; shape: number[] } },
  ): Promise<GradientReplicas> {
    const spec = validateReplicaSpec(specIn);
    const size = layout.sizes.reduce((a, b) => a + b, 0);
    const g = new GradientReplicas(spec, size);
    try {
      for (let w = 0; w < spec.workers; w++) {
        const buffers = {
          ctrl: new SharedArrayBuffer(4 * CTRL.size),
          grads: new SharedArrayBuffer(4 * size),
          indices: new SharedArrayBuffer(4 * Math.max(1, layout.maxBatch)),
          loss: new SharedArrayBuffer(8),
          error: new SharedArrayBuffer(ERROR_BYTES),
        };
        const workerData: ReplicaWorkerData = {
          module: spec.module,
          init: spec.init,
          model: layout.model,
          backend: spec.backend,
          names: layout.names,
          sizes: layout.sizes,
          x: data.x,
          cond: data.cond,
          params: g.params.buffer as SharedArrayBuffer,
          ...buffers,
        };
        const url = new URL(`./replicaWorker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
        const worker = startModuleWorker(url, { workerData });
        const r: Replica = {
          worker,
          ctrl: new Int32Array(buffers.ctrl),
          grads: new Float32Array(buffers.grads),
          indices: new Int32Array(buffers.indices),
          loss: new Float64Array(buffers.loss),
          error: new Uint8Array(buffers.error),
          exited: false,
        };
        worker.on('error', (err) => {
          // A crash before the protocol could report it (e.g. the module failed to load).
          if (Atomics.load(r.ctrl, CTRL.status) !== STATUS.error) {
            const msg = new TextEncoder().encode(`replica worker crashed: ${err.message}`.slice(0, ERROR_BYTES - 1));
            r.error.set(msg.subarray(0, ERROR_BYTES - 1));
            Atomics.store(r.ctrl, CTRL.status, STATUS.error);
          }
        });
        worker.on('exit', () => {
          r.exited = true;
        });
        g.replicas.push(r);
      }
      // Readiness is awaited asynchronously: startup needs this thread's event loop (worker errors, stdio).
      const deadline = Date.now() + spec.timeoutMs;
      for (const [w, r] of g.replicas.entries()) {
        while (Atomics.load(r.ctrl, CTRL.status) === STATUS.starting) {
          if (r.exited) fail(`replica ${w + 1}: the worker exited during start-up`);
          if (Date.now() > deadline) fail(`replica ${w + 1}: not ready after ${spec.timeoutMs} ms`);
          await new Promise((res) => setTimeout(res, 5));
        }
        if (Atomics.load(r.ctrl, CTRL.status) === STATUS.error) fail(`replica ${w + 1}: ${readError(r.error)}`);
      }
    } catch (err) {
      await g.close();
      throw err;
    }
    return g;
  }

  /**
   * Hand one part of a step to each replica: `parts[w]` are replica w's batch indices and
   * `seeds[w]` the seed of its random draws. The caller has written the current parameters into
   * `params` first. Every replica gets a part (`parts.length === workers`).
   */
  dispatch(parts: readonly Int32Array[], step: number, seeds: readonly number[]): void {
    if (this.closed) fail('replicas: already closed');
    if (parts.length !== this.replicas.length || seeds.length !== this.replicas.length) {
      fail(`replicas: expected ${this.replicas.length} parts and seeds, received ${parts.length} and ${seeds.length}`);
    }
    this.seq += 1;
    this.replicas.forEach((r, w) => {
      const idx = parts[w];
      if (idx.length === 0 || idx.length > r.indices.length) fail(`replicas: part ${w + 1} has ${idx.length} examples, expected 1..${r.indices.length}`);
      r.indices.set(idx);
      Atomics.store(r.ctrl, CTRL.count, idx.length);
      Atomics.store(r.ctrl, CTRL.step, step);
      Atomics.store(r.ctrl, CTRL.seed, seeds[w] | 0);
      Atomics.store(r.ctrl, CTRL.request, this.seq);
      Atomics.notify(r.ctrl, CTRL.request);
    });
  }

  /**
   * Block until replica `w` has answered the current request; returns its mean loss and its
   * gradient (a live view: read it before the next request).
   */
  collect(w: number): { loss: number; grads: Float32Array } {
    const r = this.replicas[w];
    const deadline = Date.now() + this.spec.timeoutMs;
    while (Atomics.load(r.ctrl, CTRL.done) !== this.seq) {
      if (Atomics.load(r.ctrl, CTRL.status) === STATUS.error) break;
      if (r.exited) fail(`replica ${w + 1}: the worker exited`);
      if (Date.now() > deadline) fail(`replica ${w + 1}: no answer after ${this.spec.timeoutMs} ms`);
      Atomics.wait(r.ctrl, CTRL.done, Atomics.load(r.ctrl, CTRL.done), 200);
    }
    if (Atomics.load(r.ctrl, CTRL.status) === STATUS.error) fail(`replica ${w + 1}: ${readError(r.error)}`);
    return { loss: r.loss[0], grads: r.grads };
  }

  /** Stop the workers (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      this.replicas.map(async (r) => {
        Atomics.store(r.ctrl, CTRL.quit, 1);
        Atomics.add(r.ctrl, CTRL.request, 1);
        Atomics.notify(r.ctrl, CTRL.request);
        if (!r.exited) await r.worker.terminate();
      }),
    );
  }
}
