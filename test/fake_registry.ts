/**
 * A fake upstream registry speaking the official MCP Registry API v0.1 (GET /v0.1/servers, paged by an opaque
 * cursor), for import tests. It can also misbehave on purpose: endless cursors, huge pages, slow answers,
 * error statuses, non-JSON bodies and redirects.
 */
import { createServer, type ServerResponse } from "node:http";

export type FakeRegistryOptions = {
  /** The server.json documents to serve, in order (invalid ones too, on purpose). */
  servers: unknown[];
  /** Servers per page (default 2); the `limit` query parameter is recorded but ignored. */
  pageSize?: number;
  /** Every page hands out a fresh nextCursor and the first page's servers again, forever. */
  endlessCursor?: boolean;
  /** Pads every page with `metadata.padding` of this many bytes. */
  pageBytes?: number;
  /** Waits this long before answering (the wait ends with close() or when the client goes away). */
  delayMs?: number;
  /** Answers every request with this status (default 200 when only `body` is given). */
  status?: number;
  /** Answers every request with this raw body, labelled application/json whether or not it is JSON. */
  body?: string;
  /** Answers every request with 302 and this exact Location. */
  redirectTo?: string;
};

export type FakeRegistry = {
  /** Base URL, without a trailing slash: the list is at `${url}/v0.1/servers`. */
  url: string;
  /** Path and query of every request received, in order. */
  requests: string[];
  close(): Promise<void>;
};

const OFFICIAL_META = {
  "io.modelcontextprotocol.registry/official": { status: "active", isLatest: true, publishedAt: "2025-01-01T00:00:00Z", updatedAt: "2025-01-01T00:00:00Z" },
};

// Opaque to the client, as the spec requires; a client that builds its own cursors would get 400.
const encodeCursor = (offset: number): string => Buffer.from(`offset:${offset}`).toString("base64url");

function decodeCursor(cursor: string): number | undefined {
  const m = /^offset:(\d+)$/.exec(Buffer.from(cursor, "base64url").toString());
  return m ? Number(m[1]) : undefined;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/** The ServerList page starting at `offset`. */
function page(options: FakeRegistryOptions, offset: number): unknown {
  const size = Math.max(1, options.pageSize ?? 2);
  const start = options.endlessCursor ? 0 : offset;
  const servers = options.servers.slice(start, start + size).map((server) => ({ server, _meta: OFFICIAL_META }));
  const more = options.endlessCursor || offset + size < options.servers.length;
  const metadata = {
    ...(more ? { nextCursor: encodeCursor(offset + size) } : {}),
    count: servers.length,
    ...(options.pageBytes ? { padding: "x".repeat(options.pageBytes) } : {}),
  };
  return { servers, metadata };
}

function answer(options: FakeRegistryOptions, method: string, rawUrl: string, res: ServerResponse): void {
  if (options.redirectTo) return void res.writeHead(302, { location: options.redirectTo }).end();
  if (options.status !== undefined || options.body !== undefined) {
    res.writeHead(options.status ?? 200, { "content-type": "application/json" }).end(options.body ?? JSON.stringify({ error: "Fake failure" }));
    return;
  }
  const url = new URL(rawUrl, "http://127.0.0.1");
  if (method !== "GET" || url.pathname !== "/v0.1/servers") return void json(res, 404, { error: "Not found" });
  const cursor = url.searchParams.get("cursor");
  const offset = cursor === null ? 0 : decodeCursor(cursor);
  if (offset === undefined) return void json(res, 400, { error: "Invalid cursor" });
  json(res, 200, page(options, offset));
}

/** Starts the fake on 127.0.0.1 and a free port. */
export async function startFakeRegistry(options: FakeRegistryOptions): Promise<FakeRegistry> {
  const requests: string[] = [];
  const waiting = new Set<NodeJS.Timeout>();
  const server = createServer((req, res) => {
    const rawUrl = req.url ?? "/";
    requests.push(rawUrl);
    if (!options.delayMs) return answer(options, req.method ?? "GET", rawUrl, res);
    const timer = setTimeout(() => {
      waiting.delete(timer);
      answer(options, req.method ?? "GET", rawUrl, res);
    }, options.delayMs);
    waiting.add(timer);
    // A client that gave up (its timeout under test) must not leave a timer behind.
    res.once("close", () => {
      clearTimeout(timer);
      waiting.delete(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of waiting) clearTimeout(timer);
        waiting.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
