/** A deterministic stand-in engine for transport tests: chunk rows echo the window it was given. */
import type { ChunkPins, EngineInfo, EngineResult, InferenceEngine } from '../../domains/robotics/serve/engine.js';

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
  replanClearance: 0,
  guidance: '',
};

/**
 * Row r of a chunk is [older frame's agent_x + r, newer frame's agent_x + r]: a test can read
 * back which two observations formed the window; pinned rows replace their rows (as inpainting
 * does). `delayMs` simulates inference time.
 */
export class EchoEngine implements InferenceEngine {
  readonly info = FAKE_INFO;
  batches: number[] = [];
  /** The pins of the last batch (undefined when none was pinned). */
  lastPins: readonly (ChunkPins | undefined)[] | undefined;
  calls = 0;
  failNext = false;
  constructor(public delayMs = 5) {}

  async predict(windows: readonly (readonly Float64Array[])[], _seed?: number, pins?: readonly (ChunkPins | undefined)[]): Promise<EngineResult> {
    this.calls++;
    this.lastPins = pins;
    this.batches.push(windows.length);
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failNext) {
      this.failNext = false;
      throw new Error('simulated engine failure');
    }
    const chunks = windows.map((w, b) => {
      const c = new Float32Array(FAKE_INFO.rows * 2);
      for (let r = 0; r < FAKE_INFO.rows; r++) {
        c[2 * r] = w[0]![0]! + r;
        c[2 * r + 1] = w[1]![0]! + r;
      }
      const p = pins?.[b];
      p?.rows.forEach((row, k) => p.firstRow + k >= 0 && c.set(row, 2 * (p.firstRow + k)));
      return c;
    });
    return { chunks, latencyMs: this.delayMs };
  }

  async close(): Promise<void> {}
}

export const state = (x: number): Float64Array => Float64Array.of(x, 100, 200, 200, 0.5);
