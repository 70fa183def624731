/**
 * Errors the HTTP API answers with: a status and a stable code (`{error:{code,message}}`),
 * so clients branch on the code. Every code is in collector/http/README.md and in the
 * README's error table.
 */
import { PatchwardenError } from '../../shared/errors.ts';

export type ApiStatus = 400 | 401 | 403 | 404 | 409 | 413 | 429 | 500 | 503;

export class ApiError extends PatchwardenError {
  readonly status: ApiStatus;

  constructor(status: ApiStatus, code: string, message: string, options?: { cause?: unknown }) {
    super(message, code, options);
    this.status = status;
  }
}

export const badRequest = (message: string) => new ApiError(400, 'PW_ERR_BAD_REQUEST', message);
export const badCursor = (message: string) => new ApiError(400, 'PW_ERR_BAD_CURSOR', message);
export const unauthenticated = (message: string) => new ApiError(401, 'PW_ERR_UNAUTHENTICATED', message);
export const forbidden = (message: string) => new ApiError(403, 'PW_ERR_FORBIDDEN', message);
export const notFound = (message: string) => new ApiError(404, 'PW_ERR_NOT_FOUND', message);
export const conflict = (message: string) => new ApiError(409, 'PW_ERR_CONFLICT', message);

/** 429 PW_ERR_RATE_LIMITED: the answer carries `Retry-After: <retryAfterSeconds>`. */
export class RateLimitedError extends ApiError {
  readonly retryAfterSeconds: number;

  constructor(message: string, retryAfterSeconds: number) {
    super(429, 'PW_ERR_RATE_LIMITED', message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}
