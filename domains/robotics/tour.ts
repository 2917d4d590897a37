/**
 * The robotics stage of `scoreflow tour`: the shipped Push-T policy served over gRPC (in this
 * process, inference in a worker thread) and driving the Push-T simulator through the RxJS
 * control loop at 50 Hz for 10 s.
 */
import { PushTEnv } from './env/pusht.js';
import { driveEnv } from './control/drive.js';
import { shippedPolicyDir } from './serve/cli.js';
import { WorkerEngine } from './serve/engine.js';
import { PolicyClient } from './serve/grpcClient.js';
import { PolicyServer } from './serve/grpcServer.js';
import { PolicyHost } from './serve/host.js';

export async function robotTourStage({ json }: { json: boolean }): Promise<void> {
  const say = (obj: Record<string, unknown>, text: string): void => void process.stdout.write((json ? JSON.stringify(obj) : text) + '\n');
  const engine = await WorkerEngine.start({ checkpoint: shippedPolicyDir('pusht'), env: 'pusht' });
  const server = await PolicyServer.start(new PolicyHost(engine), { port: 0 });
  const client = new PolicyClient(server.address);
  const env = new PushTEnv();
  try {
    const policy = await client.policy();
    say(
      { event: 'serving', address: server.address, policy: engine.info.policyId, modelVersion: engine.info.modelVersion },
      `Push-T policy ${engine.info.modelVersion} (${engine.info.sampler}, ${engine.info.samplingSteps} steps) served over gRPC on ${server.address}; driving the simulator at 50 Hz for 10 s ...`,
    );
    const r = await driveEnv(env, policy, { rateHz: 50, seconds: 10, seed: 0 });
    await policy.close();
    say(
      { event: 'control-loop', ...r },
      `control loop: ${r.achievedRateHz} Hz, tick jitter p99 ${r.jitterP99Ms} ms, ${r.deadlineMisses} deadline misses, ${r.safeStops} safe stops; ` +
        `chunk round trip p50 ${r.inferenceP50Ms} ms / p99 ${r.inferenceP99Ms} ms (${r.chunksReceived} chunks); Push-T: ${r.envSteps} steps, max coverage ${r.maxReward}`,
    );
  } finally {
    client.close();
    await server.close();
    await engine.close();
    env.close();
  }
}
