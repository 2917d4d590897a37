/**
 * Policy sessions, transport-agnostic. The gRPC server, the TCP/stdio bridge and in-process
 * control loops all drive a `PolicyHost`: each client stream opens a `HostSession` (its own
 * observation history, sequence checks and counters: one policy instance per session, sharing
 * the network weights), pushes decoded `Observation` messages, and receives `ActionChunk`
 * messages or one terminal error through its `SessionSink`.
 *
 * One bad message never ends a session: an invalid observation (wrong length, a non-finite
 * value, a seq that does not increase, bad pins, ...) is answered with a rejection, an
 * `ActionChunk` with `error_code` / `error_message` and no actions, and the session goes on as
 * if it had not been sent (history and sequence checks unchanged; a request already waiting is
 * still answered). A failed inference is rejected the same way (INTERNAL) for the requests it
 * held. Only what makes the stream itself unusable ends it: a session_id that changes or is
 * taken, the session limit, idleness, shutdown.
 *
 * Scheduling: each session has at most one waiting request, its freshest observation (an older
 * waiting one is superseded and never answered, but stays in the history). Whenever the engine is
 * idle, every waiting request (up to `maxBatch`, oldest first) goes to it as one batch, so
 * sessions that wait together are served by one denoising pass. Memory per session is bounded by
 * the observation horizon; the host never queues more than one request per session.
 */
import { randomUUID } from 'node:crypto';
import type { ActionChunkProtoInit, ObservationProto, PolicyInfoProtoInit } from '../../../src/proto/messages.js';
import { fromTensorProto } from '../../../src/proto/tensor.js';
import { checkNumber, fail } from '../../../src/util/validate.js';
import { checkPinnedRows } from '../control/pins.js';
import type { ChunkPins, EngineInfo, InferenceEngine } from './engine.js';

/** Why a session was ended; names are gRPC status code names. */
export type SessionErrorCode = 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED' | 'NOT_FOUND' | 'INTERNAL' | 'UNAVAILABLE' | 'ALREADY_EXISTS' | 'DEADLINE_EXCEEDED';

export class SessionError extends Error {
  constructor(
    readonly code: SessionErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SessionError';
  }
}

export interface SessionSink {
  /** A chunk for this session. */
  chunk(msg: ActionChunkProtoInit): void;
  /** The session failed and is closed; no more calls follow. */
  error(err: SessionError): void;
}

export interface PolicyHostOptions {
  /** Sessions open at once (default 64); more are refused with RESOURCE_EXHAUSTED. */
  readonly maxSessions?: number;
  /** Requests per engine batch (default 16). */
  readonly maxBatch?: number;
  /** Largest accepted request message, bytes (reported by info; transports enforce it). Default 1 MiB. */
  readonly maxMessageBytes?: number;
  /**
   * Close a session that has sent nothing for this long (default 60 s), with DEADLINE_EXCEEDED:
   * a client that vanished without closing its stream must not hold a session slot forever.
   */
  readonly sessionIdleTimeoutMs?: number;
}

export interface HostStats {
  readonly sessions: number;
  readonly sessionsOpened: number;
  readonly observations: number;
  readonly chunks: number;
  readonly superseded: number;
  readonly rejected: number;
  /** Observations answered with a rejection (INVALID_ARGUMENT) instead of a chunk. */
  readonly observationsRejected: number;
  readonly batches: number;
  readonly batchedRequests: number;
  readonly engineErrors: number;
  readonly idleClosed: number;
}

interface Waiting {
  readonly session: HostSession;
  readonly seq: bigint;
  readonly timestampNs: bigint;
  readonly window: Float64Array[];
  readonly pins?: ChunkPins;
}

