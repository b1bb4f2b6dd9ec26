/** The one error type of the registry, and how HTTP and MCP report it. */

/** Error codes a caller can see, with their HTTP status. */
export const ERROR_STATUS = {
  invalid_input: 400,
  unauthorized: 401,
  token_missing: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unavailable: 502,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** An expected failure with a message safe to show to the caller. */
export class AppError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = "AppError";
  }
}

/** HTTP status and JSON body for any thrown value; internals never leak. */
export function toHttpError(err: unknown, requestId: string): { status: number; body: { error: { code: string; message: string } } } {
  if (err instanceof AppError) {
    return { status: ERROR_STATUS[err.code], body: { error: { code: err.code, message: err.message } } };
  }
  return { status: 500, body: { error: { code: "internal", message: `Internal error (request ${requestId})` } } };
}

/** MCP tool result for any thrown value; internals never leak. */
export function toToolError(err: unknown, requestId: string): { isError: true; content: { type: "text"; text: string }[] } {
  const text = err instanceof AppError ? err.message : `Internal error (request ${requestId})`;
  return { isError: true, content: [{ type: "text", text }] };
}
