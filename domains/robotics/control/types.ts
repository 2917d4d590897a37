/**
 * What a real-time control loop needs from a policy, wherever the policy runs (a worker thread
 * in this process, a gRPC policy server, a TCP bridge). Times are milliseconds on one monotonic
 * clock (the loop's `now()`, `performance.now()` by default).
 */

/** One observation as the loop hands it to the policy. */
export interface TimedObservation {
  /** Capture time, ms on the loop clock. */
  readonly timeMs: number;
  /** Strictly increasing within a session. */
  readonly seq: number;
  /** Low-dimensional state. */
  readonly state: Float64Array;
}

/**
 * Actions pinned in a requested chunk: rows[k] (the action's units) becomes the chunk's row
 * firstRow + k exactly (inpainting), and the rest of the chunk continues from them. Row 0 is the
 * observation's time; firstRow may be negative, down to -(obsHorizon - 1), to pin actions
 * executed before it (they condition the chunk but are not returned). The control loop pins the
 * rows it will still execute from its current chunk until the new one arrives.
 */
export interface PinnedRows {
  readonly firstRow: number;
  readonly rows: readonly Float64Array[];
}

/** Per-request options of `ChunkPolicy.requestChunk`. */
export interface ChunkRequestOptions {
  readonly pinned?: PinnedRows;
}

/** A chunk as the policy returns it. */
export interface TimedChunk {
  /** Seq of the observation it was computed from. */
  readonly obsSeq: number;
  /**
   * Time (ms, loop clock) of row 0 of `actions`: row k is meant for
   * `startTimeMs + k * dtMs`. For Diffusion Policy, row `currentRow` is the observation's time.
   */
  readonly startTimeMs: number;
  /** Milliseconds between rows. */
  readonly dtMs: number;
  /** [horizon] rows of actionDim numbers each. */
  readonly actions: readonly Float64Array[];
  /** Wall time the policy spent computing it (as reported by the policy), ms. */
  readonly latencyMs: number;
}

/** Static facts about a chunked policy. */
export interface ChunkPolicyInfo {
  readonly actionDim: number;
  readonly observationDim: number;
  /** Rows per chunk. */
  readonly predHorizon: number;
  /** Rows meant to be executed before replanning. */
  readonly actionHorizon: number;
  /** Row of a chunk that corresponds to the time of its observation. */
  readonly currentRow: number;
  /** Milliseconds between rows (1000 / control rate). */
  readonly dtMs: number;
  /** Observation history length the policy conditions on. */
  readonly obsHorizon: number;
}

/**
 * A policy that turns the freshest observation into a chunk, asynchronously. Implementations
 * keep the session's observation history themselves: `observe` appends without asking for a
 * chunk, `requestChunk` appends and asks for one. At most one request is outstanding per loop.
 */
export interface ChunkPolicy {
  readonly info: ChunkPolicyInfo;
  observe(obs: TimedObservation): void;
  /** `opts.pinned`: rows the chunk must start with (policies that cannot pin reject the request). */
  requestChunk(obs: TimedObservation, opts?: ChunkRequestOptions): Promise<TimedChunk>;
  /** Start a new episode: forget the observation history. */
  reset(): Promise<void>;
  close(): Promise<void>;
}
