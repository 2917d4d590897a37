/**
 * Kernel replay for inference. A small network evaluated at batch 1 spends most of its time in
 * tfjs's per-op bookkeeping (tensor objects, scopes, engine maps: ~5-10 us per op on this
 * machine), not in the kernels, whose work on a few hundred numbers takes ~1 us. `replayable`
 * records, once per input shape, the sequence of kernels a network runs (name, inputs,
 * attributes) and afterwards calls those kernels directly on the backend, freeing each
 * intermediate after its last use. The kernels and their order are exactly those of the normal
 * run, so the output is identical.
 *
 * Contract (true of the networks built from src/nn layers): which kernels run, with which
 * attributes, depends only on the input shapes, never on input values read back to JavaScript,
 * and the network's parameters are tf.Variables (read at each call, so training and EMA updates
 * are seen). Under a gradient tape, on a backend change or if the recording sees anything it
 * cannot replay (a custom-gradient op, a tensor aliasing a kernel output), the network runs
 * normally. `SCOREFLOW_REPLAY=0` turns replay off.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DataId, KernelBackend, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { Network } from '../denoiser/denoiser.js';
import { recordingGradients } from './layers.js';

type Ref =
  | { readonly kind: 'arg'; readonly index: number }
  | { readonly kind: 'node'; readonly node: number; readonly out: number }
  | { readonly kind: 'var'; readonly variable: tf.Variable }
  | { readonly kind: 'const'; readonly info: TensorInfo };

interface Step {
  readonly name: string;
  readonly kernel: tf.KernelFunc;
  readonly inputs: ReadonlyArray<readonly [string, Ref]>;
  /** The op passed its inputs as an array (Concat, AddN, Pack), not as a name map. */
  readonly listInputs: boolean;
  readonly attrs: NamedAttrMap;
  /** Outputs (node, out) whose last use is this step: freed after it runs. */
  readonly frees: ReadonlyArray<readonly [number, number]>;
}

interface Trace {
  readonly backendName: string;
  readonly steps: readonly Step[];
  readonly result: { readonly node: number; readonly out: number };
  readonly consts: readonly TensorInfo[];
  readonly variables: readonly tf.Variable[];
}

interface EngineInternals {
  runKernel(name: string, inputs: tf.NamedTensorMap, attrs?: NamedAttrMap): tf.Tensor | tf.Tensor[];
  runKernelFunc(params: unknown): unknown;
  state: { kernelDepth: number; gradientDepth: number };
  makeTensorFromTensorInfo(info: TensorInfo, backend?: KernelBackend): tf.Tensor;
}

/** Options of `replayable`. */
export interface ReplayOptions {
  /** Traces kept (one per distinct input shape, e.g. per serving batch size), least recently used dropped first. Default 16. */
  readonly maxTraces?: number;
}

/** Counts since start (for tests and `scoreflow doctor`-style diagnostics). */
export const replayStats = { recorded: 0, replayed: 0, notReplayable: 0 };

const enabled = (): boolean => process.env.SCOREFLOW_REPLAY !== '0';

function shapeKey(args: readonly (tf.Tensor | undefined)[]): string {
  return args.map((a) => (a ? `${a.dtype}[${a.shape.join(',')}]` : '-')).join('|');
}

/** Run `net` normally while recording its top-level kernels; returns the output and, if replayable, the trace. */
function record(net: Network, args: [tf.Tensor, tf.Tensor, tf.Tensor | undefined]): { out: tf.Tensor; trace?: Trace } {
  const engine = tf.engine() as unknown as EngineInternals;
  const backend = tf.backend();
  const backendName = tf.getBackend();
  const produced = new Map<tf.Tensor, { node: number; out: number }>();
  const producedIds = new Set<DataId>();
  const raw: { name: string; kernel: tf.KernelFunc; inputs: [string, Ref][]; listInputs: boolean; attrs: NamedAttrMap }[] = [];
  const consts: TensorInfo[] = [];
  const variables = new Set<tf.Variable>();
  let replayOk = true;
  let inside = false;
  const refFor = (t: tf.Tensor): Ref => {
    const p = produced.get(t);
    if (p) return { kind: 'node', ...p };
    const argIndex = args.indexOf(t);
    if (argIndex >= 0) return { kind: 'arg', index: argIndex };
    if (t instanceof tf.Variable) {
      variables.add(t);
      return { kind: 'var', variable: t };
    }
    // A constant made during the call (e.g. the scalar of tf.add(x, 1)) or before it: hold its
    // data. A tensor sharing a kernel output's data that is not itself an output was made
    // outside the kernels; it cannot be replayed.
    if (producedIds.has(t.dataId)) replayOk = false;
    backend.incRef(t.dataId);
    const info = { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype };
    consts.push(info);
    return { kind: 'const', info };
  };
  const origRunKernel = engine.runKernel;
  const origRunKernelFunc = engine.runKernelFunc;
  // Custom-gradient ops (tfjs's fused ops among them) run their forward function at kernel
  // depth 1 without a kernel of their own: the kernels inside it are the ones to record.
  let customDepth = 0;
  engine.runKernel = function (this: EngineInternals, name, inputs, attrs) {
    const depth = engine.state.kernelDepth;
    const top = !inside && (depth === 0 || (customDepth > 0 && depth === 1));
    if (!top) return origRunKernel.call(this, name, inputs, attrs);
    const config = tf.getKernel(name, backendName);
    if (!config) return origRunKernel.call(this, name, inputs, attrs);
    const refs = Object.entries(inputs).filter(([, t]) => t != null).map(([k, t]) => [k, refFor(t as tf.Tensor)] as [string, Ref]);
    inside = true;
    let out: tf.Tensor | tf.Tensor[];
    try {
      out = origRunKernel.call(this, name, inputs, attrs);
    } finally {
      inside = false;
    }
    const outs = Array.isArray(out) ? out : [out];
    outs.forEach((t, i) => {
      produced.set(t, { node: raw.length, out: i });
      producedIds.add(t.dataId);
    });
    raw.push({ name, kernel: config.kernelFunc, inputs: refs, listInputs: Array.isArray(inputs), attrs: { ...(attrs ?? {}) } });
    return out;
  };
  engine.runKernelFunc = function (this: EngineInternals, params: unknown) {
    if (inside || engine.state.kernelDepth > 0) return origRunKernelFunc.call(this, params);
    // A custom-gradient op at top level: its inner kernels are recorded; one nested deeper is not replayable.
    if (customDepth > 0) replayOk = false;
    customDepth++;
    try {
      return origRunKernelFunc.call(this, params);
    } finally {
      customDepth--;
    }
  };
  let out: tf.Tensor;
  try {
    out = net(...args);
  } finally {
    engine.runKernel = origRunKernel;
    engine.runKernelFunc = origRunKernelFunc;
  }
  const result = produced.get(out);
  if (!replayOk || !result || raw.length === 0) {
    for (const c of consts) backend.disposeData(c.dataId);
    return { out };
  }
  // Last use of every output: the last step reading it; outputs never read are freed at once.
  const lastUse = new Map<string, number>();
  raw.forEach((s, i) => {
    for (const [, r] of s.inputs) if (r.kind === 'node') lastUse.set(`${r.node}:${r.out}`, i);
  });
  const frees: [number, number][][] = raw.map(() => []);
  produced.forEach(({ node, out: o }) => {
    if (node === result.node && o === result.out) return;
    frees[lastUse.get(`${node}:${o}`) ?? node].push([node, o]);
  });
  const steps: Step[] = raw.map((s, i) => ({ ...s, frees: frees[i] }));
  return { out, trace: { backendName, steps, result, consts, variables: [...variables] } };
}

