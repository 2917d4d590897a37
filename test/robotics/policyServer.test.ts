import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyClient } from '../../domains/robotics/serve/grpcClient.js';
import { PolicyServer, policyServiceDefinition } from '../../domains/robotics/serve/grpcServer.js';
import { PolicyHost } from '../../domains/robotics/serve/host.js';
import type { ActionChunkProto, ObservationProtoInit } from '../../src/proto/messages.js';
import { decode, encode } from '../../src/proto/registry.js';
import { fromTensorProto } from '../../src/proto/tensor.js';
import { Rng } from '../../src/rng/rng.js';
import { EchoEngine, state } from './serveFixtures.js';

/** A raw Act stream: write messages or arbitrary bytes, read chunks, await the final status. */
function rawAct(address: string) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
  const def = policyServiceDefinition.Act;
  const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize);
  const chunks: ActionChunkProto[] = [];
  const waiters: (() => void)[] = [];
  call.on('data', (b: Uint8Array) => {
    chunks.push(decode('scoreflow.v1.ActionChunk', b));
    waiters.splice(0).forEach((w) => w());
  });
  const status = new Promise<{ code: number; details: string }>((resolve) => {
    call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details }));
    call.on('error', () => undefined);
  });
  return {
    chunks,
    status,
    send(o: ObservationProtoInit): void {
      call.write(encode('scoreflow.v1.Observation', o));
    },
    sendBytes(b: Uint8Array): void {
      call.write(b);
    },
    async next(n: number, timeoutMs = 5000): Promise<ActionChunkProto> {
      const t0 = Date.now();
      while (chunks.length < n) {
        if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for chunk ${n}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return chunks[n - 1]!;
    },
    end(): void {
      call.end();
    },
    cancel(): void {
      call.cancel();
    },
    close(): void {
      client.close();
    },
  };
}