export class PolicyHost {
  readonly maxSessions: number;
  readonly maxBatch: number;
  readonly maxMessageBytes: number;
  private readonly sessions = new Map<string, HostSession>();
  private readonly waiting = new Map<HostSession, Waiting>();
  private busy = false;
  private closed = false;
  private seedCounter = 0;
  private counters = { sessionsOpened: 0, observations: 0, chunks: 0, superseded: 0, rejected: 0, observationsRejected: 0, batches: 0, batchedRequests: 0, engineErrors: 0, idleClosed: 0 };
  readonly sessionIdleTimeoutMs: number;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly engine: InferenceEngine,
    opts: PolicyHostOptions = {},
  ) {
    if (!engine || typeof engine.predict !== 'function') fail('PolicyHost: engine must be an InferenceEngine');
    this.maxSessions = checkNumber('maxSessions', opts.maxSessions ?? 64, { integer: true, min: 1, max: 100000 });
    this.maxBatch = checkNumber('maxBatch', opts.maxBatch ?? 16, { integer: true, min: 1, max: 1024 });
    this.maxMessageBytes = checkNumber('maxMessageBytes', opts.maxMessageBytes ?? 1 << 20, { integer: true, min: 64, max: 2 ** 31 - 1 });
    this.sessionIdleTimeoutMs = checkNumber('sessionIdleTimeoutMs', opts.sessionIdleTimeoutMs ?? 60_000, { min: 1 });
  }

  /** Sweep idle sessions while any are open (the timer never keeps the process alive). */
  private armSweep(): void {
    if (this.sweepTimer || this.sessions.size === 0) return;
    const every = Math.max(5, Math.min(5000, this.sessionIdleTimeoutMs / 4));
    this.sweepTimer = setInterval(() => {
      const now = performance.now();
      for (const s of [...this.sessions.values()]) {
        if (!s.busy && now - s.lastActivityMs > this.sessionIdleTimeoutMs) {
          this.counters.idleClosed++;
          s.fail(new SessionError('DEADLINE_EXCEEDED', `session idle for more than ${this.sessionIdleTimeoutMs} ms; closed`));
        }
      }
      if (this.sessions.size === 0) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = undefined;
      }
    }, every);
    this.sweepTimer.unref();
  }

  get info(): EngineInfo {
    return this.engine.info;
  }

  /** The PolicyInfo message for this host. */
  policyInfo(): PolicyInfoProtoInit {
    const i = this.engine.info;
    return {
      policyId: i.policyId,
      modelVersion: i.modelVersion,
      env: i.env,
      observation: { name: 'state', shape: [i.obsDim], dtype: 'DTYPE_FLOAT64', low: i.obsLow, high: i.obsHigh, elementNames: i.obsNames },
      action: { name: 'actions', shape: [i.rows, i.actionDim], dtype: 'DTYPE_FLOAT32', low: i.actionLow, high: i.actionHigh },
      obsHorizon: i.obsHorizon,
      predHorizon: i.rows,
      actionHorizon: i.actionHorizon,
      controlRateHz: i.controlRateHz,
      currentRow: 0,
      sampler: i.sampler,
      samplingSteps: i.samplingSteps,
      maxMessageBytes: this.maxMessageBytes,
      maxSessions: this.maxSessions,
      guidance: i.guidance,
      samplingTemperature: i.temperature,
      replanClearance: i.replanClearance,
    };
  }

  stats(): HostStats {
    return { sessions: this.sessions.size, ...this.counters };
  }

  /** Open a session; throws SessionError RESOURCE_EXHAUSTED at the session limit. */
  openSession(sink: SessionSink): HostSession {
    if (this.closed) throw new SessionError('UNAVAILABLE', 'the policy host is shutting down');
    if (!sink || typeof sink.chunk !== 'function' || typeof sink.error !== 'function') fail('openSession: sink must have chunk() and error()');
    if (this.sessions.size >= this.maxSessions) {
      this.counters.rejected++;
      throw new SessionError('RESOURCE_EXHAUSTED', `the server is at its limit of ${this.maxSessions} sessions; retry later`);
    }
    const s = new HostSession(this, sink, randomUUID());
    this.sessions.set(s.id, s);
    this.counters.sessionsOpened++;
    this.armSweep();
    return s;
  }

  /** Clear a session's observation history; returns how many observations were dropped. */
  reset(sessionId: string): number {
    if (typeof sessionId !== 'string' || sessionId.length === 0) throw new SessionError('INVALID_ARGUMENT', 'reset: session_id must be a non-empty string');
    const s = this.sessions.get(sessionId);
    if (!s) throw new SessionError('NOT_FOUND', `reset: no live session '${sessionId}'`);
    return s.clearHistory();
  }

  /** Sessions close themselves; the host forgets them. */
  detach(s: HostSession): void {
    if (this.sessions.get(s.id) === s) this.sessions.delete(s.id);
    this.waiting.delete(s);
  }

  rename(s: HostSession, newId: string): void {
    if (this.sessions.has(newId)) throw new SessionError('ALREADY_EXISTS', `session_id '${newId}' is already in use by another live stream`);
    this.sessions.delete(s.id);
    this.sessions.set(newId, s);
  }

  countObservation(): void {
    this.counters.observations++;
  }

  countRejectedObservation(): void {
    this.counters.observationsRejected++;
  }

  enqueue(w: Waiting): void {
    if (this.waiting.has(w.session)) this.counters.superseded++;
    w.session.busy = true;
    this.waiting.set(w.session, w);
    this.pump();
  }

  private pump(): void {
    if (this.busy || this.closed || this.waiting.size === 0) return;
    const batch: Waiting[] = [];
    for (const w of this.waiting.values()) {
      batch.push(w);
      if (batch.length >= this.maxBatch) break;
    }
    for (const w of batch) this.waiting.delete(w.session);
    this.busy = true;
    this.counters.batches++;
    this.counters.batchedRequests += batch.length;
    const seed = this.seedCounter++;
    this.engine
      .predict(
        batch.map((w) => w.window),
        seed,
        batch.some((w) => w.pins) ? batch.map((w) => w.pins) : undefined,
      )
      .then(
        (r) => {
          const { rows, actionDim, controlRateHz, policyId } = this.engine.info;
          batch.forEach((w, b) => {
            if (!this.waiting.has(w.session)) w.session.busy = false;
            if (!w.session.open) return;
            const chunk = r.chunks[b]!;
            let finite = chunk.length === rows * actionDim;
            for (let i = 0; finite && i < chunk.length; i++) finite = Number.isFinite(chunk[i]!);
            if (!finite) {
              w.session.reject(w.seq, w.timestampNs, new SessionError('INTERNAL', `the policy produced a malformed or non-finite chunk for observation ${w.seq}`));
              return;
            }
            this.counters.chunks++;
            w.session.deliver({
              startTimestampNs: w.timestampNs,
              dt: 1 / controlRateHz,
              actions: { dtype: 'DTYPE_FLOAT32', shape: [rows, actionDim], data: new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength), name: 'actions' },
              obsSeq: w.seq,
              policyId,
              inferenceLatencyMs: r.latencyMs,
              sessionId: w.session.id,
            });
          });
        },
        (err: Error) => {
          this.counters.engineErrors++;
          for (const w of batch) w.session.busy = this.waiting.has(w.session);
          // The requests are rejected; the sessions and their histories go on (a WorkerEngine
          // restarts its worker), so the next observation is answered again.
          for (const w of batch) if (w.session.open) w.session.reject(w.seq, w.timestampNs, new SessionError('INTERNAL', `inference failed: ${err.message}`));
        },
      )
      .finally(() => {
        this.busy = false;
        // Let I/O run (new observations may supersede waiting ones) before the next batch.
        setImmediate(() => this.pump());
      });
  }

  /** Fail every session with UNAVAILABLE and refuse new ones. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const s of [...this.sessions.values()]) s.fail(new SessionError('UNAVAILABLE', 'the policy server is shutting down'));
    this.waiting.clear();
  }
}

/** One client stream's policy state. */
export class HostSession {
  private history: Float64Array[] = [];
  private lastSeq: bigint | undefined;
  private lastTimestamp: bigint | undefined;
  private named = false;
  open = true;
  observations = 0;
  chunks = 0;
  /** Observations or requests answered with a rejection. */
  rejections = 0;
  /** A request of this session is waiting or being computed. */
  busy = false;
  lastActivityMs = performance.now();
  private onDrained: (() => void) | undefined;

