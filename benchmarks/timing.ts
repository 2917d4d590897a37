/** Timing helpers shared by the benchmarks. */

export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

export interface CallTiming {
  readonly medianMs: number;
  readonly minMs: number;
  /** Median CPU time (user + system) per call: robust against other processes on the machine. */
  readonly cpuMs: number;
  readonly reps: number;
  /** timeBlocks only: the median CPU time of each block, in round order (for paired ratios). */
  readonly blockCpuMs?: readonly number[];
}

/**
 * The median over rounds of a[r] / b[r]: a ratio of two functions timed in the same rounds
 * of `timeBlocks`, each round's pair measured minutes apart at most, so a machine whose speed
 * drifts between rounds moves both terms of each ratio together.
 */
export function pairedRatio(a: CallTiming, b: CallTiming): number {
  const x = a.blockCpuMs;
  const y = b.blockCpuMs;
  if (!x || !y || x.length !== y.length || x.length === 0) throw new Error('pairedRatio: both timings must come from the same timeBlocks call');
  return median(x.map((v, i) => v / y[i]));
}

/** Run `fn` `warmup` times, then time `reps` calls (wall and CPU). */
export function timeCalls(fn: () => void, reps: number, warmup = 2): CallTiming {
  for (let i = 0; i < warmup; i++) fn();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < reps; i++) timeOnce(fn, wall, cpu);
  return { medianMs: median(wall), minMs: Math.min(...wall), cpuMs: median(cpu), reps };
}

/** Deterministic pseudo-random values in [-scale, scale) (LCG), so compared variants see the same numbers. */
export function pseudoRandom(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}

/** One call of `f`: its wall and CPU milliseconds are pushed onto `wall` and `cpu`. */
function timeOnce(f: () => void, wall: number[], cpu: number[]): void {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  f();
  wall.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1000);
}

/**
 * Time several functions round-robin (one call of each per round), so a slow stretch of a
 * shared machine falls on all of them alike; ratios between them are then far steadier
 * than from back-to-back blocks of calls.
 */
export function timeInterleaved(fns: readonly (() => void)[], reps: number, warmup = 2): CallTiming[] {
  for (let i = 0; i < warmup; i++) for (const f of fns) f();
  const wall = fns.map(() => [] as number[]);
  const cpu = fns.map(() => [] as number[]);
  for (let i = 0; i < reps; i++) {
    fns.forEach((f, j) => timeOnce(f, wall[j], cpu[j]));
  }
  return fns.map((_, j) => ({ medianMs: median(wall[j]), minMs: Math.min(...wall[j]), cpuMs: median(cpu[j]), reps }));
}

/**
 * Time several functions in alternating blocks: each round runs, for each function in turn,
 * one untimed call and then `block` timed calls. Within a block a function meets the caches
 * and packed weights its own previous call left, as in a loop of training steps or of
 * sampler steps; alternating the blocks lets slow stretches of a shared machine fall on all
 * of them alike. (Calling them round-robin one call at a time is steadier still, but then
 * every call starts with caches the others filled: a forward pass of the 3-layer MLP measured
 * that way took ~20% longer than in a loop of forward passes.)
 */
export function timeBlocks(fns: readonly (() => void)[], rounds: number, block: number): CallTiming[] {
  const wall = fns.map(() => [] as number[]);
  const cpu = fns.map(() => [] as number[]);
  const blocks = fns.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    fns.forEach((f, j) => {
      f();
      for (let i = 0; i < block; i++) timeOnce(f, wall[j], cpu[j]);
      blocks[j].push(median(cpu[j].slice(-block)));
    });
  }
  return fns.map((_, j) => ({ medianMs: median(wall[j]), minMs: Math.min(...wall[j]), cpuMs: median(cpu[j]), reps: rounds * block, blockCpuMs: blocks[j] }));
}
