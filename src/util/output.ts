/**
 * Output paths checked before long work starts: a training run or a collection that can only
 * fail when it writes its result would lose minutes or hours of work to a mistyped path.
 */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fail } from './validate.js';

function reason(err: unknown): string {
  return String((err as Error)?.message ?? err);
}

function statOrUndefined(p: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

/** Create `dir` (and its parents) if needed and check it is a writable directory. Returns `dir`. */
export function prepareOutputDir(dir: string, what = 'output directory'): string {
  if (typeof dir !== 'string' || dir.length === 0) fail(`${what}: expected a non-empty path, received ${JSON.stringify(dir)}`);
  const before = statOrUndefined(dir);
  if (before && !before.isDirectory()) fail(`${what} '${dir}': exists and is not a directory`);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    fail(`${what} '${dir}': cannot create it (${reason(err)})`);
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (err) {
    fail(`${what} '${dir}': not writable (${reason(err)})`);
  }
  return dir;
}

/**
 * Check that `file` can be written: its directory is created if needed and must be writable,
 * and the file itself, if it exists, must not be a directory. The file is not created.
 */
export function prepareOutputFile(file: string, what = 'output file'): string {
  if (typeof file !== 'string' || file.length === 0) fail(`${what}: expected a non-empty path, received ${JSON.stringify(file)}`);
  prepareOutputDir(path.dirname(path.resolve(file)), `${what} '${file}': directory`);
  if (statOrUndefined(file)?.isDirectory()) fail(`${what} '${file}': is a directory`);
  return file;
}
