/** A fixed-capacity window of samples (the newest `capacity` are kept) with percentiles. */
export class SampleWindow {
  private readonly buf: Float64Array;
  private head = 0;
  private size = 0;
  private maxValue = -Infinity;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`SampleWindow: capacity: expected a positive integer, received ${capacity}`);
    this.buf = new Float64Array(capacity);
  }

  push(v: number): void {
    this.buf[this.head] = v;
    this.head = (this.head + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
    if (v > this.maxValue) this.maxValue = v;
  }

  get count(): number {
    return this.size;
  }

  /** Largest sample pushed since the last `clear` (even if it has left the ring); NaN when empty. */
  max(): number {
    return this.size === 0 ? NaN : this.maxValue;
  }

  /** Nearest-rank percentiles (q in [0, 1]) of the kept samples; NaN when empty. */
  percentiles(qs: readonly number[]): number[] {
    if (this.size === 0) return qs.map(() => NaN);
    const sorted = this.buf.slice(0, this.size).sort();
    return qs.map((q) => sorted[Math.min(this.size - 1, Math.max(0, Math.ceil(q * this.size) - 1))]!);
  }

  clear(): void {
    this.head = 0;
    this.size = 0;
    this.maxValue = -Infinity;
  }
}
