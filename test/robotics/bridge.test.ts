import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BridgeClient, BridgeServer, serveBridgeStream } from '../../domains/robotics/serve/bridge.js';
import { PolicyHost } from '../../domains/robotics/serve/host.js';
import { encodeFrame, FrameReader } from '../../src/proto/framing.js';
import type { ActionChunkProto, BridgeReplyProto, BridgeRequestProtoInit } from '../../src/proto/messages.js';
import { decode, encode } from '../../src/proto/registry.js';
import { fromTensorProto } from '../../src/proto/tensor.js';
import { Rng } from '../../src/rng/rng.js';
import { EchoEngine, FAKE_INFO, state } from './serveFixtures.js';

const MAX_MESSAGE_BYTES = 4096;
const MAX_SESSIONS = 32;

/** One framed BridgeRequest. */
const frame = (req: BridgeRequestProtoInit): Uint8Array => encodeFrame(encode('scoreflow.v1.BridgeRequest', req));
const obsFrame = (seq: number, x: number, extra: { historyOnly?: boolean; sessionId?: string } = {}): Uint8Array =>
  frame({ observation: { seq, timestampNs: BigInt(seq) * 1_000_000n, state: state(x), ...extra } });

/** Every BridgeReply in a byte stream that must end on a frame boundary. */
function decodeReplies(bytes: Uint8Array): BridgeReplyProto[] {
  const reader = new FrameReader();
  const out = reader.push(bytes).map((f) => decode('scoreflow.v1.BridgeReply', f));
  reader.end();
  return out;
}

/** A chunk's actions as a shape and a plain array. */
function actions(chunk: ActionChunkProto): { shape: number[]; data: number[] } {
  const t = fromTensorProto(chunk.actions!);
  return { shape: [...t.shape], data: Array.from(t.data as Float32Array) };
}

/** What EchoEngine returns for the window [older, newer] (by agent_x): row r = [older + r, newer + r]. */
function echo(older: number, newer: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < FAKE_INFO.rows; r++) out.push(older + r, newer + r);
  return out;
}

