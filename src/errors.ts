/**
 * One error type with a kind (STYLE.md practice 9). Domain code throws
 * CaError; only the HTTP error middleware turns a kind into a status code and
 * the contract's JSON body. `code` is the stable camelCase code clients see.
 */
export type ErrorKind =
  | 'badRequest' // 400
  | 'unauthorized' // 401
  | 'forbidden' // 403
  | 'notFound' // 404
  | 'conflict' // 409
  | 'tooLarge' // 413
  | 'policy' // 422
  | 'rateLimited' // 429
  | 'unavailable' // 503
  | 'internal'; // 500

export const STATUS_OF: Record<ErrorKind, number> = {
  badRequest: 400,
  unauthorized: 401,
  forbidden: 403,
  notFound: 404,
  conflict: 409,
  tooLarge: 413,
  policy: 422,
  rateLimited: 429,
  unavailable: 503,
  internal: 500,
};

export class CaError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    /** extra response headers, e.g. Retry-After */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'CaError';
  }
}

/** A setting that is missing or invalid: start-up stops with one line naming it. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** Start-up cannot go on (HSM key mismatch, store tampered, ...): one clear line, exit non-zero. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}
