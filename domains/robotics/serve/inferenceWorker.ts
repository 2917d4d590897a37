/**
 * Worker-thread entry of WorkerEngine: loads a policy checkpoint on its own tfjs backend and
 * answers predict requests one batch at a time.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setBackend, type BackendName } from '../../../src/backend/backend.js';
import { envForPolicy } from '../envs.js';
import { DiffusionPolicy } from '../policy/policy.js';
import { engineInfo, enginePredictOptions, trimChunk, windowPinsFor, type WorkerEngineOptions, type WorkerReply, type WorkerRequest } from './engine.js';

const port = parentPort;
if (!port) throw new Error('inferenceWorker.ts must run in a worker thread');
const opts = workerData as WorkerEngineOptions & { modelVersion: string };

function post(m: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(m, transfer);
}

try {
  await setBackend((opts.backend ?? 'wasm') as BackendName);
  const policy = DiffusionPolicy.load(opts.checkpoint, { env: opts.env });
  const env = await envForPolicy(policy.config);
  // Checks the sampling override and builds the guidance terms once (a bad setting is fatal here).
  const predictOpts = enginePredictOptions(policy, opts);
  const info = engineInfo(policy, env.observationSpec, env.dt, { policyId: opts.policyId ?? policy.config.env, modelVersion: opts.modelVersion }, opts);
  // One prediction before reporting ready: the first call compiles kernels and allocates, and a
  // client's first chunk should not pay for it.
  const warm = env.reset({ seed: 0 });
  policy.predictChunks([Array.from({ length: info.obsHorizon }, () => warm)], { ...predictOpts, seed: 0 });
  env.close();
  port.on('message', (m: WorkerRequest) => {
    if (m.type !== 'predict') return;
    try {
      const windowPins = windowPinsFor(info.obsHorizon, m.pins);
      const r = policy.predictChunks(m.windows, { ...predictOpts, seed: m.seed, ...(windowPins ? { windowPins } : {}) });
      const chunks = r.chunks.map((c) => trimChunk(c, info.obsHorizon, info.actionDim));
      post({ type: 'result', id: m.id, chunks, latencyMs: r.latencyMs }, chunks.map((c) => c.buffer as ArrayBuffer));
    } catch (err) {
      post({ type: 'error', id: m.id, message: (err as Error).message });
    }
  });
  post({ type: 'ready', info });
} catch (err) {
  post({ type: 'fatal', message: (err as Error).message });
  process.exit(1);
}
