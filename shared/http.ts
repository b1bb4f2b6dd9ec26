/** HTTP plumbing shared by every feature's routes: context variables, input reading, body limit, errors. */
import type { IncomingMessage } from "node:http";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type * as v from "valibot";
import type { Caller, Ctx } from "./context.ts";
import { AppError, describeForLog, recognizeError, toHttpError } from "./errors.ts";
import { MAX_NESTING, nestedWithin, validate } from "./validate.ts";

export type AppEnv = { Variables: { ctx: Ctx; caller: Caller } };

/** Largest request body accepted anywhere (bigger: 413). */
const MAX_BODY_BYTES = 1024 * 1024;

/**
 * Reads a request's input as one object: query parameters overlaid by a JSON object body (old agents
 * send a body even on GET), then validated with `schema`.
 */
export async function readInput<S extends v.GenericSchema>(c: Context<AppEnv>, schema: S, action: string): Promise<v.InferOutput<S>> {
  const text = await bodyText(c, action);
  let body: unknown = {};
  if (text.trim() !== "") {
    try {
      body = JSON.parse(text);
    } catch {
      throw new AppError("invalid_input", `Cannot ${action}: the request body is not valid JSON`);
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      throw new AppError("invalid_input", `Cannot ${action}: the request body must be a JSON object`);
    }
    if (!nestedWithin(body)) throw new AppError("invalid_input", `Cannot ${action}: the request body is nested more than ${MAX_NESTING} levels deep`);
  }
  return validate(schema, { ...c.req.query(), ...(body as object) }, action);
}

// The request body as text. A GET without a declared body has none: it is not read, because on
// @hono/node-server reading it builds a whole Request (the cost of a /token call, measured in bench/).
async function bodyText(c: Context<AppEnv>, action: string): Promise<string> {
  if (c.req.method !== "GET" && c.req.method !== "HEAD") return c.req.text();
  if (c.req.header("content-length") === undefined && c.req.header("transfer-encoding") === undefined) return "";
  await recoverGetBody(c, action);
  return c.req.text();
}

// GET /token with a JSON body (old agents): runtimes drop a GET body from the Request, so read it from
// the Node request (@hono/node-server serves on Node and Deno) and hand it to readInput as the body text.
async function recoverGetBody(c: Context<AppEnv>, action: string): Promise<void> {
  if (c.req.method !== "GET" || c.req.raw.body !== null) return;
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const declared = Number(c.req.header("content-length") ?? 0);
  if (!incoming) {
    if (declared > 0 || c.req.header("transfer-encoding")) {
      throw new AppError("invalid_input", `Cannot ${action}: this server cannot read a GET request body; send the fields as query parameters or POST them`);
    }
    return;
  }
  const tooLarge = () => {
    // As limitBody does: the unread rest of the body makes the connection unusable for a next request.
    c.header("Connection", "close");
    return new AppError("payload_too_large", `Request body exceeds ${MAX_BODY_BYTES} bytes`);
  };
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const decoder = new TextDecoder();
  let text = "";
  let size = 0;
  for await (const chunk of incoming as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    text += decoder.decode(chunk, { stream: true });
  }
  // Hono's body cache is what c.req.text() (and so readInput) reads first.
  if (size > 0) c.req.bodyCache.text = text + decoder.decode();
}

// Connection: close, because the unread rest of the body makes the connection unusable for a next request.
const payloadTooLarge = (c: Context<AppEnv>) => {
  c.header("Connection", "close");
  return errorJson(c, 413, { code: "payload_too_large", message: `Request body exceeds ${MAX_BODY_BYTES} bytes` });
};
// Counts the bytes of a body sent without a length (chunked).
const limitStreamedBody: MiddlewareHandler<AppEnv> = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: payloadTooLarge });

/** Middleware: the body size limit (MAX_BODY_BYTES), answering 413 with the JSON error body. */
export function limitBody(): MiddlewareHandler<AppEnv> {
  return function limitBody(c, next) {
    // A GET or HEAD reaches the routes without a body (recoverGetBody limits an old agent's GET body itself).
    if (c.req.method === "GET" || c.req.method === "HEAD") return next();
    // A declared length is checked without touching the body, which keeps @hono/node-server's direct body
    // read; hono's bodyLimit would build a whole Request first.
    const length = c.req.header("content-length");
    if (length !== undefined && c.req.header("transfer-encoding") === undefined) {
      return Number.parseInt(length, 10) > MAX_BODY_BYTES ? Promise.resolve(payloadTooLarge(c)) : next();
    }
    return limitStreamedBody(c, next);
  };
}

/** Maps any error to its JSON error body; internal errors are logged with the request id only. */
export function onHttpError(err: Error, c: Context<AppEnv>): Response {
  // The id ties the caller's "Internal error (request …)" to the log line; only errors need one.
  const requestId = crypto.randomUUID().slice(0, 8);
  const { status, body } = toHttpError(recognizeError(err), requestId);
  if (status === 500) c.get("ctx")?.log.error("Internal error", { requestId, path: c.req.path, error: describeForLog(err) });
  // A busy or unreachable database is worth another try shortly.
  if (status === 503) c.header("Retry-After", "1");
  return errorJson(c, status, body.error);
}

/**
 * An error answer: {"error": {"code", "message"}}, except under /v0.1/, the official MCP Registry API
 * (features/registry_api), whose specification answers {"error": "<message>"}.
 */
export function errorJson(c: Context<AppEnv>, status: number, error: { code: string; message: string }): Response {
  const official = c.req.path === "/v0.1" || c.req.path.startsWith("/v0.1/");
  return c.json(official ? { error: error.message } : { error }, status as 400);
}