  constructor(
    private readonly host: PolicyHost,
    private readonly sink: SessionSink,
    public id: string,
  ) {}

  /**
   * Validate and take one observation; returns the error when it was not taken. An invalid
   * observation is rejected (the sink gets an ActionChunk with error_code INVALID_ARGUMENT for
   * its seq) and the session goes on as if it had not been sent. A session_id that changes
   * mid-stream or is taken by another stream ends the session (the sink gets the error).
   */
  push(obs: ObservationProto): SessionError | undefined {
    if (!this.open) return new SessionError('UNAVAILABLE', 'session is closed');
    if (this.onDrained) return new SessionError('INVALID_ARGUMENT', 'observation after the client finished its stream');
    this.lastActivityMs = performance.now();
    try {
      this.checkSessionId(obs);
    } catch (err) {
      const e = err instanceof SessionError ? err : new SessionError('INVALID_ARGUMENT', (err as Error).message);
      this.fail(e);
      return e;
    }
    let state: Float64Array;
    let pins: ChunkPins | undefined;
    try {
      state = this.validate(obs);
      pins = this.validatePins(obs);
    } catch (err) {
      const e = err instanceof SessionError ? err : new SessionError('INVALID_ARGUMENT', (err as Error).message);
      this.host.countRejectedObservation();
      this.reject(typeof obs.seq === 'bigint' ? obs.seq : 0n, typeof obs.timestampNs === 'bigint' ? obs.timestampNs : 0n, e);
      return e;
    }
    this.host.countObservation();
    this.observations++;
    this.lastSeq = obs.seq;
    this.lastTimestamp = obs.timestampNs;
    if (obs.resetHistory) this.history = [];
    const To = this.host.info.obsHorizon;
    this.history.push(state);
    if (this.history.length > To) this.history.shift();
    if (!obs.historyOnly) {
      // Pad a short history by repeating its oldest observation (as at an episode's start).
      const window = this.history.slice(-To);
      while (window.length < To) window.unshift(window[0]!);
      this.host.enqueue({ session: this, seq: obs.seq, timestampNs: obs.timestampNs, window, ...(pins ? { pins } : {}) });
    }
    return undefined;
  }

