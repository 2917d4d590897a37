/**
 * Records a live control session to MCAP, the log format Foxglove and ROS 2 tools read: the
 * observations the policy received and the chunks it returned (wrap the policy with
 * `recordPolicy`), and the actions and metrics the loop emitted (`recordLoop`). Every channel is
 * a protobuf message of proto/ with its FileDescriptorSet as the schema, so the file opens in
 * those tools with every field decoded.
 *
 * Topics: `/robot/observation` (Observation), `/policy/action_chunk` (ActionChunk),
 * `/control/action` (Action, one per tick, values = the emitted action), `/control/metrics`
 * (ControlLoopMetrics). Log times are wall-clock nanoseconds: loop-clock milliseconds plus
 * `epochOffsetMs` (default `performance.timeOrigin`, right for the default loop clock).
 */
import type { Subscription } from 'rxjs';
import { McapRecorder } from '../../../src/io/mcap.js';
import type { LiveView } from '../../../src/stream/liveView.js';
import { fail } from '../../../src/util/validate.js';
import { observationMessage } from '../serve/chunks.js';
import type { ControlLoop } from './controlLoop.js';
import { toControlLoopMetricsProto } from './metrics.js';
import type { ChunkPolicy, TimedChunk, TimedObservation } from './types.js';

export const CONTROL_TOPICS = {
  observation: '/robot/observation',
  chunk: '/policy/action_chunk',
  action: '/control/action',
  metrics: '/control/metrics',
} as const;

export interface ControlRecorderOptions {
  /** Added to loop-clock ms to get epoch ms for log times. Default performance.timeOrigin. */
  readonly epochOffsetMs?: number;
  /** Session id written into observations and chunks. */
  readonly sessionId?: string;
  /** The loop's clock (for the arrival time of chunks). Default performance.now. */
  readonly now?: () => number;
}

export class ControlRecorder {
  private readonly subs: Subscription[] = [];
  private readonly epochOffsetMs: number;
  private readonly sessionId: string;
  private readonly now: () => number;
  private writeErrors = 0;
  lastError: string | undefined;

  private constructor(
    readonly mcap: McapRecorder,
    opts: ControlRecorderOptions,
  ) {
    this.epochOffsetMs = opts.epochOffsetMs ?? performance.timeOrigin;
    this.sessionId = opts.sessionId ?? '';
    this.now = opts.now ?? (() => performance.now());
  }

  static async open(path: string, opts: ControlRecorderOptions = {}): Promise<ControlRecorder> {
    if (typeof path !== 'string' || path.length === 0) fail('ControlRecorder.open: path must be a file path');
    const mcap = new McapRecorder();
    await mcap.open(path);
    return new ControlRecorder(mcap, opts);
  }

  private ns(ms: number): bigint {
    return BigInt(Math.max(0, Math.round((ms + this.epochOffsetMs) * 1e6)));
  }

  /** Writes never throw into the loop: a failure is counted and kept in `lastError`. */
  private write(topic: string, type: Parameters<McapRecorder['write']>[1], msg: object, timeMs: number): void {
    this.mcap.write(topic, type, msg, this.ns(timeMs)).catch((err: Error) => {
      this.writeErrors++;
      this.lastError = err.message;
    });
  }

  get errors(): number {
    return this.writeErrors;
  }

  /** A ChunkPolicy that records what passes through it and otherwise behaves like `policy`. */
  recordPolicy(policy: ChunkPolicy): ChunkPolicy {
    const rec = this;
    const obs = (o: TimedObservation, historyOnly: boolean): void => {
      try {
        rec.write(CONTROL_TOPICS.observation, 'scoreflow.v1.Observation', observationMessage(o, rec.sessionId, historyOnly), o.timeMs);
      } catch (err) {
        rec.writeErrors++;
        rec.lastError = (err as Error).message;
      }
    };
    return {
      info: policy.info,
      observe(o: TimedObservation): void {
        obs(o, true);
        policy.observe(o);
      },
      async requestChunk(o: TimedObservation): Promise<TimedChunk> {
        obs(o, false);
        const c = await policy.requestChunk(o);
        const flat = new Float32Array(c.actions.length * policy.info.actionDim);
        c.actions.forEach((row, r) => flat.set(row, r * policy.info.actionDim));
        rec.write(
          CONTROL_TOPICS.chunk,
          'scoreflow.v1.ActionChunk',
          {
            startTimestampNs: rec.ns(c.startTimeMs),
            dt: c.dtMs / 1000,
            actions: { dtype: 'DTYPE_FLOAT32', shape: [c.actions.length, policy.info.actionDim], data: new Uint8Array(flat.buffer), name: 'actions' },
            obsSeq: c.obsSeq,
            inferenceLatencyMs: c.latencyMs,
            sessionId: rec.sessionId,
          },
          rec.now(),
        );
        return c;
      },
      reset: () => policy.reset(),
      close: () => policy.close(),
    };
  }

  /** Record the loop's actions and metrics until it stops. */
  recordLoop(loop: ControlLoop): void {
    this.subs.push(
      loop.actions$.subscribe((a) => this.write(CONTROL_TOPICS.action, 'scoreflow.v1.Action', { timestampNs: this.ns(a.timeMs), values: a.action }, a.timeMs)),
      loop.metrics$.subscribe((m) => this.write(CONTROL_TOPICS.metrics, 'scoreflow.v1.ControlLoopMetrics', { ...toControlLoopMetricsProto(m), timestampNs: this.ns(m.timestampMs) }, m.timestampMs)),
    );
  }

  /** Stop recording and finish the file (call after `loop.stop()` to keep the final metrics). */
  async close(): Promise<void> {
    this.subs.splice(0).forEach((s) => s.unsubscribe());
    await this.mcap.close();
  }
}

/**
 * Publish a loop's actions and metrics on a Foxglove live view (topics `/control/action` and
 * `/control/metrics`, as in recordings). Returns a function that stops publishing.
 */
export function publishControlLoop(loop: ControlLoop, view: LiveView, opts: { epochOffsetMs?: number } = {}): () => void {
  const offset = opts.epochOffsetMs ?? performance.timeOrigin;
  const ns = (ms: number): bigint => BigInt(Math.max(0, Math.round((ms + offset) * 1e6)));
  const actions = view.advertise(CONTROL_TOPICS.action, 'scoreflow.v1.Action');
  const metrics = view.advertise(CONTROL_TOPICS.metrics, 'scoreflow.v1.ControlLoopMetrics');
  const subs = [
    loop.actions$.subscribe((a) => actions.publish({ timestampNs: ns(a.timeMs), values: a.action }, ns(a.timeMs))),
    loop.metrics$.subscribe((m) => metrics.publish({ ...toControlLoopMetricsProto(m), timestampNs: ns(m.timestampMs) }, ns(m.timestampMs))),
  ];
  return () => subs.forEach((s) => s.unsubscribe());
}
