/**
 * Clocks for the control loop: the monotonic system clock (default) and a virtual clock that
 * tests advance by hand. Both speak milliseconds.
 */
import { performance } from 'node:perf_hooks';

/** What the loop needs from a clock: a monotonic time and one-shot timers. */
export interface LoopClock {
  /** Monotonic time, ms. */
  now(): number;
  /** Call `fn` once, `delayMs` from now (never synchronously). Returns a cancel function. */
  setTimer(fn: () => void, delayMs: number): () => void;
}

export interface SystemClockOptions {
  /**
   * Busy-wait (by re-queuing `setImmediate`) through the last `spinMs` milliseconds before a
   * timer is due. Node timers have 1 ms resolution and, measured on this machine, fire up to
   * ~1 ms early or late; spinning the last millisecond brings lateness to ~0.01 ms at the price
   * of that millisecond of CPU per timer (about 5% of a core at 50 Hz). Default 0: no spinning;
   * a timer that wakes less than 1 ms before its due time fires then (so measured "lateness"
   * can be slightly negative, down to about -1 ms).
   */
  readonly spinMs?: number;
}

/**
 * `performance.now()` and `setTimeout`. A timer that wakes up early by 1 ms or more re-arms
 * itself for the remainder, so callers can schedule on absolute times without drifting.
 */
export function systemClock(options: SystemClockOptions = {}): LoopClock {
  const spinMs = options.spinMs ?? 0;
  if (!Number.isFinite(spinMs) || spinMs < 0 || spinMs > 5) {
    throw new RangeError(`systemClock: spinMs: expected a number in [0, 5], received ${String(options.spinMs)}`);
  }
  return {
    now: () => performance.now(),
    setTimer(fn, delayMs) {
      const due = performance.now() + Math.max(0, delayMs);
      let cancelled = false;
      let timeout: ReturnType<typeof setTimeout> | undefined;
      let immediate: ReturnType<typeof setImmediate> | undefined;
      const check = (): void => {
        timeout = undefined;
        immediate = undefined;
        if (cancelled) return;
        const remaining = due - performance.now();
        if (remaining >= Math.max(1, spinMs)) timeout = setTimeout(check, remaining - spinMs);
        else if (spinMs > 0 && remaining > 0) immediate = setImmediate(check);
        else fn();
      };
      if (delayMs <= 0) immediate = setImmediate(check);
      else timeout = setTimeout(check, Math.max(0, delayMs - spinMs));
      return () => {
        cancelled = true;
        if (timeout !== undefined) clearTimeout(timeout);
        if (immediate !== undefined) clearImmediate(immediate);
      };
    },
  };
}

interface VirtualTimer {
  readonly due: number;
  readonly order: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to. Timers fire exactly at their due time, in due-time order
 * (ties in scheduling order), and the promise microtasks they trigger (a policy resolving its
 * chunk, the loop's `.then`) run before the next timer fires.
 */
export class VirtualClock implements LoopClock {
  private t: number;
  private seq = 0;
  private timers: VirtualTimer[] = [];

  constructor(startMs = 0) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, delayMs: number): () => void {
    const timer: VirtualTimer = { due: this.t + Math.max(0, delayMs), order: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }

  /** Timers not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.timers.filter((x) => !x.cancelled).length;
  }

  /** Advance time by `ms`, firing every timer that falls due (including ones scheduled meanwhile). */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`VirtualClock.advance: ms: expected >= 0, received ${ms}`);
    const target = this.t + ms;
    await flushMicrotasks();
    for (;;) {
      this.timers = this.timers.filter((x) => !x.cancelled);
      let next: VirtualTimer | undefined;
      for (const x of this.timers) {
        if (x.due <= target && (next === undefined || x.due < next.due || (x.due === next.due && x.order < next.order))) next = x;
      }
      if (next === undefined) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.t = Math.max(this.t, next.due);
      next.fn();
      await flushMicrotasks();
    }
    this.t = target;
  }

  /**
   * Move time forward by `ms` without firing anything, as if the event loop were blocked;
   * overdue timers fire late on the next `advance`.
   */
  stall(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`VirtualClock.stall: ms: expected >= 0, received ${ms}`);
    this.t += ms;
  }
}

/** Let every queued promise callback run (one macrotask turn). */
function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
