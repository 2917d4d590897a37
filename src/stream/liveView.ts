/**
 * Live view: publish protobuf messages over the Foxglove WebSocket protocol
 * (https://github.com/foxglove/ws-protocol, subprotocol `foxglove.websocket.v1`), so a running robot
 * or simulation can be watched in Foxglove Studio ("Open connection" -> "Foxglove WebSocket" ->
 * `view.url`) without any glue code. Domain-agnostic: any message type of the proto registry.
 *
 * ```ts
 * const view = await LiveView.start({ port: 8765 });
 * const chunks = view.advertise('/policy/chunk', 'scoreflow.v1.ActionChunk');
 * chunks.publish({ startTimestampNs: t, dt: 0.1, ... });        // typed handle, or:
 * view.publish('/policy/chunk', encodedBytes, logTimeNs);        // by topic, object or bytes
 * await view.close();
 * ```
 *
 * API
 * - `LiveView.start(opts)`: listen on `host:port` (default 127.0.0.1:8765; port 0 = ephemeral; the
 *   bound port is `view.port`, the address `view.url`). Rejects with a LiveViewError when the port
 *   can't be bound.
 * - `advertise(topic, typeName)`: make a channel (encoding 'protobuf', schemaName = type name,
 *   schemaEncoding 'protobuf', schema = base64 FileDescriptorSet of the type's dependency closure).
 *   Idempotent per topic; the same topic with another type is a LiveViewError. Clients connected
 *   now or later see it. Returns a `LiveTopic` handle whose `publish` is typed by the message type
 *   (an addition to the by-topic `publish`, which can't be typed from a string).
 * - `publish(topic, message, timestampNs?)`: `message` is an init object of the topic's type
 *   (encoded with the registry, so it is checked field by field) or already-encoded bytes.
 *   `timestampNs` is the Foxglove log time (bigint ns in [0, 2^64)); default: wall-clock now
 *   (monotonic within the process). Sent only to clients subscribed to the topic.
 *   Throws only for caller mistakes (unknown topic, bad timestamp, invalid message), never because
 *   of a client. Publishing after close() is a no-op.
 * - `hasSubscribers(topic)`: whether any client subscribes to the topic (lets a producer skip
 *   building expensive messages nobody watches).
 * - `clientCount`, `stats()` ({ published, sent, dropped, clientErrors }), `close()` (idempotent).
 *
 * Design notes
 * - Cheap when nobody watches: a publish on a topic without subscribers is counted and returns
 *   without encoding or copying. To still report a malformed message early (not only once a viewer
 *   connects), the first init object published on each topic is always encoded; later ones are
 *   encoded only while the topic has a subscriber. A message is encoded once for all subscribers.
 * - Backpressure, per client: a message for a client whose socket already has queued data and
 *   would exceed `maxQueuedBytesPerClient` (default 8 MiB) with it is dropped for that client only
 *   (counted in `stats().dropped`); a client with nothing queued always gets the message, so a
 *   single message larger than the limit still reaches idle clients. Dropping is whole messages:
 *   the stream a slow client sees stays well-formed, just with gaps. Other clients are unaffected.
 *   This is implemented by handing FoxgloveServer a thin per-client IWebSocket adapter (the
 *   server writes each message as a header fragment + payload fragment; the adapter drops or sends
 *   both), since FoxgloveServer itself has no notion of backpressure.
 * - Bytes passed to publish are copied before queueing (ws keeps references to queued buffers),
 *   so the caller may reuse its buffer right away.
 * - Robustness: FoxgloveServer 'error' events (a client sending unparsable or unsupported
 *   messages) and ws socket errors (invalid frames, invalid UTF-8, oversize messages: incoming
 *   messages are capped at 1 MiB, clients only send small JSON requests) are counted in
 *   `stats().clientErrors` and passed to `opts.onError` (default: console.warn, at most one line per
 *   5 s); they never throw. The offending client is closed (by ws) for frame-level errors and kept
 *   for protocol-level ones. A client that doesn't offer the
 *   `foxglove.websocket.v1` subprotocol is closed with code 1002 and a reason saying so.
 *   Plain HTTP requests get a 426 with a hint. No capabilities are declared (no client publish,
 *   parameters, services or time): this is a one-way view.
 * - close(): sends close frames (1001) to every client, stops accepting connections, and
 *   terminates clients that have not completed the close handshake after `closeGraceMs`
 *   (default 1000 ms); resolves when the port is released.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import foxglove from '@foxglove/ws-protocol';
import type { ChannelId, IWebSocket } from '@foxglove/ws-protocol';
import { WebSocket, WebSocketServer } from 'ws';
import type { ProtoMessages, ProtoTypeName } from '../proto/messages.js';
import { protoRegistry, type ProtoRegistry } from '../proto/registry.js';
import { ValidationError } from '../util/validate.js';

// @foxglove/ws-protocol is CommonJS whose named exports Node's ESM loader can't detect: take them
// from the default (module.exports) import.
const { FoxgloveServer } = foxglove;
type FoxgloveServerT = InstanceType<typeof FoxgloveServer>;

/** A misuse of the live view (unknown topic, conflicting advertisement, bad option, ...). */
export class LiveViewError extends ValidationError {
  constructor(message: string) {
    super(message);
    this.name = 'LiveViewError';
  }
}