const show = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 3000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Sockets the underlying net.Server still holds (whatever the bridge's own bookkeeping says). */
function tcpConnections(bridge: BridgeServer): Promise<number> {
  const server = (bridge as unknown as { server: net.Server }).server;
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** The next reply, which must be a chunk. */
async function nextChunk(c: BridgeClient): Promise<ActionChunkProto> {
  const r = await c.next();
  expect(r, 'expected a chunk, the connection closed').toBeDefined();
  expect(Object.keys(r!)).toEqual(['chunk']);
  return r!.chunk!;
}

/** The connection's only remaining traffic is one error reply, then the server closes it. */
async function expectErrorThenClose(c: BridgeClient, code: string, message: RegExp): Promise<void> {
  const r = await c.next();
  expect(r, 'expected an error reply, the connection closed').toBeDefined();
  expect(Object.keys(r!)).toEqual(['error']);
  expect(r!.error!.code).toBe(code);
  expect(r!.error!.message).toMatch(message);
  expect(await c.next(), 'the server must close the connection after an error').toBeUndefined();
}

/** `scoreflow robot bridge --stdio` as a child process in its own process group; its info request is sent at once. */
function startCli() {
  const child = spawn('npx', ['tsx', 'domains/cli.ts', 'robot', 'bridge', '--stdio'], { cwd: '/work/main', detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let hasExited = false;
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdin.on('error', () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      hasExited = true;
      resolve({ code, signal });
    }),
  );
  const reader = new FrameReader();
  const replies: BridgeReplyProto[] = [];
  child.stdout.on('data', (b: Buffer) => {
    for (const f of reader.push(b)) replies.push(decode('scoreflow.v1.BridgeReply', f));
  });
  child.stdin.write(frame({ info: {} }));
  return {
    child,
    exited,
    reader,
    replies,
    stderr: (): string => stderr,
    async nextReply(n: number, timeoutMs: number): Promise<BridgeReplyProto> {
      await waitFor(() => replies.length >= n || hasExited, `reply ${n} from the CLI`, timeoutMs).catch((err: Error) => {
        throw new Error(`${err.message}; stderr: ${stderr}`);
      });
      if (replies.length < n) throw new Error(`the CLI exited before reply ${n}; stderr: ${stderr}`);
      return replies[n - 1]!;
    },
    /** Kill the whole process group (npx, tsx and node) if anything of it is left. */
    kill(): void {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}

let cli: ReturnType<typeof startCli> | undefined;
beforeAll(() => {
  cli = startCli();
});
afterAll(() => {
  cli?.kill();
});

describe('TCP bridge', () => {
  let engine: EchoEngine;
  let host: PolicyHost;
  let bridge: BridgeServer;

  beforeAll(async () => {
    engine = new EchoEngine(2);
    host = new PolicyHost(engine, { maxSessions: MAX_SESSIONS, maxMessageBytes: MAX_MESSAGE_BYTES });
    bridge = await BridgeServer.start(host, { port: 0 });
  });
  afterAll(async () => {
    await bridge.close();
    host.close();
  });

  /** Nothing left open on the server: no sessions, no tracked or untracked sockets. */
  const expectAllClosed = async (): Promise<void> => {
    await waitFor(async () => host.stats().sessions === 0 && bridge.openConnections === 0 && (await tcpConnections(bridge)) === 0, 'every session and socket to close');
    expect(host.stats().sessions).toBe(0);
    expect(bridge.openConnections).toBe(0);
  };

  it('answers info, observations (with the session history), history_only and reset', async () => {
    const c = await BridgeClient.connect(bridge.port);
    c.send({ info: {} });
    const r0 = await c.next();
    expect(Object.keys(r0!)).toEqual(['info']);
    const info = r0!.info!;
    expect(info).toMatchObject({
      policyId: 'fake',
      modelVersion: 'test',
      env: 'pusht',
      obsHorizon: 2,
      predHorizon: 15,
      actionHorizon: 8,
      controlRateHz: 10,
      currentRow: 0,
      sampler: 'ddim',
      samplingSteps: 10,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      maxSessions: MAX_SESSIONS,
    });
    expect(info.observation).toMatchObject({ name: 'state', shape: [5], low: FAKE_INFO.obsLow, high: FAKE_INFO.obsHigh, elementNames: FAKE_INFO.obsNames });
    expect(info.action).toMatchObject({ name: 'actions', shape: [15, 2], low: [0, 0], high: [512, 512] });

    // A one-observation history is padded by repeating it.
    c.socket.write(obsFrame(1, 10));
    const c1 = await nextChunk(c);
    expect(c1.obsSeq).toBe(1n);
    expect(c1.startTimestampNs).toBe(1_000_000n);
    expect(c1.dt).toBeCloseTo(0.1, 12);
    expect(c1.policyId).toBe('fake');
    expect(c1.sessionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(actions(c1)).toEqual({ shape: [15, 2], data: echo(10, 10) });
    const sessionId = c1.sessionId;

    // history_only extends the history without a reply; the next chunk answers seq 3 from [20, 30].
    c.socket.write(obsFrame(2, 20, { historyOnly: true }));
    c.socket.write(obsFrame(3, 30));
    const c2 = await nextChunk(c);
    expect(c2.obsSeq).toBe(3n);
    expect(c2.sessionId).toBe(sessionId);
    expect(actions(c2)).toEqual({ shape: [15, 2], data: echo(20, 30) });

    // Reset with an empty session_id clears this connection's own history (obsHorizon = 2 kept).
    c.send({ reset: {} });
    expect(await c.next()).toEqual({ reset: { clearedObservations: 2 } });
    c.socket.write(obsFrame(4, 40));
    expect(actions(await nextChunk(c)).data).toEqual(echo(40, 40));

    // Reset of an unknown session: an error reply, but the connection and its history survive.
    c.send({ reset: { sessionId: 'nobody' } });
    expect(await c.next()).toEqual({ error: { code: 'NOT_FOUND', message: "reset: no live session 'nobody'" } });
    c.socket.write(obsFrame(5, 50));
    const c5 = await nextChunk(c);
    expect(c5.obsSeq).toBe(5n);
    expect(actions(c5).data).toEqual(echo(40, 50));

    // Another connection can reset this session by its id.
    const other = await BridgeClient.connect(bridge.port);
    other.send({ reset: { sessionId } });
    expect(await other.next()).toEqual({ reset: { clearedObservations: 2 } });
    expect(host.stats().sessions).toBe(2);
    other.close();
    c.socket.write(obsFrame(6, 60));
    expect(actions(await nextChunk(c)).data).toEqual(echo(60, 60));

    // A named session: chunks echo the name and reset({}) finds the renamed session.
    const named = await BridgeClient.connect(bridge.port);
    named.socket.write(obsFrame(1, 7, { sessionId: 'robot-b' }));
    const n1 = await nextChunk(named);
    expect(n1.sessionId).toBe('robot-b');
    expect(actions(n1).data).toEqual(echo(7, 7));
    c.send({ reset: { sessionId: 'robot-b' } });
    expect(await c.next()).toEqual({ reset: { clearedObservations: 1 } });
    named.send({ reset: {} });
    expect(await named.next()).toEqual({ reset: { clearedObservations: 0 } });

    expect(bridge.openConnections).toBe(2);
    c.close();
    named.close();
    await expectAllClosed();
  });

  const BAD: [string, Uint8Array, string, RegExp][] = [
    ['malformed protobuf in a valid frame', encodeFrame(Uint8Array.of(0x0a, 0xff, 0xff, 0xff)), 'INVALID_ARGUMENT', /^malformed BridgeRequest \(4 bytes\): ./],
    ['an empty BridgeRequest', encodeFrame(new Uint8Array(0)), 'INVALID_ARGUMENT', /^empty BridgeRequest: set one of observation, info, reset$/],
    // varint 5000 = 0x88 0x27; the body is never sent: the prefix alone is refused.
    ['a frame declaring more than maxMessageBytes', Uint8Array.of(0x88, 0x27), 'RESOURCE_EXHAUSTED', /^bad frame: frame at byte 0 declares 5000 bytes, over the 4096-byte limit$/],
    ['a real message above maxMessageBytes', frame({ observation: { seq: 1, state: new Float64Array(600) } }), 'RESOURCE_EXHAUSTED', /^bad frame: frame at byte 0 declares 48\d\d bytes, over the 4096-byte limit$/],
    // 0xff 0xff already declares at least 16383 bytes, which is over the limit before the varint is found malformed.
    ['a malformed varint prefix (11 x 0xff)', new Uint8Array(11).fill(0xff), 'RESOURCE_EXHAUSTED', /^bad frame: frame at byte 0 declares at least 16383 bytes, over the 4096-byte limit$/],
    ['an over-long varint prefix (11 x 0x80)', new Uint8Array(11).fill(0x80), 'INVALID_ARGUMENT', /^bad frame: malformed length prefix ending at byte 10: varint longer than 10 bytes$/],
  ];

  it.each(BAD)('rejects %s with one error reply, closes that connection, keeps serving others', async (_name, bytes, code, message) => {
    const healthy = await BridgeClient.connect(bridge.port);
    healthy.socket.write(obsFrame(1, 1));
    expect((await nextChunk(healthy)).obsSeq).toBe(1n);
    const errorsBefore = bridge.stats.errors;
    const bad = await BridgeClient.connect(bridge.port);
    bad.socket.write(bytes);
    await expectErrorThenClose(bad, code, message);
    expect(bridge.stats.errors - errorsBefore).toBe(1);
    await waitFor(async () => host.stats().sessions === 1 && bridge.openConnections === 1 && (await tcpConnections(bridge)) === 1, 'only the healthy connection to remain');
    // The healthy connection is served as before, its history intact.
    healthy.socket.write(obsFrame(2, 2));
    const c2 = await nextChunk(healthy);
    expect(c2.obsSeq).toBe(2n);
    expect(actions(c2).data).toEqual(echo(1, 2));
    healthy.close();
    await expectAllClosed();
  });

  it.each([
    ['a state of the wrong length', frame({ observation: { seq: 2, timestampNs: 2_000_000n, state: [1, 2, 3] } }), /^state: expected 5 values \(agent_x, agent_y, block_x, block_y, block_angle\), received 3$/],
    ['a NaN in the state', frame({ observation: { seq: 2, timestampNs: 2_000_000n, state: [1, 2, NaN, 4, 5] } }), /^state\[2\] \(block_x\) is NaN; observations must be finite$/],
  ] as [string, Uint8Array, RegExp][])('answers %s with a rejection chunk; the connection goes on with its history intact', async (_name, bytes, message) => {
    const c = await BridgeClient.connect(bridge.port);
    c.socket.write(obsFrame(1, 1));
    expect((await nextChunk(c)).obsSeq).toBe(1n);
    const errorsBefore = bridge.stats.errors;
    c.socket.write(bytes);
    const rejection = await nextChunk(c);
    expect(rejection).toMatchObject({ obsSeq: 2n, errorCode: 'INVALID_ARGUMENT', actions: null });
    expect(rejection.errorMessage).toMatch(message);
    expect(bridge.stats.errors).toBe(errorsBefore);
    // The rejected observation never entered the history: the next window is [1, 3].
    c.socket.write(obsFrame(3, 3));
    const c3 = await nextChunk(c);
    expect(c3.obsSeq).toBe(3n);
    expect(actions(c3).data).toEqual(echo(1, 3));
    c.close();
    await expectAllClosed();
  });

  it('lets go of a peer that got its error reply but never closes its side of the connection', async () => {
    const sock = net.connect({ port: bridge.port, host: '127.0.0.1', allowHalfOpen: true });
    try {
      await new Promise<void>((r) => sock.once('connect', () => r()));
      const got: Buffer[] = [];
      let ended = false;
      sock.on('data', (b: Buffer) => got.push(b));
      sock.on('end', () => (ended = true));
      sock.on('error', () => undefined);
      sock.write(encodeFrame(new Uint8Array(0)));
      await waitFor(() => ended, 'the server to end its side');
      expect(decodeReplies(Buffer.concat(got))).toEqual([{ error: { code: 'INVALID_ARGUMENT', message: 'empty BridgeRequest: set one of observation, info, reset' } }]);
      // The peer keeps its half open; the server must still release the socket.
      await waitFor(async () => (await tcpConnections(bridge)) === 0 && bridge.openConnections === 0, 'the server to close the half-open socket', 3000);
      expect(host.stats().sessions).toBe(0);
    } finally {
      sock.destroy();
    }
  });

  it('refuses the connection above maxSessions with RESOURCE_EXHAUSTED; closing one frees a slot', async () => {
    const h = new PolicyHost(new EchoEngine(1), { maxSessions: 3 });
    const b = await BridgeServer.start(h, { port: 0 });
    try {
      const open = await Promise.all([0, 1, 2].map(() => BridgeClient.connect(b.port)));
      for (const [i, c] of open.entries()) {
        c.socket.write(obsFrame(1, 100 + i));
        expect(actions(await nextChunk(c)).data).toEqual(echo(100 + i, 100 + i));
      }
      expect(h.stats().sessions).toBe(3);
      // The refused client already sent a request, which the server never reads.
      const extra = await BridgeClient.connect(b.port);
      extra.socket.write(obsFrame(1, 1));
      await expectErrorThenClose(extra, 'RESOURCE_EXHAUSTED', /^the server is at its limit of 3 sessions; retry later$/);
      expect(h.stats().rejected).toBe(1);
      expect(h.stats().sessions).toBe(3);
      await waitFor(async () => b.openConnections === 3 && (await tcpConnections(b)) === 3, 'the refused socket to close');

      open[0]!.close();
      await waitFor(() => h.stats().sessions === 2, 'the closed session to be freed');
      const again = await BridgeClient.connect(b.port);
      again.socket.write(obsFrame(1, 9));
      expect(actions(await nextChunk(again)).data).toEqual(echo(9, 9));
      expect(h.stats().sessions).toBe(3);
      // The freed slot is taken again: the next one is refused once more.
      const extra2 = await BridgeClient.connect(b.port);
      await expectErrorThenClose(extra2, 'RESOURCE_EXHAUSTED', /limit of 3 sessions/);
      expect(h.stats().rejected).toBe(2);
      // The others were never disturbed.
      open[1]!.socket.write(obsFrame(2, 111));
      expect(actions(await nextChunk(open[1]!)).data).toEqual(echo(101, 111));
      [...open, again].forEach((c) => c.close());
      await waitFor(async () => h.stats().sessions === 0 && b.openConnections === 0 && (await tcpConnections(b)) === 0, 'everything to close');
    } finally {
      await b.close();
      h.close();
    }
  });

  it('300 connect/send/disconnect cycles leave no sessions or connections behind', async () => {
    const before = host.stats();
    let answered = 0;
    let cutMidInference = 0;
    const cycle = async (i: number): Promise<void> => {
      const c = await BridgeClient.connect(bridge.port);
      const kind = i % 4;
      if (kind === 0) {
        // Ask, get the chunk, hang up.
        c.socket.write(obsFrame(1, i));
        expect(actions(await nextChunk(c)).data).toEqual(echo(i, i));
        answered++;
        c.close();
      } else if (kind === 1) {
        // Hang up while the chunk is being computed (the engine takes 2 ms).
        c.socket.write(obsFrame(1, i));
        await sleep(1);
        c.close();
        cutMidInference++;
      } else if (kind === 2) {
        // Ask and half-close at once: the server ends the session and closes its side.
        c.socket.end(obsFrame(1, i));
        for (let k = 0; k < 3; k++) {
          const r = await c.next();
          if (r === undefined) break;
          expect(Object.keys(r)).toEqual(['chunk']);
        }
        expect(await c.next()).toBeUndefined();
      } else {
        // A full conversation, then a graceful close.
        c.send({ info: {} });
        expect(Object.keys((await c.next())!)).toEqual(['info']);
        c.socket.write(obsFrame(1, i));
        c.socket.write(obsFrame(2, i + 1));
        const ch = await nextChunk(c);
        expect(ch.obsSeq === 1n || ch.obsSeq === 2n).toBe(true);
        if (ch.obsSeq === 1n) expect((await nextChunk(c)).obsSeq).toBe(2n);
        c.send({ reset: {} });
        expect(await c.next()).toEqual({ reset: { clearedObservations: 2 } });
        answered++;
        c.socket.end();
        expect(await c.next()).toBeUndefined();
      }
    };
    // Six clients at a time, 50 cycles each.
    await Promise.all(
      Array.from({ length: 6 }, async (_, w) => {
        for (let k = 0; k < 50; k++) await cycle(w * 50 + k);
      }),
    );
    expect(answered).toBe(150);
    expect(cutMidInference).toBe(75);
    await expectAllClosed();
    const after = host.stats();
    expect(after.sessionsOpened - before.sessionsOpened).toBe(300);
    expect(after.rejected - before.rejected).toBe(0);
    expect(after.engineErrors - before.engineErrors).toBe(0);
    // Every observation was counted once: one per cycle, two for the conversations.
    const observations = after.observations - before.observations;
    expect(observations).toBe(375);
    // Requests whose session closed before its chunk was delivered were dropped, not sent.
    const dropped = observations - (after.chunks - before.chunks) - (after.superseded - before.superseded);
    // (about 150: the 75 hang-ups and the 75 half-closes; the exact count depends on timing).
    expect(dropped).toBeGreaterThan(30);
    expect(dropped).toBeLessThanOrEqual(150);
  }, 20_000);

  it('survives random bytes and mutated frames for 3 s while a healthy client keeps getting chunks', async () => {
    const rng = new Rng(11);
    const int = (n: number): number => Math.floor(rng.uniform() * n);
    const valid = [
      obsFrame(1, 3),
      obsFrame(2, 4, { sessionId: 'fuzz', historyOnly: true }),
      frame({ info: {} }),
      frame({ reset: { sessionId: 'fuzz' } }),
      frame({ observation: { seq: 3, tensors: { state: { dtype: 'DTYPE_FLOAT32', shape: [5], data: new Uint8Array(Float32Array.of(1, 2, 3, 4, 5).buffer) } } } }),
    ];
    const payload = (): Uint8Array => {
      const u = rng.uniform();
      if (u < 0.35) {
        const b = new Uint8Array(int(64));
        for (let i = 0; i < b.length; i++) b[i] = int(256);
        return b;
      }
      const b = valid[int(valid.length)]!.slice();
      if (u < 0.8) {
        for (let m = 1 + int(3); m > 0; m--) b[int(b.length)] = int(256);
        return b;
      }
      // Truncated, or a valid frame followed by garbage.
      return u < 0.9 ? b.subarray(0, int(b.length)) : Uint8Array.of(...b, ...Array.from({ length: 1 + int(8) }, () => int(256)));
    };
    const TERMINAL = new Set(['INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED', 'ALREADY_EXISTS']);
    const codes = new Map<string, number>();
    const healthy = await BridgeClient.connect(bridge.port);
    let seq = 1;
    let fuzzed = 0;
    let checkedToEnd = 0;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const f = await BridgeClient.connect(bridge.port);
      for (let k = 1 + int(4); k > 0; k--) f.socket.write(payload());
      fuzzed++;
      const fuzzDone = (async (): Promise<void> => {
        if (rng.uniform() < 0.5) {
          await sleep(int(3));
          f.close();
          return;
        }
        // Half-close and read everything: replies are well-formed, a terminal error is the last one.
        f.socket.end();
        const replies: BridgeReplyProto[] = [];
        for (let r = await f.next(); r !== undefined; r = await f.next()) replies.push(r);
        for (const [i, r] of replies.entries()) {
          expect(Object.keys(r)).toHaveLength(1);
          if (r.error) {
            codes.set(r.error.code, (codes.get(r.error.code) ?? 0) + 1);
            expect(r.error.message.length).toBeGreaterThan(0);
            if (TERMINAL.has(r.error.code)) expect(i).toBe(replies.length - 1);
            else expect(r.error.code).toBe('NOT_FOUND');
          }
        }
        checkedToEnd++;
      })();
      healthy.socket.write(obsFrame(seq, seq));
      const ch = await nextChunk(healthy);
      expect(ch.obsSeq).toBe(BigInt(seq));
      expect(actions(ch).data).toEqual(echo(seq === 1 ? 1 : seq - 1, seq));
      seq++;
      await fuzzDone;
    }
    expect(fuzzed).toBeGreaterThan(100);
    expect(checkedToEnd).toBeGreaterThan(30);
    expect(codes.get('INVALID_ARGUMENT') ?? 0).toBeGreaterThan(10);
    expect(codes.get('RESOURCE_EXHAUSTED') ?? 0).toBeGreaterThan(0);
    // Still answering, and only the healthy session is left.
    await waitFor(() => host.stats().sessions === 1 && bridge.openConnections === 1, 'the fuzz sessions to close');
    healthy.send({ info: {} });
    expect((await healthy.next())!.info!.policyId).toBe('fake');
    const late = await BridgeClient.connect(bridge.port);
    late.socket.write(obsFrame(1, 5));
    expect(actions(await nextChunk(late)).data).toEqual(echo(5, 5));
    late.close();
    healthy.close();
    await expectAllClosed();
  }, 20_000);

  it('disconnects a TCP client that floods requests and never reads, once its unread replies pass maxPendingBytes', async () => {
    const h = new PolicyHost(new EchoEngine(0));
    const b = await BridgeServer.start(h, { port: 0, maxPendingBytes: 4096 });
    const slow = net.connect(b.port, '127.0.0.1');
    try {
      await new Promise<void>((r) => slow.once('connect', () => r()));
      slow.pause(); // never reads
      let slowClosed = false;
      slow.on('error', () => undefined);
      slow.on('close', () => (slowClosed = true));
      const healthy = await BridgeClient.connect(b.port);
      // The kernel's socket buffers absorb megabytes (a few seconds of chunks at 1 kHz), so the
      // flood is mostly info requests (3 bytes in, about 200 bytes out), with observations mixed
      // in to keep the engine busy.
      const info = frame({ info: {} });
      let seq = 1;
      const t0 = Date.now();
      let healthySeq = 1;
      while (b.stats.errors === 0) {
        if (Date.now() - t0 > 10_000) throw new Error(`the slow client was never disconnected (${seq} observations sent)`);
        const burst: Uint8Array[] = [];
        for (let k = 0; k < 2000; k++) burst.push(k % 50 === 0 ? obsFrame(seq++, seq % 500) : info);
        if (!slowClosed) slow.write(Buffer.concat(burst));
        healthy.socket.write(obsFrame(healthySeq, healthySeq));
        expect((await nextChunk(healthy)).obsSeq).toBe(BigInt(healthySeq));
        healthySeq++;
      }
      // The slow session is gone at once; the socket (and its unsent replies) within the close linger.
      expect(h.stats().sessions).toBe(1);
      expect(seq).toBeGreaterThan(100);
      await waitFor(async () => (await tcpConnections(b)) === 1 && b.openConnections === 1, 'the slow socket to be closed by the server', 3000);
      expect(b.stats.errors).toBe(1);
      // The healthy client is unaffected.
      healthy.socket.write(obsFrame(healthySeq, 1000));
      expect(actions(await nextChunk(healthy)).data).toEqual(echo(healthySeq - 1, 1000));
      healthy.close();
      await waitFor(() => h.stats().sessions === 0 && b.openConnections === 0, 'the healthy session to close');
      // Closing the server does not wait for the (still connected, still not reading) slow peer.
      let timer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([b.close().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 3000)))]);
      clearTimeout(timer);
      expect(closed, 'BridgeServer.close() hung on a peer that never reads').toBe(true);
    } finally {
      slow.destroy();
      await b.close();
      h.close();
    }
  }, 20_000);
});

/** A Writable that accepts its first chunk and then never completes a write until released. */
class StalledWritable extends Writable {
  readonly received: Buffer[] = [];
  private readonly callbacks: (() => void)[] = [];
  private released = false;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.received.push(chunk);
    if (this.released) cb();
    else this.callbacks.push(() => cb());
  }
  release(): void {
    this.released = true;
    for (const cb of this.callbacks.splice(0)) cb();
  }
}

