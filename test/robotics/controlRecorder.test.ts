import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Subject } from 'rxjs';
import { afterAll, describe, expect, it } from 'vitest';
import { controlLoop, VirtualClock } from '../../domains/robotics/control/controlLoop.js';
import { CONTROL_TOPICS, ControlRecorder, publishControlLoop } from '../../domains/robotics/control/recorder.js';
import { LiveView } from '../../src/stream/liveView.js';
import type { ChunkPolicy, TimedChunk, TimedObservation } from '../../domains/robotics/control/types.js';
import { McapReader } from '../../src/io/mcap.js';
import type { ActionChunkProto, ActionProto, ControlLoopMetricsProto, ObservationProto } from '../../src/proto/messages.js';
import { fromTensorProto } from '../../src/proto/tensor.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-rec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Answers after 30 ms of virtual time with rows [t/1000, seq]. */
function rampPolicy(clock: VirtualClock): ChunkPolicy {
  const info = { actionDim: 2, observationDim: 1, predHorizon: 15, actionHorizon: 8, currentRow: 0, dtMs: 100, obsHorizon: 2 };
  return {
    info,
    observe: () => undefined,
    requestChunk: (o: TimedObservation) =>
      new Promise<TimedChunk>((resolve) =>
        clock.setTimer(
          () =>
            resolve({
              obsSeq: o.seq,
              startTimeMs: o.timeMs,
              dtMs: 100,
              latencyMs: 30,
              actions: Array.from({ length: 15 }, (_, r) => Float64Array.of((o.timeMs + r * 100) / 1000, o.seq)),
            }),
          30,
        ),
      ),
    reset: async () => undefined,
    close: async () => undefined,
  };
}

describe('ControlRecorder', () => {
  it('writes observations, chunks, actions and metrics of a live loop to MCAP', async () => {
    const clock = new VirtualClock(1000);
    const file = path.join(dir, 'session.mcap');
    const rec = await ControlRecorder.open(file, { epochOffsetMs: 1.7e12, sessionId: 'robot-1', now: () => clock.now() });
    const obs$ = new Subject<TimedObservation>();
    const loop = controlLoop({ policy: rec.recordPolicy(rampPolicy(clock)), observations$: obs$, rateHz: 50, clock, metricsIntervalMs: 1000 });
    rec.recordLoop(loop);
    let seq = 0;
    for (let k = 0; k < 100; k++) {
      obs$.next({ timeMs: clock.now(), seq: seq++, state: Float64Array.of(k) });
      await clock.advance(20);
    }
    const stopped = loop.stop();
    await clock.advance(100);
    await stopped;
    await rec.close();
    expect(rec.errors).toBe(0);

    const reader = await McapReader.open(file);
    const byTopic = new Map<string, unknown[]>();
    for await (const m of reader.messages()) {
      if (!byTopic.has(m.topic)) byTopic.set(m.topic, []);
      byTopic.get(m.topic)!.push(m.message);
      expect(m.logTime).toBeGreaterThan(1_700_000_000_000_000_000n);
    }
    await reader.close();
    const actions = byTopic.get(CONTROL_TOPICS.action) as ActionProto[];
    const chunks = byTopic.get(CONTROL_TOPICS.chunk) as ActionChunkProto[];
    const observations = byTopic.get(CONTROL_TOPICS.observation) as ObservationProto[];
    const metrics = byTopic.get(CONTROL_TOPICS.metrics) as ControlLoopMetricsProto[];
    const snap = loop.snapshot();
    expect(actions).toHaveLength(snap.ticks);
    expect(chunks).toHaveLength(snap.chunksReceived);
    expect(observations).toHaveLength(snap.observationsForwarded);
    expect(metrics.length).toBeGreaterThanOrEqual(1);
    expect(metrics[0]!.targetRateHz).toBe(50);
    expect(metrics[0]!.achievedRateHz).toBeCloseTo(50, 5);
    const c = chunks[0]!;
    expect(c.sessionId).toBe('robot-1');
    expect(fromTensorProto(c.actions!).shape).toEqual([15, 2]);
    expect(c.dt).toBeCloseTo(0.1);
    // Chunk actions executed by the loop equal the time in seconds (the ramp), and are recorded.
    const executed = actions.filter((a) => a.values[1]! > 0);
    expect(executed.length).toBeGreaterThan(10);
    expect(observations.some((o) => o.historyOnly)).toBe(true);
    expect(observations.every((o) => o.sessionId === 'robot-1' && o.state.length === 1)).toBe(true);
  });

  it('publishes a live loop on a Foxglove live view', async () => {
    const view = await LiveView.start({ port: 0 });
    try {
      const clock = new VirtualClock(0);
      const obs$ = new Subject<TimedObservation>();
      const loop = controlLoop({ policy: rampPolicy(clock), observations$: obs$, rateHz: 50, clock, metricsIntervalMs: 500 });
      const stop = publishControlLoop(loop, view, { epochOffsetMs: 1.7e12 });
      for (let k = 0; k < 60; k++) {
        obs$.next({ timeMs: clock.now(), seq: k, state: Float64Array.of(k) });
        await clock.advance(20);
      }
      stop();
      const s = loop.stop();
      await clock.advance(100);
      await s;
      // Every tick and every metrics window was handed to the view (no client: counted, not sent).
      expect(view.stats().published).toBe(loop.snapshot().ticks + 2);
      expect(view.hasSubscribers(CONTROL_TOPICS.action)).toBe(false);
    } finally {
      await view.close();
    }
  });
});
