/**
 * TypeScript client of `PolicyService`: unary `info` and `reset`, and `RemotePolicy`, a
 * `ChunkPolicy` over one Act stream that a `controlLoop` can drive.
 *
 * `RemotePolicy` survives server restarts: when its stream fails it rejects the request in
 * flight, reconnects with exponential backoff (`initialBackoffMs` doubling up to
 * `maxBackoffMs`), and replays the last `obs_horizon` observations as history so the first chunk
 * after reconnecting is conditioned like the one before. A control loop holds its last chunk
 * meanwhile and blends into the new one, so the robot sees no jump.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { PolicyInfoProto } from '../../../src/proto/messages.js';
import { decode, encode } from '../../../src/proto/registry.js';
import { checkNumber, fail } from '../../../src/util/validate.js';
import type { ChunkPolicy, ChunkPolicyInfo, ChunkRequestOptions, TimedChunk, TimedObservation } from '../control/types.js';
import { chunkPolicyInfo, observationMessage, rejectionError, timedChunk } from './chunks.js';
import { policyServiceDefinition } from './grpcServer.js';

export interface PolicyClientOptions {
  /** Largest accepted reply, bytes (default 64 MiB). */
  readonly maxReceiveBytes?: number;
}

export class PolicyClient {
  readonly client: grpc.Client;

  constructor(
    readonly address: string,
    opts: PolicyClientOptions = {},
  ) {
    if (typeof address !== 'string' || !/^[^\s]+:\d+$/.test(address)) fail(`address: expected 'host:port', received '${String(address)}'`);
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': opts.maxReceiveBytes ?? 64 * 1024 * 1024,
      // Reconnect quickly after a server restart (the default backoff starts at 1 s).
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.enable_channelz': 0,
    });
  }

  private unary(method: 'Info' | 'Reset', req: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const def = policyServiceDefinition[method];
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(new Error(`${method}: ${err.details || err.message} (${grpc.status[err.code] ?? err.code})`)) : resolve(res!),
      );
    });
  }

  async info(timeoutMs = 5000): Promise<PolicyInfoProto> {
    return decode('scoreflow.v1.PolicyInfo', await this.unary('Info', encode('scoreflow.v1.InfoRequest', {}), timeoutMs));
  }

  /** Clear a live session's history; resolves to the number of observations dropped. */
  async reset(sessionId: string, timeoutMs = 5000): Promise<number> {
    const res = await this.unary('Reset', encode('scoreflow.v1.ResetRequest', { sessionId }), timeoutMs);
    return decode('scoreflow.v1.ResetResponse', res).clearedObservations;
  }

  /** Open an Act stream as a ChunkPolicy (fetches Info first). */
  async policy(opts: RemotePolicyOptions = {}): Promise<RemotePolicy> {
    const info = await this.info(opts.connectTimeoutMs ?? 5000);
    return new RemotePolicy(this, chunkPolicyInfo(info), info, opts);
  }

  close(): void {
    this.client.close();
  }
}

export interface RemotePolicyOptions {
  /** Session id sent with every observation (default: a random UUID). */
  readonly sessionId?: string;
  /** Reject a chunk request not answered within this time (default 1000 ms). */
  readonly requestTimeoutMs?: number;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly connectTimeoutMs?: number;
}

