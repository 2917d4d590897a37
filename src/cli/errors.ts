/** User errors: printed as one line without a stack trace, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function isUserError(err: unknown): err is Error {
  return err instanceof Error && (err.name === 'UsageError' || err.name === 'ValidationError');
}
