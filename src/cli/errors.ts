import { DataError, ValidationError } from '../util/validate.js';

/** User errors: printed as one line without a stack trace, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Errors caused by the caller's arguments or input files (UsageError, ValidationError, DataError and its subclasses). */
export function isUserError(err: unknown): err is Error {
  return err instanceof UsageError || err instanceof ValidationError || err instanceof DataError || (err instanceof Error && (err.name === 'UsageError' || err.name === 'ValidationError' || err.name === 'DataError'));
}