describe('gRPC PolicyService', () => {
  let engine: EchoEngine;
  let host: PolicyHost;
  let server: PolicyServer;

  beforeAll(async () => {
    engine = new EchoEngine(5);
    host = new PolicyHost(engine, { maxSessions: 8, maxMessageBytes: 4096, sessionIdleTimeoutMs: 2000 });
    server = await PolicyServer.start(host, { port: 0 });
  });
  afterAll(async () => {
    await server.close();
  });

  it('Info describes the policy', async () => {
    const client = new PolicyClient(server.address);
    const info = await client.info();
    expect(info.observation?.shape).toEqual([5]);
    expect(info.observation?.elementNames).toEqual(['agent_x', 'agent_y', 'block_x', 'block_y', 'block_angle']);
    expect(info.action?.shape).toEqual([15, 2]);
    expect(info).toMatchObject({ policyId: 'fake', obsHorizon: 2, predHorizon: 15, actionHorizon: 8, controlRateHz: 10, currentRow: 0, maxMessageBytes: 4096, maxSessions: 8 });
    client.close();
  });

  it('Act answers each observation with a chunk conditioned on the session history', async () => {
    const s = rawAct(server.address);
    s.send({ seq: 1, timestampNs: 1_000_000n, state: state(10), sessionId: 'robot-a' });
    const c1 = await s.next(1);
    expect(c1.obsSeq).toBe(1n);
    expect(c1.sessionId).toBe('robot-a');
    expect(c1.startTimestampNs).toBe(1_000_000n);
    expect(c1.dt).toBeCloseTo(0.1);
    const a1 = fromTensorProto(c1.actions!);
    expect(a1.shape).toEqual([15, 2]);
    // A one-observation history is padded by repeating it.
    expect(Array.from(a1.data as Float32Array).slice(0, 4)).toEqual([10, 10, 11, 11]);
    s.send({ seq: 2, timestampNs: 2_000_000n, state: state(20), sessionId: 'robot-a', historyOnly: true });
    s.send({ seq: 3, timestampNs: 3_000_000n, state: state(30), sessionId: 'robot-a' });
    const c2 = await s.next(2);
    expect(c2.obsSeq).toBe(3n);
    expect(Array.from(fromTensorProto(c2.actions!).data as Float32Array).slice(0, 2)).toEqual([20, 30]);
    // Reset clears the history: the next window is the new observation repeated.
    const client = new PolicyClient(server.address);
    expect(await client.reset('robot-a')).toBe(2);
    await expect(client.reset('nobody')).rejects.toThrow(/NOT_FOUND|no live session 'nobody'/);
    s.send({ seq: 4, timestampNs: 4_000_000n, state: state(40), sessionId: 'robot-a' });
    const c3 = await s.next(3);
    expect(Array.from(fromTensorProto(c3.actions!).data as Float32Array).slice(0, 2)).toEqual([40, 40]);
    // reset_history starts a new episode in order with the stream.
    s.send({ seq: 5, timestampNs: 4_500_000n, state: state(45), historyOnly: true });
    s.send({ seq: 6, timestampNs: 4_600_000n, state: state(46), resetHistory: true });
    const c4 = await s.next(4);
    expect(c4.obsSeq).toBe(6n);
    expect(Array.from(fromTensorProto(c4.actions!).data as Float32Array).slice(0, 2)).toEqual([46, 46]);
    // A state sent as a float32 tensor is accepted too.
    s.send({ seq: 7, timestampNs: 5_000_000n, tensors: { state: { dtype: 'DTYPE_FLOAT32', shape: [5], data: new Uint8Array(Float32Array.of(50, 1, 2, 3, 4).buffer) } } });
    expect((await s.next(5)).obsSeq).toBe(7n);
    s.end();
    expect((await s.status).code).toBe(grpc.status.OK);
    s.close();
    client.close();
  });

  it('RemotePolicy: chunks as TimedChunks, and reset() starts a new episode on the next observation', async () => {
    const client = new PolicyClient(server.address);
    const policy = await client.policy();
    expect(policy.info).toMatchObject({ actionDim: 2, observationDim: 5, predHorizon: 15, actionHorizon: 8, currentRow: 0, dtMs: 100, obsHorizon: 2 });
    policy.observe({ timeMs: 10, seq: 1, state: state(1) });
    const a = await policy.requestChunk({ timeMs: 110, seq: 2, state: state(2) });
    expect(a).toMatchObject({ obsSeq: 2, startTimeMs: 110, dtMs: 100 });
    expect(Array.from(a.actions[0]!)).toEqual([1, 2]);
    await policy.reset();
    const b = await policy.requestChunk({ timeMs: 210, seq: 3, state: state(3) });
    expect(Array.from(b.actions[0]!)).toEqual([3, 3]);
    expect(Array.from(b.actions[14]!)).toEqual([17, 17]);
    // Pinned rows travel as Observation.pinned_actions / pinned_first_row and come back in place.
    const pinned = { firstRow: -1, rows: [Float64Array.of(-1, -2), Float64Array.of(7.5, 8.5), Float64Array.of(9.25, 10.25)] };
    const c = await policy.requestChunk({ timeMs: 310, seq: 4, state: state(4) }, { pinned });
    expect(engine.lastPins).toEqual([pinned]);
    expect(Array.from(c.actions[0]!)).toEqual([7.5, 8.5]);
    expect(Array.from(c.actions[1]!)).toEqual([9.25, 10.25]);
    expect(Array.from(c.actions[2]!)).toEqual([5, 6]);
    await expect(policy.requestChunk({ timeMs: 410, seq: 5, state: state(5) }, { pinned: { firstRow: 0, rows: [Float64Array.of(1, 2, 3)] } })).rejects.toThrow(/pinned_actions: expected a multiple of action_dim 2/);
    await policy.close();
    client.close();
  });

  it('batches waiting sessions into one inference and answers only the freshest observation', async () => {
    engine.delayMs = 40;
    const streams = Array.from({ length: 4 }, () => rawAct(server.address));
    const before = host.stats();
    // Session 0 floods 20 observations; every session asks once more after that.
    for (let k = 1; k <= 20; k++) streams[0]!.send({ seq: k, timestampNs: k, state: state(k) });
    streams.slice(1).forEach((s, i) => s.send({ seq: 1, timestampNs: 1, state: state(100 + i) }));
    await Promise.all(streams.map((s) => s.next(1)));
    await new Promise((r) => setTimeout(r, 200));
    const after = host.stats();
    const requests = after.batchedRequests - before.batchedRequests;
    const batches = after.batches - before.batches;
    expect(requests / batches).toBeGreaterThan(1);
    // The flooding session got far fewer chunks than observations, and the last one answers seq 20.
    expect(streams[0]!.chunks.length).toBeLessThan(20);
    expect(streams[0]!.chunks.at(-1)!.obsSeq).toBe(20n);
    expect(after.superseded - before.superseded).toBeGreaterThan(0);
    streams.forEach((s) => {
      s.cancel();
      s.close();
    });
    engine.delayMs = 5;
  });

  // Each bad message follows a good observation (seq 1, t 10, state(1)) on the same stream.
  const BAD: [string, (s: ReturnType<typeof rawAct>) => void, bigint, RegExp][] = [
    ['a state of the wrong length', (s) => s.send({ seq: 2, timestampNs: 11, state: [1, 2, 3] }), 2n, /expected 5 values.*received 3/],
    ['a NaN in the state', (s) => s.send({ seq: 2, timestampNs: 11, state: [1, 2, NaN, 4, 5] }), 2n, /state\[2\] \(block_x\) is NaN/],
    ['an Inf in the state', (s) => s.send({ seq: 2, timestampNs: 11, state: [1, 2, 3, Infinity, 5] }), 2n, /state\[3\].*Infinity/],
    ['no state', (s) => s.send({ seq: 2, timestampNs: 11 }), 2n, /no state/],
    ['a tensor of the wrong dtype', (s) => s.send({ seq: 2, timestampNs: 11, tensors: { state: { dtype: 'DTYPE_INT32', shape: [5], data: new Uint8Array(20) } } }), 2n, /dtype must be float32 or float64, received int32/],
    ['a tensor of the wrong shape', (s) => s.send({ seq: 2, timestampNs: 11, tensors: { state: { dtype: 'DTYPE_FLOAT64', shape: [2, 5], data: new Uint8Array(80) } } }), 2n, /shape must be \[5\], received \[2, 5\]/],
    ['a tensor whose bytes do not match its shape', (s) => s.send({ seq: 2, timestampNs: 11, tensors: { state: { dtype: 'DTYPE_FLOAT64', shape: [5], data: new Uint8Array(7) } } }), 2n, /tensors\['state'\]/],
    ['an unknown tensor', (s) => s.send({ seq: 2, timestampNs: 11, state: state(2), tensors: { image: { dtype: 'DTYPE_UINT8', shape: [1], data: new Uint8Array(1) } } }), 2n, /takes only 'state', received 'image'/],
    ['a sequence number that does not increase', (s) => s.send({ seq: 1, timestampNs: 11, state: state(2) }), 1n, /seq 1 does not increase \(previous 1\)/],
    ['a timestamp going back', (s) => s.send({ seq: 2, timestampNs: 9, state: state(2) }), 2n, /goes back in time/],
    ['bad pins', (s) => s.send({ seq: 2, timestampNs: 11, state: state(2), pinnedActions: [1, 2, 3] }), 2n, /pinned_actions: expected a multiple of action_dim 2/],
    ['malformed bytes', (s) => s.sendBytes(new Uint8Array([0x0a, 0xff, 0xff, 0xff])), 0n, /malformed Observation message/],
  ];

  it.each(BAD)('rejects %s with a rejection chunk; that stream and the others go on, losing nothing', async (_name, act, seq, re) => {
    const healthy = rawAct(server.address);
    healthy.send({ seq: 1, state: state(1) });
    await healthy.next(1);
    const bad = rawAct(server.address);
    bad.send({ seq: 1, timestampNs: 10, state: state(1) });
    await bad.next(1);
    const before = host.stats().observationsRejected;
    act(bad);
    const rejection = await bad.next(2);
    expect(rejection).toMatchObject({ errorCode: 'INVALID_ARGUMENT', obsSeq: seq, actions: null });
    expect(rejection.errorMessage).toMatch(re);
    expect(host.stats().observationsRejected).toBe(before + (seq === 0n ? 0 : 1));
    // The same stream goes on, and the bad message never entered its history: the next window is
    // [state(1), state(7)] (EchoEngine rows echo the window's agent_x).
    bad.send({ seq: 10, timestampNs: 20, state: state(7) });
    const next = await bad.next(3);
    expect(next.errorCode).toBe('');
    expect(Array.from(fromTensorProto(next.actions!).data as Float32Array).slice(0, 2)).toEqual([1, 7]);
    healthy.send({ seq: 2, state: state(2) });
    expect((await healthy.next(2)).obsSeq).toBe(2n);
    for (const s of [healthy, bad]) {
      s.end();
      expect((await s.status).code).toBe(grpc.status.OK);
      s.close();
    }
    expect(host.stats().sessions).toBe(0);
  });

  it('ends a stream whose message is above the size limit with RESOURCE_EXHAUSTED; others go on', async () => {
    const healthy = rawAct(server.address);
    healthy.send({ seq: 1, state: state(1) });
    await healthy.next(1);
    const bad = rawAct(server.address);
    bad.send({ seq: 1, state: new Float64Array(1000) });
    expect((await bad.status).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    healthy.send({ seq: 2, state: state(2) });
    expect((await healthy.next(2)).obsSeq).toBe(2n);
    healthy.end();
    expect((await healthy.status).code).toBe(grpc.status.OK);
    bad.close();
    healthy.close();
  });

  it('a session_id that changes mid-stream ends that stream with INVALID_ARGUMENT', async () => {
    const s = rawAct(server.address);
    s.send({ seq: 1, state: state(1), sessionId: 'arm-1' });
    await s.next(1);
    s.send({ seq: 2, state: state(2), sessionId: 'arm-2' });
    const st = await s.status;
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.details).toMatch(/session_id changed mid-stream from 'arm-1' to 'arm-2'/);
    s.close();
  });

  it('refuses sessions above the limit with RESOURCE_EXHAUSTED and frees slots on disconnect', async () => {
    const open = Array.from({ length: 8 }, () => rawAct(server.address));
    open.forEach((s, i) => s.send({ seq: 1, state: state(i) }));
    await Promise.all(open.map((s) => s.next(1)));
    const extra = rawAct(server.address);
    extra.send({ seq: 1, state: state(1) });
    const st = await extra.status;
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/limit of 8 sessions/);
    open.forEach((s) => s.cancel());
    await new Promise((r) => setTimeout(r, 100));
    expect(host.stats().sessions).toBe(0);
    const again = rawAct(server.address);
    again.send({ seq: 1, state: state(1) });
    await again.next(1);
    again.cancel();
    [...open, extra, again].forEach((s) => s.close());
  });

  it('an engine failure rejects the requests it held with INTERNAL; the streams and the server go on', async () => {
    const s = rawAct(server.address);
    s.send({ seq: 1, state: state(1) });
    await s.next(1);
    engine.failNext = true;
    s.send({ seq: 2, state: state(2) });
    const rejection = await s.next(2);
    expect(rejection).toMatchObject({ errorCode: 'INTERNAL', obsSeq: 2n, actions: null });
    expect(rejection.errorMessage).toMatch(/inference failed: simulated engine failure/);
    // The failed request's observation stayed in the history: the next window is [state(2), state(3)].
    s.send({ seq: 3, state: state(3) });
    expect(Array.from(fromTensorProto((await s.next(3)).actions!).data as Float32Array).slice(0, 2)).toEqual([2, 3]);
    s.end();
    expect((await s.status).code).toBe(grpc.status.OK);
    s.close();
  });

  it('1000 connect/disconnect cycles leave sessions, memory and handles flat', async () => {
    // One client connection, as a robot that reconnects its stream would use. Each cycle is one
    // session: a third finish normally, a third half-close right after asking (and must still get
    // their chunk), a third cancel while their chunk is being computed.
    const client = new grpc.Client(server.address, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
    const def = policyServiceDefinition.Act;
    let halfClosedAnswered = 0;
    const cycle = async (i: number): Promise<void> => {
      const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize);
      call.on('error', () => undefined);
      const got = new Promise<void>((r) => call.once('data', () => r()));
      const status = new Promise<number>((r) => call.once('status', (st: grpc.StatusObject) => r(st.code)));
      call.write(encode('scoreflow.v1.Observation', { seq: 1, state: state(i % 500) }));
      if (i % 3 === 0) {
        await got;
        call.cancel();
      } else if (i % 3 === 1) {
        call.end();
        await got;
        if ((await status) === grpc.status.OK) halfClosedAnswered++;
      } else {
        await new Promise((r) => setTimeout(r, 2));
        call.cancel();
      }
      await status;
    };
    const settle = async (): Promise<{ heap: number; handles: number }> => {
      for (let k = 0; k < 100 && host.stats().sessions > 0; k++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 100));
      for (let k = 0; k < 3; k++) global.gc?.();
      return { heap: process.memoryUsage().heapUsed, handles: process.getActiveResourcesInfo().length };
    };
    expect(typeof global.gc, 'vitest runs with --expose-gc (vitest.config.ts)').toBe('function');
    for (let i = 0; i < 100; i++) await cycle(i);
    const m0 = await settle();
    for (let i = 0; i < 500; i++) await cycle(i);
    const m1 = await settle();
    for (let i = 0; i < 500; i++) await cycle(i);
    const m2 = await settle();
    client.close();
    console.log(
      `heap after 100 / 600 / 1100 cycles: ${(m0.heap / 1e6).toFixed(1)} / ${(m1.heap / 1e6).toFixed(1)} / ${(m2.heap / 1e6).toFixed(1)} MB; ` +
        `handles ${m0.handles} -> ${m2.handles}; sessions closed as idle: ${host.stats().idleClosed}`,
    );
    expect(halfClosedAnswered).toBe(33 + 167 + 167);
    expect(host.stats().sessions).toBe(0);
    expect(m2.handles).toBeLessThanOrEqual(m0.handles + 2);
    // A leak grows with the number of cycles; allow 1 MB of noise per 500 cycles (2 KB each).
    expect(m2.heap - m1.heap).toBeLessThan(1024 * 1024);
  }, 120_000);

  it('closes a session that went silent with DEADLINE_EXCEEDED', async () => {
    const s = rawAct(server.address);
    s.send({ seq: 1, state: state(1) });
    await s.next(1);
    const t0 = Date.now();
    const st = await s.status;
    expect(st.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(st.details).toMatch(/idle for more than 2000 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    s.close();
  });

  it('survives random and mutated bytes for a bounded time and keeps answering a healthy client', async () => {
    const rng = new Rng(7);
    const valid = encode('scoreflow.v1.Observation', { seq: 1, timestampNs: 5, state: state(3), sessionId: 'x' });
    const healthy = rawAct(server.address);
    let seq = 1;
    const deadline = Date.now() + 3000;
    let sent = 0;
    while (Date.now() < deadline) {
      const s = rawAct(server.address);
      for (let k = 0; k < 5; k++) {
        let bytes: Uint8Array;
        if (rng.uniform() < 0.5) {
          bytes = new Uint8Array(Math.floor(rng.uniform() * 64));
          for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rng.uniform() * 256);
        } else {
          bytes = valid.slice();
          for (let m = 0; m < 3; m++) bytes[Math.floor(rng.uniform() * bytes.length)] = Math.floor(rng.uniform() * 256);
        }
        s.sendBytes(bytes);
        sent++;
      }
      healthy.send({ seq: seq, state: state(seq % 500) });
      await healthy.next(seq);
      seq++;
      s.cancel();
      s.close();
    }
    expect(sent).toBeGreaterThan(100);
    expect(seq).toBeGreaterThan(20);
    healthy.cancel();
    healthy.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(host.stats().sessions).toBe(0);
  }, 30_000);
});
