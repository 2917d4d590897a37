/** A deterministic stand-in engine for transport tests: chunk rows echo the window it was given. */
import type { EngineInfo, EngineResult, InferenceEngine } from '../../domains/robotics/serve/engine.js';

export const FAKE_INFO: EngineInfo = {
  policyId: 'fake',
  modelVersion: 'test',
  env: 'pusht',
  obsDim: 5,
  obsLow: [0, 0, 0, 0, 0],
  obsHigh: [512, 512, 512, 512, 6.3],
  obsNames: ['agent_x', 'agent_y', 'block_x', 'block_y', 'block_angle'],
  actionDim: 2,
  actionLow: [0, 0],
  actionHigh: [512, 512],
  obsHorizon: 2,
  rows: 15,
  actionHorizon: 8,
  controlRateHz: 10,
  sampler: 'ddim',
  samplingSteps: 10,
  temperature: 1,
  guidance: '',
};

/**
 * Row r of a chunk is [older frame's agent_x + r, newer frame's agent_x + r]: a test can read
 * back which two observations formed the window. `delayMs` simulates inference time.
 */
export class EchoEngine implements InferenceEngine {
  readonly info = FAKE_INFO;
  batches: number[] = [];
  calls = 0;
  failNext = false;
  constructor(public delayMs = 5) {}

  async predict(windows: readonly (readonly Float64Array[])[]): Promise<EngineResult> {
    this.calls++;
    this.batches.push(windows.length);
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failNext) {
      this.failNext = false;
      throw new Error('simulated engine failure');
    }
    const chunks = windows.map((w) => {
      const c = new Float32Array(FAKE_INFO.rows * 2);
      for (let r = 0; r < FAKE_INFO.rows; r++) {
        c[2 * r] = w[0]![0]! + r;
        c[2 * r + 1] = w[1]![0]! + r;
      }
      return c;
    });
    return { chunks, latencyMs: this.delayMs };
  }

  async close(): Promise<void> {}
}

export const state = (x: number): Float64Array => Float64Array.of(x, 100, 200, 200, 0.5);
