/** Progress output for long commands: a bar on a TTY, JSON lines with --json, quiet otherwise. */
export interface ProgressSink {
  update(fields: Record<string, number | string>, fraction: number): void;
  done(): void;
}

export function progressSink(opts: { json: boolean; label: string; stream?: NodeJS.WriteStream }): ProgressSink {
  const stream = opts.stream ?? process.stderr;
  if (opts.json) {
    return {
      update: (fields) => process.stdout.write(JSON.stringify({ event: 'progress', task: opts.label, ...fields }) + '\n'),
      done: () => undefined,
    };
  }
  if (!stream.isTTY) {
    let lastPct = -1;
    return {
      update: (fields, fraction) => {
        const pct = Math.floor(fraction * 10) * 10;
        if (pct !== lastPct) {
          lastPct = pct;
          stream.write(`${opts.label} ${pct}% ${formatFields(fields)}\n`);
        }
      },
      done: () => undefined,
    };
  }
  const width = 30;
  return {
    update: (fields, fraction) => {
      const f = Math.max(0, Math.min(1, fraction));
      const filled = Math.round(f * width);
      stream.write(`\r${opts.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(f * 100).toFixed(0).padStart(3)}% ${formatFields(fields)}\x1b[K`);
    },
    done: () => stream.write('\n'),
  };
}

function formatFields(fields: Record<string, number | string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? (Math.abs(v) >= 1000 || Number.isInteger(v) ? v.toFixed(0) : v.toPrecision(4)) : v}`)
    .join(' ');
}
