/** Validation of `PinnedRows`, shared by every policy that honours them (served, simulated). */
import { checkNumber, fail } from '../../../src/util/validate.js';
import type { PinnedRows } from './types.js';

/** Shapes the pins are checked against: `rows` is the number of rows a returned chunk has. */
export interface PinShape {
  readonly obsHorizon: number;
  readonly rows: number;
  readonly actionDim: number;
}

/**
 * Check pins against a policy's shapes; throws a message naming what is wrong. The first row may
 * go back to -(obsHorizon - 1); at least one returned row stays free.
 */
export function checkPinnedRows(shape: PinShape, pins: PinnedRows, where = 'pinned'): void {
  if (!pins || typeof pins !== 'object') fail(`${where}: expected { firstRow, rows }`);
  checkNumber(`${where}.firstRow`, pins.firstRow, { integer: true, min: -(shape.obsHorizon - 1), max: 0 });
  if (!Array.isArray(pins.rows)) fail(`${where}.rows: expected an array of actions`);
  const maxRows = shape.rows - 1 - pins.firstRow;
  if (pins.rows.length > maxRows) fail(`${where}.rows: at most ${maxRows} rows from row ${pins.firstRow} (the chunk has ${shape.rows} rows and one must stay free), received ${pins.rows.length}`);
  pins.rows.forEach((r, k) => {
    if (!(r instanceof Float64Array) || r.length !== shape.actionDim) fail(`${where}.rows[${k}]: expected a Float64Array of ${shape.actionDim} values`);
    for (let i = 0; i < r.length; i++) if (!Number.isFinite(r[i])) fail(`${where}.rows[${k}][${i}] is ${r[i]}; pinned actions must be finite`);
  });
}