  /** Session identity: errors here end the session (they make the stream ambiguous). */
  private checkSessionId(obs: ObservationProto): void {
    if (!obs || typeof obs !== 'object') return; // validate() rejects it
    if (obs.sessionId) {
      if (!this.named) {
        if (obs.sessionId.length > 128) throw new SessionError('INVALID_ARGUMENT', `session_id: at most 128 characters, received ${obs.sessionId.length}`);
        if (obs.sessionId !== this.id) this.host.rename(this, obs.sessionId);
        this.id = obs.sessionId;
        this.named = true;
      } else if (obs.sessionId !== this.id) {
        throw new SessionError('INVALID_ARGUMENT', `session_id changed mid-stream from '${this.id}' to '${obs.sessionId}'`);
      }
    } else {
      this.named = true;
    }
  }

  private validate(obs: ObservationProto): Float64Array {
    const info = this.host.info;
    if (!obs || typeof obs !== 'object') throw new SessionError('INVALID_ARGUMENT', 'observation: expected a decoded scoreflow.v1.Observation');
    if (this.lastSeq !== undefined && obs.seq <= this.lastSeq) throw new SessionError('INVALID_ARGUMENT', `seq ${obs.seq} does not increase (previous ${this.lastSeq})`);
    if (this.lastTimestamp !== undefined && obs.timestampNs < this.lastTimestamp) {
      throw new SessionError('INVALID_ARGUMENT', `timestamp_ns ${obs.timestampNs} goes back in time (previous ${this.lastTimestamp})`);
    }
    const names = Object.keys(obs.tensors ?? {});
    const unknown = names.filter((n) => n !== 'state');
    if (unknown.length) throw new SessionError('INVALID_ARGUMENT', `tensors: this policy takes only 'state', received ${unknown.map((n) => `'${n}'`).join(', ')}`);
    let values: ArrayLike<number>;
    if (obs.state.length > 0) {
      if (names.length) throw new SessionError('INVALID_ARGUMENT', "observation: give the state either in 'state' or in tensors['state'], not both");
      values = obs.state;
    } else if (names.length) {
      const t = obs.tensors['state']!;
      let decoded;
      try {
        decoded = fromTensorProto(t);
      } catch (err) {
        throw new SessionError('INVALID_ARGUMENT', `tensors['state']: ${(err as Error).message}`);
      }
      if (decoded.dtype !== 'float32' && decoded.dtype !== 'float64') throw new SessionError('INVALID_ARGUMENT', `tensors['state']: dtype must be float32 or float64, received ${decoded.dtype}`);
      if (decoded.shape.length !== 1 || decoded.shape[0] !== info.obsDim) {
        throw new SessionError('INVALID_ARGUMENT', `tensors['state']: shape must be [${info.obsDim}], received [${decoded.shape.join(', ')}]`);
      }
      values = decoded.data as Float32Array | Float64Array;
    } else {
      throw new SessionError('INVALID_ARGUMENT', `observation ${obs.seq}: no state (expected ${info.obsDim} values)`);
    }
    if (values.length !== info.obsDim) throw new SessionError('INVALID_ARGUMENT', `state: expected ${info.obsDim} values (${info.obsNames.join(', ')}), received ${values.length}`);
    const out = new Float64Array(info.obsDim);
    for (let i = 0; i < out.length; i++) {
      const v = values[i]!;
      if (!Number.isFinite(v)) throw new SessionError('INVALID_ARGUMENT', `state[${i}] (${info.obsNames[i] ?? i}) is ${v}; observations must be finite`);
      out[i] = v;
    }
    return out;
  }

