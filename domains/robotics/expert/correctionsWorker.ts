/**
 * Worker-thread entry of `collectCorrectionsParallel`: loads the policy and two arm-reach
 * environments on its own tfjs backend, collects its range of episodes and posts the report.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setBackend } from '../../../src/backend/backend.js';
import { envForPolicy } from '../envs.js';
import type { ArmReachEnv } from '../env/armReach.js';
import { DiffusionPolicy } from '../policy/policy.js';
import { collectCorrections } from './corrections.js';
import type { CorrectionsWorkerData, CorrectionsWorkerReply } from './parallelCorrections.js';

const port = parentPort;
if (!port) throw new Error('correctionsWorker.ts must run in a worker thread');
const { checkpoint, options, backend } = workerData as CorrectionsWorkerData;

function reply(m: CorrectionsWorkerReply): void {
  port!.postMessage(m);
}

let policy: DiffusionPolicy | undefined;
const envs: ArmReachEnv[] = [];
try {
  await setBackend(backend, { threads: 1 });
  policy = DiffusionPolicy.load(checkpoint, { env: 'arm-reach' });
  for (let i = 0; i < 2; i++) envs.push((await envForPolicy(policy.config, { seed: options.seed })) as ArmReachEnv);
  reply({ ok: true, report: collectCorrections(envs[0], envs[1], policy, options) });
} catch (err) {
  reply({ ok: false, message: (err as Error)?.message ?? String(err) });
} finally {
  for (const e of envs) e.close();
  policy?.dispose();
}
