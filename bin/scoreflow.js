#!/usr/bin/env node
// Entry point of the `scoreflow` command. In a source checkout it runs the TypeScript sources
// (through tsx), so it never runs a stale build; an installed package (no sources) runs dist/.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'domains', 'cli.ts');
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
} else {
  await import(pathToFileURL(join(root, 'dist', 'domains', 'cli.js')).href);
}