  /** Observation.pinned_actions as engine pins (undefined when none). */
  private validatePins(obs: ObservationProto): ChunkPins | undefined {
    const flat = obs.pinnedActions ?? [];
    if (flat.length === 0) {
      if (obs.pinnedFirstRow) throw new SessionError('INVALID_ARGUMENT', `pinned_first_row is ${obs.pinnedFirstRow} but pinned_actions is empty`);
      return undefined;
    }
    if (obs.historyOnly) throw new SessionError('INVALID_ARGUMENT', 'pinned_actions: not allowed on a history_only observation (no chunk is computed for it)');
    const { actionDim } = this.host.info;
    if (flat.length % actionDim !== 0) throw new SessionError('INVALID_ARGUMENT', `pinned_actions: expected a multiple of action_dim ${actionDim} values (rows x action_dim), received ${flat.length}`);
    const rows = Array.from({ length: flat.length / actionDim }, (_, k) => Float64Array.from(flat.slice(k * actionDim, (k + 1) * actionDim)));
    const pins = { firstRow: obs.pinnedFirstRow ?? 0, rows };
    try {
      checkPinnedRows(this.host.info, pins, 'pinned');
    } catch (err) {
      throw new SessionError('INVALID_ARGUMENT', (err as Error).message.replace(/^pinned\.firstRow/, 'pinned_first_row').replace(/^pinned\.rows/, 'pinned_actions'));
    }
    return pins;
  }

  /**
   * Answer observation `seq` with a rejection instead of a chunk: an ActionChunk carrying
   * `error_code` / `error_message` and no actions. The session stays open.
   */
  reject(seq: bigint, timestampNs: bigint, err: SessionError): void {
    if (!this.open) return;
    this.rejections++;
    try {
      this.sink.chunk({ startTimestampNs: timestampNs, obsSeq: seq, policyId: this.host.info.policyId, sessionId: this.id, errorCode: err.code, errorMessage: err.message });
    } catch (e) {
      this.fail(new SessionError('INTERNAL', `sending a rejection failed: ${(e as Error).message}`));
      return;
    }
    if (this.onDrained && !this.busy) this.finishDrain();
  }

  deliver(msg: ActionChunkProtoInit): void {
    if (!this.open) return;
    this.chunks++;
    try {
      this.sink.chunk(msg);
    } catch (err) {
      this.fail(new SessionError('INTERNAL', `sending a chunk failed: ${(err as Error).message}`));
      return;
    }
    if (this.onDrained && !this.busy) this.finishDrain();
  }

  /**
   * The client finished sending (gRPC half-close): answer the request still waiting or being
   * computed, then close and call `done`. Immediately when nothing is pending.
   */
  drain(done: () => void): void {
    if (!this.open) {
      done();
      return;
    }
    this.onDrained = done;
    if (!this.busy) this.finishDrain();
  }

  private finishDrain(): void {
    const done = this.onDrained;
    this.onDrained = undefined;
    this.close();
    done?.();
  }

  clearHistory(): number {
    const n = this.history.length;
    this.history = [];
    return n;
  }

  /** End the session with an error (reported once to the sink). */
  fail(err: SessionError): void {
    if (!this.open) return;
    this.close();
    try {
      this.sink.error(err);
    } catch {
      // The transport is gone; nothing left to tell.
    }
  }

  /** End the session normally (client finished or disconnected). */
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.history = [];
    this.host.detach(this);
    this.onDrained = undefined;
  }
}
