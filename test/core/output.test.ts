/** Output paths are checked before long work starts (prepareOutputDir / prepareOutputFile). */
import { mkdirSync, mkdtempSync, writeFileSync, existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareOutputDir, prepareOutputFile } from '../../src/util/output.js';
import { ValidationError } from '../../src/util/validate.js';

describe('output paths', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sf-out-'));
  const file = path.join(root, 'a-file');
  writeFileSync(file, 'x');

  it('creates missing directories, including parents', () => {
    const dir = path.join(root, 'x', 'y', 'z');
    expect(prepareOutputDir(dir)).toBe(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
    const out = path.join(root, 'p', 'q', 'demos.mcap');
    expect(prepareOutputFile(out)).toBe(out);
    expect(statSync(path.dirname(out)).isDirectory()).toBe(true);
    expect(existsSync(out)).toBe(false);
  });

  it('rejects a file where a directory is needed, a directory where a file is, and bad arguments, naming the path', () => {
    expect(() => prepareOutputDir(file, '--out')).toThrow(ValidationError);
    expect(() => prepareOutputDir(file, '--out')).toThrow(`--out '${file}': exists and is not a directory`);
    expect(() => prepareOutputDir(path.join(file, 'sub'), '--out')).toThrow(/--out '.*a-file\/sub': cannot create it \(ENOTDIR/);
    const dir = path.join(root, 'is-a-dir');
    mkdirSync(dir);
    expect(() => prepareOutputFile(dir, '--out')).toThrow(`--out '${dir}': is a directory`);
    expect(() => prepareOutputFile(path.join(file, 'x.mcap'), '--out')).toThrow(/directory '.*a-file': exists and is not a directory/);
    expect(() => prepareOutputDir('')).toThrow(/expected a non-empty path/);
    expect(() => prepareOutputFile(42 as unknown as string)).toThrow(/expected a non-empty path, received 42/);
  });
});
