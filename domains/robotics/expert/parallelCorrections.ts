/**
 * Expert corrections collected on several threads: the episodes are split into contiguous
 * ranges, the first runs on the calling thread and each other range in a worker thread with its
 * own policy, MuJoCo instances and tfjs backend. Ranges are concatenated in order, so the result
 * equals a single-threaded `collectCorrections` with the same options (episode k has the same
 * scene and random draws in any range).
 */
import { currentBackend, type BackendName } from '../../../src/backend/backend.js';
import { startModuleWorker } from '../../../src/util/moduleWorker.js';
import type { ArmReachEnv } from '../env/armReach.js';
import type { DiffusionPolicy } from '../policy/policy.js';
import { collectCorrections, type CorrectionOptions, type CorrectionReport } from './corrections.js';

/** What a corrections worker receives as `workerData`. */
export interface CorrectionsWorkerData {
  readonly checkpoint: string;
  /** The calling thread's backend, so every range samples with the same kernels. */
  readonly backend: BackendName;
  readonly options: CorrectionOptions;
}

export type CorrectionsWorkerReply = { readonly ok: true; readonly report: CorrectionReport } | { readonly ok: false; readonly message: string };

/** Contiguous, near-equal ranges [from, to) covering `episodes`, at most `parts` of them. */
export function episodeRanges(episodes: number, parts: number): { from: number; to: number }[] {
  if (!Number.isInteger(episodes) || episodes < 1) throw new RangeError(`episodeRanges: episodes must be a positive integer, got ${String(episodes)}`);
  if (!Number.isInteger(parts) || parts < 1) throw new RangeError(`episodeRanges: parts must be a positive integer, got ${String(parts)}`);
  const n = Math.min(parts, episodes);
  return Array.from({ length: n }, (_, r) => ({ from: Math.floor((r * episodes) / n), to: Math.floor(((r + 1) * episodes) / n) }));
}

function runWorker(checkpoint: string, options: CorrectionOptions): { done: Promise<CorrectionReport>; stop: () => Promise<number> } {
  const url = new URL(`./correctionsWorker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
  const data: CorrectionsWorkerData = { checkpoint, options, backend: (currentBackend()?.backend ?? 'wasm') as BackendName };
  const worker = startModuleWorker(url, { workerData: data });
  const done = new Promise<CorrectionReport>((resolve, reject) => {
    let settled = false;
    worker.once('message', (m: CorrectionsWorkerReply) => {
      settled = true;
      if (m.ok) resolve(m.report);
      else reject(new Error(m.message));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`corrections worker exited with code ${code} before reporting`));
    });
  });
  return { done, stop: () => worker.terminate() };
}

/**
 * `collectCorrections` over `workers` threads (this one included). `policy`, `env` and
 * `expertEnv` serve this thread's range; `checkpoint` is what the workers load (the same policy).
 */
export async function collectCorrectionsParallel(
  checkpoint: string,
  env: ArmReachEnv,
  expertEnv: ArmReachEnv,
  policy: DiffusionPolicy,
  options: CorrectionOptions,
  workers: number,
): Promise<CorrectionReport> {
  if (typeof checkpoint !== 'string' || checkpoint.length === 0) throw new TypeError('collectCorrectionsParallel: checkpoint must be the policy directory the workers load');
  if (!Number.isInteger(workers) || workers < 1 || workers > 16) throw new RangeError(`collectCorrectionsParallel: workers must be an integer in [1, 16], got ${String(workers)}`);
  if (options?.range !== undefined) throw new TypeError('collectCorrectionsParallel: options.range is chosen here (the episodes are split across the workers)');
  const ranges = episodeRanges(options.episodes, workers);
  if (ranges.length === 1) return collectCorrections(env, expertEnv, policy, options);
  // Workers first, so they load while this thread collects its own range.
  const others = ranges.slice(1).map((range) => runWorker(checkpoint, { ...options, range }));
  try {
    const mine = collectCorrections(env, expertEnv, policy, { ...options, range: ranges[0] });
    const rest = await Promise.all(others.map((o) => o.done));
    return [mine, ...rest].reduce((a, b) => ({
      demos: [...a.demos, ...b.demos],
      rollouts: a.rollouts + b.rollouts,
      rolloutSuccesses: a.rolloutSuccesses + b.rolloutSuccesses,
      queried: a.queried + b.queried,
      failed: a.failed + b.failed,
    }));
  } finally {
    await Promise.all(others.map((o) => o.stop().catch(() => 0)));
  }
}
