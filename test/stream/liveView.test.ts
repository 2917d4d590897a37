import foxglove from '@foxglove/ws-protocol';
import type { Channel, MessageData, StatusMessage } from '@foxglove/ws-protocol';
import protobuf from 'protobufjs';
import descriptorExt from 'protobufjs/ext/descriptor.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import type { ActionChunkProtoInit, ControlLoopMetricsProtoInit } from '../../src/proto/messages.js';
import { encode, ProtoError, protoRegistry } from '../../src/proto/registry.js';
import { FOXGLOVE_SUBPROTOCOL, LiveView, LiveViewError } from '../../src/stream/liveView.js';

// CommonJS package: Node's ESM loader only offers its module.exports as the default export.
const { FoxgloveClient } = foxglove;

/** Resolve once `pred()` holds (polled), or fail after `timeoutMs`. */
async function until(pred: () => boolean, what: string, timeoutMs = 4000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

interface TestClient {
  ws: WebSocket;
  fg: InstanceType<typeof FoxgloveClient>;
  channels: Channel[];
  messages: MessageData[];
  statuses: StatusMessage[];
  closed: Promise<{ code: number; reason: string }>;
}

const views: LiveView[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await Promise.all(views.splice(0).map((v) => v.close()));
});

async function startView(opts: Parameters<typeof LiveView.start>[0] = {}): Promise<{ view: LiveView; errors: Error[] }> {
  const errors: Error[] = [];
  const view = await LiveView.start({ port: 0, onError: (e) => errors.push(e), ...opts });
  views.push(view);
  return { view, errors };
}

/** A Foxglove client (what Foxglove Studio runs) over a `ws` socket; resolves after serverInfo. */
async function connect(url: string): Promise<TestClient> {
  const ws = new WebSocket(url, [FOXGLOVE_SUBPROTOCOL]);
  sockets.push(ws);
  const fg = new FoxgloveClient({ ws });
  const c: TestClient = {
    ws,
    fg,
    channels: [],
    messages: [],
    statuses: [],
    closed: new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
  };
  fg.on('advertise', (chs) => c.channels.push(...chs));
  fg.on('message', (m) => c.messages.push(m));
  fg.on('status', (s) => c.statuses.push(s));
  await new Promise<void>((resolve, reject) => {
    fg.on('serverInfo', () => resolve());
    ws.once('error', reject);
  });
  return c;
}

/**
 * Round trip: a subscription to a channel that doesn't exist is answered with a status message,
 * and the server handles a client's requests and writes to its socket in order, so once that
 * status arrives every earlier request was handled and every earlier message was received.
 */
async function sync(c: TestClient): Promise<void> {
  const count = () => c.statuses.filter((s) => s.message.includes('not available')).length;
  const before = count();
  c.fg.subscribe(987_654);
  await until(() => count() > before, 'the sync status');
}

async function subscribe(c: TestClient, topic: string): Promise<number> {
  const ch = c.channels.find((x) => x.topic === topic);
  if (!ch) throw new Error(`no channel ${topic}`);
  const id = c.fg.subscribe(ch.id);
  await sync(c);
  return id;
}

/** Decoder built only from what the channel advertisement carries, as Foxglove Studio does. */
function foreignType(ch: Channel): protobuf.Type {
  return protobuf.Root.fromDescriptor(Buffer.from(ch.schema, 'base64')).lookupType(ch.schemaName);
}

function decodeWith(T: protobuf.Type, m: MessageData): Record<string, unknown> {
  const bytes = new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  return T.toObject(T.decode(bytes), { longs: String, enums: String, defaults: true }) as Record<string, unknown>;
}

const chunk: Required<ActionChunkProtoInit> = {
  startTimestampNs: 2n ** 63n + 12_345n,
  dt: 0.1,
  actions: { dtype: 'DTYPE_FLOAT32', shape: [2, 3], data: new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6.5]).buffer), name: 'actions' },
  obsSeq: 41n,
  policyId: 'pusht-dp@3f2a',
  inferenceLatencyMs: 12.5,
  sessionId: 'robot-7',
  errorCode: '',
  errorMessage: '',
};