type Waiter = { seq: number; resolve: (c: TimedChunk) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

export class RemotePolicy implements ChunkPolicy {
  readonly sessionId: string;
  private stream: grpc.ClientDuplexStream<Uint8Array, Uint8Array> | undefined;
  private waiter: Waiter | undefined;
  private history: TimedObservation[] = [];
  private backoffMs: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The next observation starts a new episode (sent in order with the stream). */
  private resetPending = false;
  private readonly requestTimeoutMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  /** Streams opened (1 + reconnects) and the last stream error. */
  connects = 0;
  lastError: string | undefined;

  constructor(
    private readonly client: PolicyClient,
    readonly info: ChunkPolicyInfo,
    readonly remoteInfo: PolicyInfoProto,
    opts: RemotePolicyOptions = {},
  ) {
    this.sessionId = opts.sessionId ?? randomUUID();
    this.requestTimeoutMs = checkNumber('requestTimeoutMs', opts.requestTimeoutMs ?? 1000, { min: 1 });
    this.initialBackoffMs = checkNumber('initialBackoffMs', opts.initialBackoffMs ?? 50, { min: 1 });
    this.maxBackoffMs = checkNumber('maxBackoffMs', opts.maxBackoffMs ?? 2000, { min: this.initialBackoffMs });
    this.backoffMs = this.initialBackoffMs;
    this.open();
  }

  get connected(): boolean {
    return this.stream !== undefined;
  }

  private open(): void {
    if (this.closed) return;
    this.connects++;
    const def = policyServiceDefinition.Act;
    const stream = this.client.client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize);
    this.stream = stream;
    stream.on('data', (buf: Uint8Array) => {
      if (this.stream !== stream) return;
      this.backoffMs = this.initialBackoffMs;
      let chunk: TimedChunk;
      try {
        const msg = decode('scoreflow.v1.ActionChunk', buf);
        if (msg.errorCode) {
          // A rejected observation (or a failed inference): the stream goes on. obs_seq 0 is a
          // message the server could not read, so it may be the request being waited for.
          const seq = Number(msg.obsSeq);
          if (this.waiter && (seq === this.waiter.seq || seq === 0)) this.settle(undefined, rejectionError(msg));
          return;
        }
        chunk = timedChunk(msg, this.info);
      } catch (err) {
        this.settle(undefined, new Error(`bad chunk from the server: ${(err as Error).message}`));
        return;
      }
      if (this.waiter && chunk.obsSeq === this.waiter.seq) this.settle(chunk);
    });
    const lost = (why: string): void => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.lastError = why;
      this.settle(undefined, new Error(`policy stream lost: ${why}`));
      this.scheduleReconnect();
    };
    stream.on('error', (err: grpc.ServiceError) => lost(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
    stream.on('end', () => lost('server ended the stream'));
    // Replay the history so the new server-side session is conditioned like the old one.
    for (const o of this.history) stream.write(encode('scoreflow.v1.Observation', observationMessage(o, this.sessionId, true)));
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.open();
    }, delay);
  }

  private settle(chunk?: TimedChunk, err?: Error): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    clearTimeout(w.timer);
    if (chunk) w.resolve(chunk);
    else w.reject(err ?? new Error('request abandoned'));
  }

  private remember(obs: TimedObservation): void {
    this.history.push(obs);
    if (this.history.length > this.info.obsHorizon) this.history.shift();
  }

  private takeReset(): boolean {
    const r = this.resetPending;
    this.resetPending = false;
    return r;
  }

  observe(obs: TimedObservation): void {
    const msg = encode('scoreflow.v1.Observation', observationMessage(obs, this.sessionId, true, this.takeReset()));
    this.remember(obs);
    this.stream?.write(msg);
  }

  requestChunk(obs: TimedObservation, opts?: ChunkRequestOptions): Promise<TimedChunk> {
    if (this.closed) return Promise.reject(new Error('requestChunk: policy is closed'));
    let msg: Uint8Array;
    try {
      msg = encode('scoreflow.v1.Observation', observationMessage(obs, this.sessionId, false, this.resetPending, opts?.pinned));
      this.resetPending = false;
    } catch (err) {
      return Promise.reject(err as Error);
    }
    this.remember(obs);
    this.settle(undefined, new Error(`superseded by observation ${obs.seq}`));
    if (!this.stream) return Promise.reject(new Error(`not connected to the policy server (${this.lastError ?? 'connecting'}); reconnecting`));
    const stream = this.stream;
    return new Promise<TimedChunk>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(undefined, new Error(`no chunk for observation ${obs.seq} within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
      this.waiter = { seq: obs.seq, resolve, reject, timer };
      stream.write(msg);
    });
  }

  /**
   * Start a new episode: the next observation carries reset_history, so the server clears this
   * session's history in order with the stream (a reconnect replays nothing from before).
   */
  async reset(): Promise<void> {
    this.history = [];
    this.resetPending = true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.settle(undefined, new Error('policy closed'));
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      s.end();
      s.cancel();
    }
  }
}