function resolve(r: Ref, args: readonly (tf.Tensor | undefined)[], values: TensorInfo[][]): TensorInfo {
  switch (r.kind) {
    case 'node':
      return values[r.node][r.out];
    case 'arg':
      return args[r.index] as tf.Tensor;
    case 'var':
      return r.variable;
    case 'const':
      return r.info;
  }
}

function replay(trace: Trace, args: readonly (tf.Tensor | undefined)[]): tf.Tensor {
  const backend = tf.backend();
  const values: TensorInfo[][] = new Array(trace.steps.length);
  let i = 0;
  try {
    for (; i < trace.steps.length; i++) {
      const step = trace.steps[i];
      let inputs: Record<string, TensorInfo> | TensorInfo[];
      if (step.listInputs) inputs = step.inputs.map(([, r]) => resolve(r, args, values));
      else {
        inputs = {};
        for (const [k, r] of step.inputs) inputs[k] = resolve(r, args, values);
      }
      const out = step.kernel({ inputs: inputs as unknown as tf.NamedTensorInfoMap, attrs: step.attrs, backend });
      values[i] = Array.isArray(out) ? out : [out];
      for (const [n, o] of step.frees) backend.disposeData(values[n][o].dataId);
    }
  } catch (err) {
    // Free what this call made before rethrowing.
    const freed = new Set<string>();
    for (let s = 0; s < i; s++) for (const [n, o] of trace.steps[s].frees) freed.add(`${n}:${o}`);
    for (let n = 0; n < i; n++) values[n]?.forEach((v, o) => freed.has(`${n}:${o}`) || backend.disposeData(v.dataId));
    throw err;
  }
  const engine = tf.engine() as unknown as EngineInternals;
  return engine.makeTensorFromTensorInfo(values[trace.result.node][trace.result.out], backend);
}

function release(trace: Trace): void {
  const backend = tf.backend();
  for (const c of trace.consts) backend.disposeData(c.dataId);
}

/**
 * Wrap a network so that inference calls (no gradient tape) replay its recorded kernels. The
 * first call for each input shape runs normally and records; later calls replay.
 */
export function replayable(net: Network, opts: ReplayOptions = {}): Network & { dispose(): void } {
  const maxTraces = opts.maxTraces ?? 16;
  const traces = new Map<string, Trace | null>();
  const wrapped = ((x: tf.Tensor, tFeat: tf.Tensor, cond?: tf.Tensor): tf.Tensor => {
    if (!enabled() || recordingGradients()) return net(x, tFeat, cond);
    const args: [tf.Tensor, tf.Tensor, tf.Tensor | undefined] = [x, tFeat, cond];
    const key = `${tf.getBackend()}|${shapeKey(args)}`;
    const known = traces.get(key);
    if (known === null) return net(x, tFeat, cond);
    if (known && known.backendName === tf.getBackend() && known.variables.every((v) => !v.isDisposed)) {
      traces.delete(key);
      traces.set(key, known); // most recently used last
      replayStats.replayed++;
      return replay(known, args);
    }
    if (known) {
      release(known);
      traces.delete(key);
    }
    const { out, trace } = record(net, args);
    traces.set(key, trace ?? null);
    if (trace) replayStats.recorded++;
    else replayStats.notReplayable++;
    while (traces.size > maxTraces) {
      const [oldest, t] = traces.entries().next().value as [string, Trace | null];
      if (t) release(t);
      traces.delete(oldest);
    }
    return out;
  }) as Network & { dispose(): void };
  wrapped.dispose = () => {
    traces.forEach((t) => t && release(t));
    traces.clear();
  };
  return wrapped;
}