/** Replies written to a PassThrough, decoded as they arrive. */
function replyCollector(out: PassThrough): { replies: BridgeReplyProto[]; next: (n: number, timeoutMs?: number) => Promise<BridgeReplyProto> } {
  const reader = new FrameReader();
  const replies: BridgeReplyProto[] = [];
  out.on('data', (b: Buffer) => {
    for (const f of reader.push(b)) replies.push(decode('scoreflow.v1.BridgeReply', f));
  });
  return {
    replies,
    async next(n, timeoutMs = 3000) {
      await waitFor(() => replies.length >= n, `reply ${n}`, timeoutMs);
      return replies[n - 1]!;
    },
  };
}

describe('bridge over a stream pair (stdio)', () => {
  it('round-trips frames over PassThrough streams; ending the input ends the session', async () => {
    const host = new PolicyHost(new EchoEngine(1), { maxMessageBytes: MAX_MESSAGE_BYTES });
    const input = new PassThrough();
    const output = new PassThrough();
    const stats = { frames: 0, errors: 0 };
    let resolved = false;
    const served = serveBridgeStream(host, input, output, {}, stats).then(() => (resolved = true));
    const out = replyCollector(output);
    expect(host.stats().sessions).toBe(1);
    // Frames cut at arbitrary points, even inside the length prefix, are reassembled.
    const all = Buffer.concat([frame({ info: {} }), obsFrame(1, 10), obsFrame(2, 20, { historyOnly: true })]);
    for (let i = 0; i < all.length; i += 7) input.write(all.subarray(i, i + 7));
    expect((await out.next(1)).info).toMatchObject({ policyId: 'fake', maxMessageBytes: MAX_MESSAGE_BYTES, predHorizon: 15 });
    const c1 = (await out.next(2)).chunk!;
    expect(c1.obsSeq).toBe(1n);
    expect(actions(c1)).toEqual({ shape: [15, 2], data: echo(10, 10) });
    input.write(obsFrame(3, 30));
    const c3 = (await out.next(3)).chunk!;
    expect(c3.obsSeq).toBe(3n);
    expect(actions(c3).data).toEqual(echo(20, 30));
    input.write(frame({ reset: {} }));
    expect(await out.next(4)).toEqual({ reset: { clearedObservations: 2 } });
    expect(stats).toEqual({ frames: 5, errors: 0 });
    expect(resolved).toBe(false);

    input.end();
    await served;
    expect(host.stats().sessions).toBe(0);
    expect(out.replies).toHaveLength(4);
    host.close();
  });

  it('a bad frame on a stream gets one error reply and ends the stream', async () => {
    const host = new PolicyHost(new EchoEngine(1), { maxMessageBytes: MAX_MESSAGE_BYTES });
    const input = new PassThrough();
    const output = new PassThrough();
    const served = serveBridgeStream(host, input, output);
    const out = replyCollector(output);
    // A good request and a bad frame in the same write: the request is still answered.
    input.write(new Uint8Array([...frame({ info: {} }), 0x88, 0x27]));
    await served;
    await waitFor(() => out.replies.length === 2, 'two replies');
    expect(Object.keys(out.replies[0]!)).toEqual(['info']);
    expect(out.replies[1]).toEqual({ error: { code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/^bad frame: frame at byte 3 declares 5000 bytes, over the 4096-byte limit$/) } });
    expect(output.writableEnded).toBe(true);
    expect(host.stats().sessions).toBe(0);
    host.close();
  });

  it('ends a stream whose output never drains once pending replies pass maxPendingBytes; other sessions are unaffected', async () => {
    const host = new PolicyHost(new EchoEngine(0));
    const maxPendingBytes = 4096;
    const input = new PassThrough();
    const output = new StalledWritable();
    let done = false;
    const served = serveBridgeStream(host, input, output, { maxPendingBytes }).then(() => (done = true));
    // A healthy session on the same host.
    const hIn = new PassThrough();
    const hOut = new PassThrough();
    const hServed = serveBridgeStream(host, hIn, hOut);
    const healthy = replyCollector(hOut);

    let seq = 1;
    const t0 = Date.now();
    while (!done) {
      if (Date.now() - t0 > 5000) throw new Error(`still serving after ${seq - 1} observations`);
      input.write(obsFrame(seq, seq % 500));
      hIn.write(obsFrame(seq, seq % 500));
      seq++;
      await sleep(1);
    }
    const pendingAtFailure = output.writableLength;
    expect(host.stats().sessions).toBe(1);
    // Later input is ignored: nothing more is written.
    input.write(obsFrame(seq + 1, 1));
    await sleep(20);
    expect(output.writableLength).toBe(pendingAtFailure);

    // Everything that was written: chunks (obs_seq increasing), then exactly one error.
    output.release();
    await waitFor(() => output.writableFinished, 'the output to be ended');
    const bytes = Buffer.concat(output.received);
    const replies = decodeReplies(bytes);
    const error = replies.at(-1)!;
    expect(Object.keys(error)).toEqual(['error']);
    expect(error.error!.code).toBe('RESOURCE_EXHAUSTED');
    const m = /^the client is not reading its replies \((\d+) bytes pending\)$/.exec(error.error!.message);
    expect(m, error.error!.message).not.toBeNull();
    const chunks = replies.slice(0, -1);
    expect(chunks.length).toBeGreaterThan(5);
    expect(chunks.every((r) => Object.keys(r).join() === 'chunk')).toBe(true);
    const seqs = chunks.map((r) => r.chunk!.obsSeq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]! > seqs[i - 1]!).toBe(true);
    // The limit is crossed by the last chunk: all chunk bytes exceed it, all but the last don't.
    const chunkFrameBytes = chunks.map((r) => encodeFrame(encode('scoreflow.v1.BridgeReply', r)).length);
    const total = chunkFrameBytes.reduce((a, b2) => a + b2, 0);
    expect(Number(m![1])).toBe(total);
    expect(total).toBeGreaterThan(maxPendingBytes);
    expect(total - chunkFrameBytes.at(-1)!).toBeLessThanOrEqual(maxPendingBytes);
    expect(bytes.length - total).toBe(encodeFrame(encode('scoreflow.v1.BridgeReply', error)).length);

    // The healthy session got its chunks throughout and keeps getting them.
    expect(healthy.replies.length).toBeGreaterThan(5);
    const n = healthy.replies.length;
    hIn.write(obsFrame(seq + 10, 123));
    const last = (await healthy.next(n + 1)).chunk!;
    expect(last.obsSeq).toBe(BigInt(seq + 10));
    expect(actions(last).data).toEqual(echo((seq - 1) % 500, 123));
    hIn.end();
    await hServed;
    expect(host.stats().sessions).toBe(0);
    host.close();
  });

  it('the real CLI serves the shipped pusht policy over stdin/stdout and exits 0 when stdin closes', async () => {
    // Started (and sent its info request) in beforeAll, so that the policy loads while the other tests run.
    const c = cli!;
    const info = (await c.nextReply(1, 15_000)).info!;
    expect(info, show(c.replies[0])).toBeDefined();
    expect(info.env).toBe('pusht');
    expect(info.predHorizon).toBe(15);
    expect(info.action!.shape).toEqual([15, 2]);
    const obsDim = info.observation!.shape[0]!;
    const lo = info.observation!.low;
    const hi = info.observation!.high;
    expect(lo).toHaveLength(obsDim);
    // A state in the middle of the training range.
    c.child.stdin.write(frame({ observation: { seq: 1, timestampNs: 5n, state: lo.map((l, i) => (l + hi[i]!) / 2) } }));
    const chunk = (await c.nextReply(2, 10_000)).chunk!;
    expect(chunk, show(c.replies[1])).toBeDefined();
    expect(chunk.obsSeq).toBe(1n);
    expect(chunk.startTimestampNs).toBe(5n);
    const a = actions(chunk);
    expect(a.shape).toEqual([15, 2]);
    const [aLo, aHi] = [info.action!.low, info.action!.high];
    expect(aLo).toHaveLength(2);
    expect(aHi).toHaveLength(2);
    for (let r = 0; r < 15; r++) {
      for (let d = 0; d < 2; d++) {
        const v = a.data[2 * r + d]!;
        const margin = 0.1 * (aHi[d]! - aLo[d]!);
        expect(Number.isFinite(v), `row ${r} dim ${d}`).toBe(true);
        expect(v, `row ${r} dim ${d}`).toBeGreaterThanOrEqual(aLo[d]! - margin);
        expect(v, `row ${r} dim ${d}`).toBeLessThanOrEqual(aHi[d]! + margin);
      }
    }
    c.child.stdin.end();
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([c.exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 15_000)))]);
    clearTimeout(timer);
    expect(result, `the CLI did not exit within 15 s of stdin closing; stderr: ${c.stderr()}`).toBeDefined();
    expect(result, c.stderr()).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(15_000);
    // Nothing but the two framed replies on stdout.
    expect(c.replies).toHaveLength(2);
    expect(c.reader.atBoundary).toBe(true);
  }, 40_000);
});