function expectChunk(obj: Record<string, unknown>, c: Required<ActionChunkProtoInit>): void {
  const actions = obj['actions'] as { dtype: string; shape: number[]; data: Uint8Array; name: string };
  expect({ ...obj, actions: undefined }).toEqual({
    startTimestampNs: String(c.startTimestampNs),
    dt: c.dt,
    actions: undefined,
    obsSeq: String(c.obsSeq),
    policyId: c.policyId,
    inferenceLatencyMs: c.inferenceLatencyMs,
    sessionId: c.sessionId,
    errorCode: c.errorCode,
    errorMessage: c.errorMessage,
  });
  expect(actions.dtype).toBe(c.actions.dtype);
  expect(actions.shape).toEqual([...(c.actions.shape as number[])]);
  expect(actions.name).toBe(c.actions.name);
  expect(Array.from(actions.data)).toEqual(Array.from(c.actions.data!));
}

const metrics: Required<ControlLoopMetricsProtoInit> = {
  timestampNs: 2n ** 64n - 2n,
  windowS: 1.5,
  targetRateHz: 10,
  achievedRateHz: 9.75,
  jitterP50Ms: 0.25,
  jitterP99Ms: 3.5,
  jitterMaxMs: 7.125,
  deadlineMisses: 3n,
  safeStops: 1n,
  inferenceP50Ms: 41.5,
  inferenceP99Ms: 80.25,
  overlapErrorMax: 0.0625,
  chunksRequested: 120n,
  chunksReceived: 118n,
  observationsDropped: 2n ** 53n + 1n,
};