export interface LiveViewOptions {
  /** TCP port; 0 picks a free one (see `LiveView.port`). Default 8765 (Foxglove's default). */
  port?: number;
  /** Interface to bind. Default '127.0.0.1' (local only); '0.0.0.0' or '::' to allow remote viewers. */
  host?: string;
  /** Server name shown by Foxglove Studio. Default 'scoreflow'. */
  name?: string;
  /**
   * Bytes a client may have queued (sent by us, not yet taken by its socket) before further
   * messages to it are dropped. Default 8 MiB.
   */
  maxQueuedBytesPerClient?: number;
  /** Registry the message types come from. Default: the repository's proto/ registry. */
  registry?: ProtoRegistry;
  /** Called for every client error (bad message, broken socket). Default: throttled console.warn. */
  onError?: (error: Error) => void;
  /** How long close() waits for clients to finish the close handshake before cutting them. Default 1000 ms. */
  closeGraceMs?: number;
}

export interface LiveViewStats {
  /** Accepted publish calls before close() (on any topic, with or without subscribers). */
  published: number;
  /** Messages handed to a client's socket (one per subscribed client per publish). */
  sent: number;
  /** Messages not sent to a subscribed client because its queue was full or its socket closing. */
  dropped: number;
  /** Errors caused by clients (unparsable requests, invalid frames, socket errors). */
  clientErrors: number;
}

/** A topic advertised on a LiveView; `publish` is typed by the topic's message type. */
export interface LiveTopic<Init extends object = object> {
  readonly topic: string;
  readonly typeName: string;
  readonly channelId: number;
  publish(message: Init | Uint8Array, timestampNs?: bigint): void;
  hasSubscribers(): boolean;
}

/** The Foxglove WebSocket subprotocol ('foxglove.websocket.v1'). */
export const FOXGLOVE_SUBPROTOCOL: string = FoxgloveServer.SUPPORTED_SUBPROTOCOL;

const DEFAULT_PORT = 8765;
const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_MAX_QUEUED = 8 * 1024 * 1024;
const DEFAULT_CLOSE_GRACE_MS = 1000;
/** Clients only send small JSON requests (subscribe/unsubscribe). */
const MAX_INCOMING_BYTES = 1024 * 1024;
const UINT64_MAX = 2n ** 64n - 1n;
const LOG_INTERVAL_MS = 5000;

interface TopicEntry {
  readonly topic: string;
  readonly typeName: string;
  readonly channelId: ChannelId;
  /** An init object was encoded on this topic at least once (so its shape was checked). */
  checked: boolean;
  handle: LiveTopic;
}

/** What a client adapter needs from its LiveView while a message is being sent. */
interface SendContext {
  /** Size of the payload of the message being sent. */
  payloadBytes: number;
  maxQueued: number;
  stats: LiveViewStats;
  reportError(error: Error): void;
}

/**
 * The IWebSocket FoxgloveServer talks to for one client: forwards to the ws connection and applies
 * backpressure to message data. FoxgloveServer sends message data as two fragments (`send(header,
 * {fin: false})` then `send(payload, {fin: true})`, because this `send` declares two parameters)
 * and everything else (JSON control messages) in single unfragmented sends.
 */
class ClientSocket implements IWebSocket {
  #dropPayload = false;

  constructor(
    readonly ws: WebSocket,
    readonly name: string,
    private readonly ctx: SendContext,
  ) {}

