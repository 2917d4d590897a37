/** Small typed wrapper over node:util parseArgs with errors a user can act on. */
import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; default?: string | boolean; short?: string }>;

export function parse(argv: string[], options: OptionSpec, usage: string): Record<string, string | boolean | undefined> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'\n${usage}`);
    return values as Record<string, string | boolean | undefined>;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
}

export function intOpt(v: string | boolean | undefined, name: string, fallback: number, min = -Infinity): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min) throw new UsageError(`--${name}: expected an integer >= ${min}, received '${String(v)}'`);
  return n;
}

export function numOpt(v: string | boolean | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n)) throw new UsageError(`--${name}: expected a number, received '${String(v)}'`);
  return n;
}

export function choiceOpt<T extends string>(v: string | boolean | undefined, name: string, allowed: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !allowed.includes(v as T)) throw new UsageError(`--${name}: unknown value '${String(v)}' (expected one of ${allowed.join(', ')})`);
  return v as T;
}
