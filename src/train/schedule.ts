/** Learning-rate schedules: linear warmup then cosine decay to minLr (or constant). */
import { checkNumber, checkOneOf } from '../util/validate.js';

export interface LrSchedule {
  readonly kind: 'cosine' | 'constant';
  readonly lr: number;
  readonly warmup?: number;
  readonly minLr?: number;
}

export function learningRate(s: LrSchedule, step: number, totalSteps: number): number {
  checkOneOf('schedule.kind', s.kind, ['cosine', 'constant']);
  const lr = checkNumber('schedule.lr', s.lr, { min: 0 });
  const warmup = s.warmup ?? 0;
  if (warmup > 0 && step < warmup) return (lr * (step + 1)) / warmup;
  if (s.kind === 'constant') return lr;
  const minLr = s.minLr ?? 0;
  const span = Math.max(1, totalSteps - warmup);
  const p = Math.min(1, Math.max(0, (step - warmup) / span));
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * p));
}
