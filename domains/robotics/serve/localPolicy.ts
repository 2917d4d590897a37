/**
 * A `ChunkPolicy` served in this process: one session on a `PolicyHost` (usually backed by a
 * `WorkerEngine`, so inference runs on another thread and the control loop's timers stay on
 * time). It goes through the same validation, history and batching as remote clients.
 */
import { decode, encode } from '../../../src/proto/registry.js';
import type { ChunkPolicy, ChunkPolicyInfo, ChunkRequestOptions, TimedChunk, TimedObservation } from '../control/types.js';
import { chunkPolicyInfo, observationMessage, timedChunk } from './chunks.js';
import { HostSession, PolicyHost, SessionError } from './host.js';

export class LocalPolicy implements ChunkPolicy {
  readonly info: ChunkPolicyInfo;
  private session: HostSession;
  private waiter: { seq: number; resolve: (c: TimedChunk) => void; reject: (e: Error) => void } | undefined;
  private closed = false;
  private resetPending = false;

  constructor(private readonly host: PolicyHost) {
    // Round-trip the info through its wire form so local and remote policies see the same thing.
    this.info = chunkPolicyInfo(decode('scoreflow.v1.PolicyInfo', encode('scoreflow.v1.PolicyInfo', host.policyInfo())));
    this.session = this.open();
  }

  private open(): HostSession {
    return this.host.openSession({
      chunk: (msg) => {
        const w = this.waiter;
        if (!w || BigInt(w.seq) !== BigInt(msg.obsSeq ?? -1)) return;
        this.waiter = undefined;
        try {
          // Encode/decode keeps one conversion path for every transport (and copies the bytes).
          w.resolve(timedChunk(decode('scoreflow.v1.ActionChunk', encode('scoreflow.v1.ActionChunk', msg)), this.info));
        } catch (err) {
          w.reject(err as Error);
        }
      },
      error: (err) => {
        this.waiter?.reject(err);
        this.waiter = undefined;
        // A failed session (bad observation, engine crash) is replaced so the loop can go on.
        if (!this.closed) this.session = this.open();
      },
    });
  }

  private push(obs: TimedObservation, historyOnly: boolean, opts?: ChunkRequestOptions): SessionError | undefined {
    const msg = decode('scoreflow.v1.Observation', encode('scoreflow.v1.Observation', observationMessage(obs, '', historyOnly, this.resetPending, opts?.pinned)));
    this.resetPending = false;
    return this.session.push(msg);
  }

  observe(obs: TimedObservation): void {
    if (this.closed) return;
    this.push(obs, true);
  }

  requestChunk(obs: TimedObservation, opts?: ChunkRequestOptions): Promise<TimedChunk> {
    if (this.closed) return Promise.reject(new Error('requestChunk: policy is closed'));
    this.waiter?.reject(new Error(`superseded by observation ${obs.seq}`));
    return new Promise<TimedChunk>((resolve, reject) => {
      this.waiter = { seq: obs.seq, resolve, reject };
      let err: SessionError | undefined;
      try {
        err = this.push(obs, false, opts);
      } catch (e) {
        err = new SessionError('INVALID_ARGUMENT', (e as Error).message);
      }
      if (err && this.waiter?.seq === obs.seq) {
        this.waiter = undefined;
        reject(err);
      }
    });
  }

  /** Start a new episode: the next observation clears the session's history first. */
  async reset(): Promise<void> {
    this.resetPending = true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiter?.reject(new Error('policy closed'));
    this.waiter = undefined;
    this.session.close();
  }
}