  get binaryType(): string {
    return this.ws.binaryType;
  }
  set binaryType(v: string) {
    this.ws.binaryType = v as WebSocket['binaryType'];
  }
  get protocol(): string {
    return this.ws.protocol;
  }
  get onerror(): IWebSocket['onerror'] {
    return this.ws.onerror;
  }
  set onerror(fn: IWebSocket['onerror']) {
    this.ws.onerror = fn ?? null;
  }
  get onopen(): IWebSocket['onopen'] {
    return this.ws.onopen;
  }
  set onopen(fn: IWebSocket['onopen']) {
    this.ws.onopen = fn ?? null;
  }
  get onclose(): IWebSocket['onclose'] {
    return this.ws.onclose;
  }
  set onclose(fn: IWebSocket['onclose']) {
    this.ws.onclose = fn ?? null;
  }
  get onmessage(): IWebSocket['onmessage'] {
    return this.ws.onmessage;
  }
  set onmessage(fn: IWebSocket['onmessage']) {
    this.ws.onmessage = fn ?? null;
  }

  close(): void {
    this.ws.close();
  }

  send(data: string | ArrayBuffer | ArrayBufferView, options?: { fin?: boolean }): void {
    const fin = options?.fin;
    if (fin === false) {
      // Header fragment of a message: decide for the whole message.
      const queued = this.ws.bufferedAmount;
      const full = queued > 0 && queued + this.ctx.payloadBytes > this.ctx.maxQueued;
      if (this.ws.readyState !== WebSocket.OPEN || full) {
        this.#dropPayload = true;
        this.ctx.stats.dropped++;
        return;
      }
      this.#dropPayload = false;
      this.ctx.stats.sent++;
    } else if (fin === true && this.#dropPayload) {
      this.#dropPayload = false;
      return;
    } else if (this.ws.readyState !== WebSocket.OPEN) {
      return;
    }
    try {
      if (options) this.ws.send(data, options);
      else this.ws.send(data);
    } catch (e) {
      this.ctx.reportError(new Error(`client ${this.name}: send failed: ${(e as Error).message}`));
    }
  }
}

function throttledWarn(): (error: Error) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (error) => {
    const now = Date.now();
    if (now - last < LOG_INTERVAL_MS) {
      suppressed++;
      return;
    }
    const note = suppressed > 0 ? ` (${suppressed} more client errors in the last ${Math.round((now - last) / 1000)} s)` : '';
    console.warn(`[scoreflow live view] ${error.message}${note}`);
    last = now;
    suppressed = 0;
  };
}

/** Wall-clock nanoseconds, monotonic within the process (hrtime anchored to Date.now() once). */
const CLOCK_BASE_NS = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
function nowNs(): bigint {
  return CLOCK_BASE_NS + process.hrtime.bigint();
}

