/**
 * Gym-style environment contract shared by every robotics environment.
 *
 * Observations and actions are plain Float64Array vectors (no tensors): environments
 * are physics code and must not depend on the tensor backend. Environments never
 * silently clamp a NaN into a valid state: `step` validates its action and throws.
 */

/** Description of a box-shaped vector space. */
export interface BoxSpec {
  /** Number of entries in the vector. */
  readonly size: number;
  /** Per-entry lower bound (inclusive). */
  readonly low: readonly number[];
  /** Per-entry upper bound (inclusive). */
  readonly high: readonly number[];
  /** Human-readable name of each entry, e.g. ['agent_x', 'agent_y']. */
  readonly names: readonly string[];
}

export interface StepResult {
  /** Observation after the step. */
  readonly observation: Float64Array;
  /** Scalar reward of this step. */
  readonly reward: number;
  /** True when the task is solved (episode ends successfully). */
  readonly terminated: boolean;
  /** True when the episode hit its step limit. */
  readonly truncated: boolean;
  /** Environment-specific diagnostics (coverage, goal distance, collisions, ...). */
  readonly info: Readonly<Record<string, number | boolean | string>>;
}

/** A 2D scene description, enough for a renderer (SVG, three.js, Foxglove) to draw the state. */
export interface SceneShape {
  readonly kind: 'polygon' | 'circle' | 'segment';
  readonly label: string;
  /** Polygon vertices or segment end points, in world units. */
  readonly points?: readonly (readonly [number, number])[];
  /** Circle centre and radius. */
  readonly center?: readonly [number, number];
  readonly radius?: number;
  readonly color?: string;
}

export interface Scene {
  readonly width: number;
  readonly height: number;
  readonly shapes: readonly SceneShape[];
}

export interface Env<State = Float64Array> {
  /** Registered name, e.g. 'pusht' or 'arm-reach'. */
  readonly name: string;
  readonly observationSpec: BoxSpec;
  readonly actionSpec: BoxSpec;
  /** Control period in seconds (1 / control rate). */
  readonly dt: number;
  readonly maxSteps: number;
  /** Reset from a seed (reproducible) or from an explicit state. Returns the first observation. */
  reset(init?: { seed?: number; state?: State }): Float64Array;
  /** Apply one action for one control period. Throws on wrong size or non-finite entries. */
  step(action: ArrayLike<number>): StepResult;
  /** Current full state (enough to reset to exactly this point). */
  getState(): State;
  /** Scene description of the current state. */
  render(): Scene;
  /** Release native resources (physics worlds, wasm memory). Idempotent. */
  close(): void;
}
