/** `scoreflow doctor`: what this machine gives scoreflow (backend, versions, threads, SIMD). */
import * as tf from '@tensorflow/tfjs-core';
import os from 'node:os';
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setBackend, type BackendName } from '../backend/backend.js';
import { wasmThreadInfo } from '../backend/threads.js';
import { wasmMatMulFixInstalled } from '../backend/wasmMatMul.js';
import { heapKernels } from '../backend/wasmHeap.js';
import { wasmAdamAvailable } from '../train/wasmAdam.js';

const require = createRequire(import.meta.url);

function version(pkg: string): string {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

/** scoreflow's own version: the nearest package.json above this module (works from src/ and dist/). */
function ownVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
    dir = path.dirname(dir);
  }
  return 'unknown';
}

export async function doctor(opts: { json: boolean; backend: BackendName }): Promise<Record<string, unknown>> {
  const choice = await setBackend(opts.backend);
  const threads = choice.backend === 'wasm' ? wasmThreadInfo() : undefined;
  // A tiny matmul to prove the backend computes.
  const t0 = performance.now();
  const ok = tf.tidy(() => tf.sum(tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]))).dataSync()[0] === 64 * 64 * 64);
  const info = {
    scoreflow: ownVersion(),
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    cpus: os.cpus().length,
    backend: choice.backend,
    provider: choice.provider,
    reason: choice.reason,
    selfTest: ok ? `ok (${(performance.now() - t0).toFixed(1)} ms)` : 'FAILED',
    wasm: threads,
    // The fast paths this process uses (README, Benchmarks): each falls back when unavailable.
    kernels: {
      optimizer: wasmAdamAvailable()
        ? 'WebAssembly SIMD update (float32 arithmetic by default; float64 where optimizer.precision asks for it)'
        : 'JavaScript loop',
      ...(choice.backend === 'wasm'
        ? {
            matMulFix: wasmMatMulFixInstalled(),
            heapKernels: heapKernels(tf.backend()) ? 'SIMD transposes, bias-gradient sums and the no-packing matrix product' : 'unavailable (no WebAssembly SIMD or no backend memory): backend kernels',
          }
        : {}),
    },
    versions: {
      '@tensorflow/tfjs-core': version('@tensorflow/tfjs-core'),
      '@tensorflow/tfjs-backend-wasm': version('@tensorflow/tfjs-backend-wasm'),
      '@tensorflow/tfjs-node': version('@tensorflow/tfjs-node'),
      '@tensorflow/tfjs-node-gpu': version('@tensorflow/tfjs-node-gpu'),
      rxjs: version('rxjs'),
      protobufjs: version('protobufjs'),
    },
  };
  return info;
}