describe('LiveView (Foxglove WebSocket)', () => {
  it('advertises protobuf channels Foxglove can decode and sends only subscribed topics', async () => {
    const { view, errors } = await startView();
    expect(view.port).toBeGreaterThan(0);
    expect(view.url).toBe(`ws://127.0.0.1:${view.port}`);

    const chunks = view.advertise('/policy/chunk', 'scoreflow.v1.ActionChunk');
    expect(chunks.typeName).toBe('scoreflow.v1.ActionChunk');
    const client = await connect(view.url);
    await until(() => view.clientCount === 1, 'the client');
    // Advertised after the client connected: announced to it too.
    view.advertise('/loop/metrics', 'scoreflow.v1.ControlLoopMetrics');
    await until(() => client.channels.length === 2, 'two advertisements');

    const chunkCh = client.channels.find((c) => c.topic === '/policy/chunk')!;
    const metricsCh = client.channels.find((c) => c.topic === '/loop/metrics')!;
    for (const [ch, name] of [[chunkCh, 'scoreflow.v1.ActionChunk'], [metricsCh, 'scoreflow.v1.ControlLoopMetrics']] as const) {
      expect(ch).toMatchObject({ encoding: 'protobuf', schemaName: name, schemaEncoding: 'protobuf' });
      const fds = descriptorExt.FileDescriptorSet.decode(Buffer.from(ch.schema, 'base64')) as unknown as { file: { name: string }[] };
      expect(fds.file.map((f) => f.name)).toEqual(['tensor.proto', 'robot.proto']);
    }
    expect(chunkCh.id).toBe(chunks.channelId);

    // Idempotent advertise: same handle, no second advertisement; another type is an error.
    expect(view.advertise('/policy/chunk', 'scoreflow.v1.ActionChunk')).toBe(chunks);
    expect(() => view.advertise('/policy/chunk', 'scoreflow.v1.Observation')).toThrow(/already advertised with type scoreflow\.v1\.ActionChunk/);
    expect(() => view.advertise('/x', 'scoreflow.v1.NoSuchType' as 'scoreflow.v1.Observation')).toThrow(ProtoError);

    await subscribe(client, '/policy/chunk');
    expect(chunks.hasSubscribers()).toBe(true);
    expect(view.hasSubscribers('/loop/metrics')).toBe(false);

    view.publish('/loop/metrics', metrics, 1n); // nobody subscribed: not sent
    chunks.publish(chunk, 1_000n);
    // Already-encoded bytes are sent as they are, and copied: reusing the buffer is safe.
    const second = { ...chunk, obsSeq: 42n, policyId: 'second' };
    const bytes = encode('scoreflow.v1.ActionChunk', second);
    view.publish('/policy/chunk', bytes, 2_000n);
    bytes.fill(0);
    const before = Date.now() * 1e6;
    chunks.publish({ ...chunk, obsSeq: 43n }); // default log time: wall clock now
    await sync(client);
    expect(client.messages).toHaveLength(3);

    const ChunkT = foreignType(chunkCh);
    expect(client.messages.map((m) => m.timestamp).slice(0, 2)).toEqual([1_000n, 2_000n]);
    expect(Math.abs(Number(client.messages[2]!.timestamp) - before)).toBeLessThan(5e9);
    expectChunk(decodeWith(ChunkT, client.messages[0]!), chunk);
    expectChunk(decodeWith(ChunkT, client.messages[1]!), second);
    expect(decodeWith(ChunkT, client.messages[2]!)['obsSeq']).toBe('43');

    // Subscribe to the metrics topic: every field arrives intact (uint64 beyond 2^53 included).
    const metricsSub = await subscribe(client, '/loop/metrics');
    view.publish('/loop/metrics', metrics, 5_000n);
    await sync(client);
    expect(client.messages).toHaveLength(4);
    const last = client.messages[3]!;
    expect(last.subscriptionId).toBe(metricsSub);
    expect(last.timestamp).toBe(5_000n);
    expect(decodeWith(foreignType(metricsCh), last)).toEqual(
      Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k, typeof v === 'bigint' ? String(v) : v])),
    );

    // Unsubscribed topics stop flowing.
    client.fg.unsubscribe(metricsSub);
    await sync(client);
    expect(view.hasSubscribers('/loop/metrics')).toBe(false);
    view.publish('/loop/metrics', metrics);
    await sync(client);
    expect(client.messages).toHaveLength(4);

    expect(view.stats()).toEqual({ published: 6, sent: 4, dropped: 0, clientErrors: 0 });
    expect(errors).toEqual([]);

    // Caller mistakes are clear errors.
    expect(() => view.publish('/nope', chunk)).toThrow(/topic '\/nope' is not advertised.*advertised: \/policy\/chunk, \/loop\/metrics/);
    expect(() => view.hasSubscribers('/nope')).toThrow(LiveViewError);
    expect(() => chunks.publish(chunk, -1n)).toThrow(/outside \[0, 2\^64 - 1\]/);
    expect(() => chunks.publish(chunk, 5 as unknown as bigint)).toThrow(/must be a bigint/);
    expect(() => chunks.publish({ policy_id: 'x' } as unknown as ActionChunkProtoInit)).toThrow(/did you mean 'policyId'/);
    expect(view.stats().published).toBe(6);
  });

  it('is a cheap no-op without subscribers, but checks the first message of each topic', async () => {
    const { view } = await startView();
    const spy = vi.spyOn(protoRegistry(), 'encode');
    try {
      const topic = view.advertise('/metrics', 'scoreflow.v1.ControlLoopMetrics');
      for (let i = 0; i < 1000; i++) topic.publish({ ...metrics, chunksReceived: i });
      expect(spy).toHaveBeenCalledTimes(1); // only the first message, to validate it
      expect(view.stats()).toEqual({ published: 1000, sent: 0, dropped: 0, clientErrors: 0 });
      const fresh = view.advertise('/metrics2', 'scoreflow.v1.ControlLoopMetrics');
      expect(() => fresh.publish({ windowS: 1n } as unknown as ControlLoopMetricsProtoInit)).toThrow(ProtoError);

      // With a subscriber every message is encoded (once, whatever the number of clients).
      const a = await connect(view.url);
      const b = await connect(view.url);
      expect(view.clientCount).toBe(2);
      await subscribe(a, '/metrics');
      await subscribe(b, '/metrics');
      topic.publish(metrics, 7n);
      await sync(a);
      await sync(b);
      expect(spy).toHaveBeenCalledTimes(3); // + the failed check above + this one
      expect(a.messages.map((m) => m.timestamp)).toEqual([7n]);
      expect(b.messages.map((m) => m.timestamp)).toEqual([7n]);
      expect(view.stats()).toMatchObject({ published: 1001, sent: 2, dropped: 0 });

      a.ws.close();
      b.ws.close();
      await until(() => view.clientCount === 0 && !topic.hasSubscribers(), 'the clients to leave');
    } finally {
      spy.mockRestore();
    }
  });

  it('survives clients sending garbage and keeps serving healthy clients', async () => {
    const { view, errors } = await startView();
    const topic = view.advertise('/chunk', 'scoreflow.v1.ActionChunk');
    const healthy = await connect(view.url);
    await subscribe(healthy, '/chunk');

    const raw = new WebSocket(view.url, [FOXGLOVE_SUBPROTOCOL]);
    sockets.push(raw);
    raw.on('error', () => undefined);
    const rawClosed = new Promise<number>((resolve) => raw.on('close', (code) => resolve(code)));
    await new Promise((resolve) => raw.once('open', resolve));
    expect(raw.protocol).toBe(FOXGLOVE_SUBPROTOCOL);
    await until(() => view.clientCount === 2, 'the raw client');
    for (const junk of ['not json', 'null', '{"op":"subscribe","subscriptions":null}', '{"op":"frobnicate"}', '{"op":"subscribeConnectionGraph"}']) {
      raw.send(junk);
    }
    raw.send(Buffer.from([0xff, 1, 2, 3])); // unknown binary opcode
    raw.send(Buffer.alloc(0)); // empty binary message
    raw.send(Buffer.from([1, 0, 0])); // truncated client-publish frame
    raw.send('{"op":"advertise","channels":[{"id":1,"topic":"/x","encoding":"json","schemaName":"X"}]}'); // no clientPublish capability: ignored
    topic.publish(chunk, 1n);
    await sync(healthy);
    expect(healthy.messages).toHaveLength(1);
    expect(errors.length).toBeGreaterThanOrEqual(6);
    expect(errors.every((e) => /client protocol error/.test(e.message))).toBe(true);

    // Frame-level garbage: invalid UTF-8 in a text frame makes ws close that client (1007).
    raw.send(Buffer.from([0xc3, 0x28]), { binary: false });
    expect(await rawClosed).toBe(1007);
    // An oversized request (clients only send small JSON) closes that client with 1009.
    const big = new WebSocket(view.url, [FOXGLOVE_SUBPROTOCOL]);
    sockets.push(big);
    big.on('error', () => undefined);
    await new Promise((resolve) => big.once('open', resolve));
    const bigClosed = new Promise<number>((resolve) => big.on('close', (code) => resolve(code)));
    big.send(new Uint8Array(2 * 1024 * 1024));
    expect(await bigClosed).toBe(1009);
    // A client without the Foxglove subprotocol is told so and closed.
    const plain = new WebSocket(view.url);
    sockets.push(plain);
    plain.on('error', () => undefined);
    const plainClosed = await new Promise<{ code: number; reason: string }>((resolve) =>
      plain.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    expect(plainClosed).toEqual({ code: 1002, reason: `expected WebSocket subprotocol ${FOXGLOVE_SUBPROTOCOL}` });
    // Plain HTTP gets a hint.
    const res = await fetch(`http://127.0.0.1:${view.port}/`);
    expect(res.status).toBe(426);
    expect(await res.text()).toMatch(/Foxglove/);

    await until(() => view.clientCount === 1, 'the bad clients to be gone');
    topic.publish({ ...chunk, obsSeq: 2n }, 2n);
    await sync(healthy);
    expect(healthy.messages.map((m) => m.timestamp)).toEqual([1n, 2n]);
    expect(decodeWith(foreignType(healthy.channels[0]!), healthy.messages[1]!)['obsSeq']).toBe('2');
    expect(view.stats().clientErrors).toBe(errors.length);
    expect(errors.some((e) => /invalid UTF-8/i.test(e.message))).toBe(true);
    expect(errors.some((e) => /max(imum)? payload|too big/i.test(e.message))).toBe(true);
  });

  it('drops messages for a stalled client only, keeping its stream well-formed', async () => {
    const LIMIT = 1024 * 1024;
    const { view } = await startView({ maxQueuedBytesPerClient: LIMIT });
    const topic = view.advertise('/chunk', 'scoreflow.v1.ActionChunk');
    const fast = await connect(view.url);
    const slow = await connect(view.url);
    await subscribe(fast, '/chunk');
    await subscribe(slow, '/chunk');
    slow.ws.pause(); // stops reading: its socket buffers fill up

    const N = 40;
    const SIZE = 512 * 1024;
    const message = (i: number): ActionChunkProtoInit => ({
      obsSeq: i,
      actions: { dtype: 'DTYPE_UINT8', shape: [SIZE], data: new Uint8Array(SIZE).fill(i) },
    });
    for (let i = 0; i < N; i++) {
      topic.publish(message(i), BigInt(i));
      await until(() => fast.messages.length === i + 1, `message ${i} at the fast client`);
    }
    const { sent, dropped } = view.stats();
    expect(sent + dropped).toBe(2 * N);
    expect(dropped).toBeGreaterThan(0); // all for the slow client
    const ChunkT = foreignType(fast.channels[0]!);
    const check = (m: MessageData): number => {
      const obj = decodeWith(ChunkT, m) as { obsSeq: string; actions: { data: Uint8Array } };
      const seq = Number(obj.obsSeq);
      expect(m.timestamp).toBe(BigInt(seq));
      expect(obj.actions.data.length).toBe(SIZE);
      expect(obj.actions.data.every((b) => b === seq)).toBe(true);
      return seq;
    };
    expect(fast.messages.map(check)).toEqual(Array.from({ length: N }, (_, i) => i));

    slow.ws.resume();
    const slowExpected = sent - N;
    await until(() => slow.messages.length === slowExpected, 'the slow client to drain');
    const seqs = slow.messages.map(check);
    expect(seqs.length).toBeLessThan(N);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    // Once drained it gets new messages again.
    topic.publish(message(N), BigInt(N));
    await sync(slow);
    expect(slow.messages.at(-1)!.timestamp).toBe(BigInt(N));
  });

  it('closes with clients connected, is idempotent and releases the port', async () => {
    const { view } = await startView({ closeGraceMs: 300 });
    const topic = view.advertise('/chunk', 'scoreflow.v1.ActionChunk');
    const a = await connect(view.url);
    const b = await connect(view.url);
    await subscribe(a, '/chunk');
    // Binding the same port while it is in use fails clearly.
    await expect(LiveView.start({ port: view.port })).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    // b never answers the close handshake: it is cut after closeGraceMs.
    b.ws.pause();

    const t0 = Date.now();
    const closing = view.close();
    expect(view.close()).toBe(closing);
    await closing;
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(250); // waited for b ...
    expect(took).toBeLessThan(3000); // ... but not for ever
    expect(await a.closed).toEqual({ code: 1001, reason: 'scoreflow live view closed' });
    b.ws.resume();
    expect([1001, 1006]).toContain((await b.closed).code);
    expect(view.clientCount).toBe(0);
    await view.close();

    const before = view.stats();
    topic.publish(chunk); // no-op after close
    expect(view.stats()).toEqual(before);
    expect(() => view.advertise('/new', 'scoreflow.v1.Observation')).toThrow(/closed/);

    const again = await LiveView.start({ port: view.port });
    views.push(again);
    expect(again.url).toBe(view.url);
    again.advertise('/chunk', 'scoreflow.v1.ActionChunk');
    const c = await connect(again.url);
    expect(c.channels.map((ch) => ch.topic)).toEqual(['/chunk']);
  });
});