function checkTimestamp(t: unknown): bigint {
  if (typeof t !== 'bigint') {
    throw new LiveViewError(`publish: timestampNs must be a bigint (nanoseconds), received ${typeof t} ${String(t)}`);
  }
  if (t < 0n || t > UINT64_MAX) throw new LiveViewError(`publish: timestampNs ${t} is outside [0, 2^64 - 1]`);
  return t;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function errorOf(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

const CONSTRUCT = Symbol('LiveView.construct');

export class LiveView {
  /** The bound TCP port (the actual one when started with port 0). */
  readonly port: number;
  /** Address to give Foxglove Studio, `ws://host:port`. */
  readonly url: string;

  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #server: FoxgloveServerT;
  readonly #registry: ProtoRegistry;
  readonly #onError: (error: Error) => void;
  readonly #closeGraceMs: number;
  readonly #topics = new Map<string, TopicEntry>();
  readonly #subscribed = new Set<ChannelId>();
  readonly #clients = new Set<ClientSocket>();
  readonly #stats: LiveViewStats = { published: 0, sent: 0, dropped: 0, clientErrors: 0 };
  readonly #ctx: SendContext;
  #closing: Promise<void> | null = null;

  /** Listen on `opts.host:opts.port` and serve Foxglove WebSocket clients. */
  static async start(opts: LiveViewOptions = {}): Promise<LiveView> {
    const port = opts.port ?? DEFAULT_PORT;
    const host = opts.host ?? DEFAULT_HOST;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new LiveViewError(`LiveView.start: port must be an integer in [0, 65535], received ${String(port)}`);
    }
    if (typeof host !== 'string' || host === '') throw new LiveViewError(`LiveView.start: host must be a non-empty string`);
    const maxQueued = opts.maxQueuedBytesPerClient ?? DEFAULT_MAX_QUEUED;
    if (!(Number.isFinite(maxQueued) && maxQueued >= 0)) {
      throw new LiveViewError(`LiveView.start: maxQueuedBytesPerClient must be a finite number >= 0, received ${String(maxQueued)}`);
    }
    const grace = opts.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    if (!(Number.isFinite(grace) && grace >= 0)) {
      throw new LiveViewError(`LiveView.start: closeGraceMs must be a finite number >= 0, received ${String(grace)}`);
    }
    const registry = opts.registry ?? protoRegistry();

    const http = createServer((_req, res) => {
      res.writeHead(426, { 'Content-Type': 'text/plain; charset=utf-8', Upgrade: 'websocket', Connection: 'close' });
      res.end(`scoreflow live view: connect with Foxglove Studio (Foxglove WebSocket, subprotocol ${FOXGLOVE_SUBPROTOCOL})\n`);
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        http.off('listening', onListening);
        reject(new LiveViewError(`LiveView.start: cannot listen on ${host}:${port}: ${e.message}`));
      };
      const onListening = (): void => {
        http.off('error', onError);
        resolve();
      };
      http.once('error', onError);
      http.once('listening', onListening);
      http.listen({ port, host });
    });
    const bound = (http.address() as AddressInfo).port;
    return new LiveView(CONSTRUCT, http, bound, host, opts.name ?? 'scoreflow', maxQueued, grace, registry, opts.onError ?? throttledWarn());
  }

  private constructor(
    token: typeof CONSTRUCT,
    http: Server,
    port: number,
    host: string,
    name: string,
    maxQueued: number,
    closeGraceMs: number,
    registry: ProtoRegistry,
    onError: (error: Error) => void,
  ) {
    if (token !== CONSTRUCT) throw new LiveViewError('use LiveView.start()');
    this.#http = http;
    this.port = port;
    this.url = `ws://${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.#registry = registry;
    this.#onError = onError;
    this.#closeGraceMs = closeGraceMs;
    this.#ctx = {
      payloadBytes: 0,
      maxQueued,
      stats: this.#stats,
      reportError: (e) => this.#reportError(e),
    };

    this.#server = new FoxgloveServer({ name });
    this.#server.on('error', (e) => this.#reportError(new Error(`client protocol error: ${errorOf(e).message}`)));
    this.#server.on('subscribe', (id) => this.#subscribed.add(id));
    this.#server.on('unsubscribe', (id) => this.#subscribed.delete(id));

    this.#wss = new WebSocketServer({
      server: http,
      maxPayload: MAX_INCOMING_BYTES,
      perMessageDeflate: false,
      clientTracking: true,
      handleProtocols: (protocols) => (protocols.has(FOXGLOVE_SUBPROTOCOL) ? FOXGLOVE_SUBPROTOCOL : false),
    });
    // Re-emitted errors of the HTTP server (the listening socket); never fatal for the process.
    this.#wss.on('error', (e) => this.#reportError(new Error(`server error: ${e.message}`)));
    this.#wss.on('connection', (ws, req) => this.#onConnection(ws, req));
  }

  #reportError(error: Error): void {
    this.#stats.clientErrors++;
    try {
      this.#onError(error);
    } catch {
      // A throwing error callback must not take the server down either.
    }
  }

  #onConnection(ws: WebSocket, req: IncomingMessage): void {
    const name = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    ws.on('error', (e) => this.#reportError(new Error(`client ${name}: ${e.message}`)));
    if (this.#closing) {
      ws.terminate();
      return;
    }
    if (ws.protocol !== FOXGLOVE_SUBPROTOCOL) {
      ws.close(1002, `expected WebSocket subprotocol ${FOXGLOVE_SUBPROTOCOL}`);
      return;
    }
    const client = new ClientSocket(ws, name, this.#ctx);
    this.#clients.add(client);
    ws.on('close', () => this.#clients.delete(client));
    try {
      this.#server.handleConnection(client, name);
    } catch (e) {
      this.#reportError(new Error(`client ${name}: ${errorOf(e).message}`));
      ws.terminate();
    }
  }

  /**
   * Advertise `topic` carrying `typeName` messages. Idempotent for the same type; a LiveViewError
   * for another type, an unknown type (the registry's ProtoError) or after close().
   */
  advertise<N extends ProtoTypeName>(topic: string, typeName: N): LiveTopic<ProtoMessages[N]['init']>;
  advertise(topic: string, typeName: string): LiveTopic;
  advertise(topic: string, typeName: string): LiveTopic {
    if (typeof topic !== 'string' || topic === '') throw new LiveViewError(`advertise: topic must be a non-empty string, received ${String(topic)}`);
    const existing = this.#topics.get(topic);
    const fullName = this.#registry.messageType(typeName).fullName.replace(/^\./, '');
    if (existing) {
      if (existing.typeName !== fullName) {
        throw new LiveViewError(`advertise: topic '${topic}' is already advertised with type ${existing.typeName}, not ${fullName}`);
      }
      return existing.handle;
    }
    if (this.#closing) throw new LiveViewError(`advertise('${topic}'): the live view is closed`);
    const channelId = this.#server.addChannel({
      topic,
      encoding: 'protobuf',
      schemaName: fullName,
      schemaEncoding: 'protobuf',
      schema: base64(this.#registry.fileDescriptorSet(fullName)),
    });
    const handle: LiveTopic = Object.freeze({
      topic,
      typeName: fullName,
      channelId,
      publish: (message: object | Uint8Array, timestampNs?: bigint) => this.publish(topic, message, timestampNs),
      hasSubscribers: () => this.#subscribed.has(channelId),
    });
    this.#topics.set(topic, { topic, typeName: fullName, channelId, checked: false, handle });
    return handle;
  }

  #entry(what: string, topic: string): TopicEntry {
    const entry = this.#topics.get(topic);
    if (!entry) {
      const known = [...this.#topics.keys()];
      throw new LiveViewError(
        `${what}: topic '${String(topic)}' is not advertised; call advertise(topic, typeName) first` +
          ` (advertised: ${known.length ? known.join(', ') : 'none'})`,
      );
    }
    return entry;
  }

  /**
   * Send `message` (an init object of the topic's type, or its encoding) to the clients subscribed
   * to `topic`, with log time `timestampNs` (default: now).
   */
  publish(topic: string, message: object | Uint8Array, timestampNs?: bigint): void {
    const entry = this.#entry('publish', topic);
    const ts = timestampNs === undefined ? nowNs() : checkTimestamp(timestampNs);
    const isBytes = message instanceof Uint8Array;
    if (!isBytes && (typeof message !== 'object' || message === null)) {
      throw new LiveViewError(`publish('${topic}'): expected an init object of ${entry.typeName} or a Uint8Array, received ${message === null ? 'null' : typeof message}`);
    }
    if (this.#closing) return;
    const subscribed = this.#subscribed.has(entry.channelId);
    let payload: Uint8Array | null = null;
    if (isBytes) {
      if (subscribed) payload = Uint8Array.prototype.slice.call(message);
    } else if (subscribed || !entry.checked) {
      payload = this.#registry.encode(entry.typeName, message);
      entry.checked = true;
    }
    this.#stats.published++;
    if (!subscribed || payload === null) return;
    this.#ctx.payloadBytes = payload.byteLength;
    try {
      this.#server.sendMessage(entry.channelId, ts, payload);
    } catch (e) {
      this.#reportError(new Error(`publish('${topic}'): ${errorOf(e).message}`));
    }
  }

  /** Whether any connected client subscribes to `topic` (which must be advertised). */
  hasSubscribers(topic: string): boolean {
    return this.#subscribed.has(this.#entry('hasSubscribers', topic).channelId);
  }

  /** Connected Foxglove clients. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** Counters since start (a snapshot). */
  stats(): LiveViewStats {
    return { ...this.#stats };
  }

  /** Close every connection and the listening socket; idempotent, resolves once the port is free. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const wssClosed = new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    const httpClosed = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    for (const ws of this.#wss.clients) ws.close(1001, 'scoreflow live view closed');
    const timer = setTimeout(() => {
      for (const ws of this.#wss.clients) ws.terminate();
      this.#http.closeAllConnections();
    }, this.#closeGraceMs);
    try {
      await Promise.all([wssClosed, httpClosed]);
    } finally {
      clearTimeout(timer);
    }
  }
}
