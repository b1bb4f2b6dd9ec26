/** The one error type of the registry, and how HTTP and MCP report it. */

/** Error codes a caller can see, with their HTTP status. */
const ERROR_STATUS = {
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
  /** An HTTP status other than the code's (503 for a busy database, 502 for a failing downstream service). */
  readonly status: number;
  constructor(code: ErrorCode, message: string, status: number = ERROR_STATUS[code]) {
    super(message);
    this.code = code;
    this.status = status;
    this.name = "AppError";
  }
}

// What a database driver says when it cannot be reached or is shutting down, along an error's cause chain:
// PostgreSQL's connection classes (08, 57P0x, 53300 too many connections, 3D000 database gone), postgres.js' and Node's own codes.
const UNREACHABLE = /^(08...|57P0[1-3]|53300|3D000|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|CONNECTION_(CLOSED|ENDED|DESTROYED)|CONNECT_TIMEOUT)$/;

/**
 * The database errors this process met, for features/metrics: `unreachable`, each error recognizeError maps
 * to "unavailable" (counted once, however often it is looked at); `busy`, each wait for a local SQLite
 * file's write lock that ran out (shared/db/sqlite.ts).
 */
export const databaseErrors = { unreachable: 0, busy: 0 };
const counted = new WeakSet<object>();

/** The AppError an expected failure of the platform stands for (an unreachable database), or the error itself. */
export function recognizeError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 8; e = e.cause as typeof e, depth++) {
    if (e instanceof AppError) return e;
    if (typeof e.code === "string" && UNREACHABLE.test(e.code)) {
      if (!counted.has(err as object)) {
        counted.add(err as object);
        databaseErrors.unreachable++;
      }
      return new AppError("unavailable", "The database is unavailable; try again", 503);
    }
  }
  return err;
}

/** HTTP status and JSON body for any thrown value; internals never leak. */
export function toHttpError(err: unknown, requestId: string): { status: number; body: { error: { code: string; message: string } } } {
  if (err instanceof AppError) {
    return { status: err.status, body: { error: { code: err.code, message: err.message } } };
  }
  return { status: 500, body: { error: { code: "internal", message: `Internal error (request ${requestId})` } } };
}

/** MCP tool result for any thrown value; internals never leak. */
export function toToolError(err: unknown, requestId: string): { isError: true; content: { type: "text"; text: string }[] } {
  const text = err instanceof AppError ? err.message : `Internal error (request ${requestId})`;
  return { isError: true, content: [{ type: "text", text }] };
}

/**
 * An unexpected error as one log line's text, without the values of a failed statement: drizzle's message
 * and stack quote every parameter (a user id, a ciphertext), so a failed query is logged as its SQL text
 * (placeholders only), the database's code and message, and the stack frames.
 */
export function describeForLog(err: unknown): string {
  const e = err as { query?: unknown; params?: unknown; cause?: { code?: unknown; message?: unknown }; stack?: unknown } | undefined;
  if (!isFailedQuery(e)) return String(e?.stack ?? err);
  const frames = String(e.stack ?? "")
    .split("\n")
    .filter((line) => /^\s+at /.test(line));
  const cause = e.cause ? ` (${[e.cause.code, e.cause.message].filter(Boolean).join(": ")})` : "";
  return [`Failed query: ${e.query}${cause}`, ...frames].join("\n");
}

/** A failure's one-line reason for a log line: its message, or for a failed query its SQL text without values. */
export function logReason(err: unknown): string {
  const known = recognizeError(err);
  return isFailedQuery(known) ? describeForLog(known).split("\n")[0] : String((known as Error)?.message ?? known);
}

function isFailedQuery(err: unknown): err is { query: string; params: unknown; cause?: { code?: unknown; message?: unknown }; stack?: unknown } {
  return typeof (err as { query?: unknown })?.query === "string" && "params" in (err as object);
}
