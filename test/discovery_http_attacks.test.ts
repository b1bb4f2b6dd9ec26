/**
 * Attacks on discovery over streamable HTTP as plain POSTs (shared/post.ts, features/services/discovery.ts),
 * from a downstream service the attacker controls: hand-written node:http servers that stall, trickle,
 * overflow the answer limit (declared or grown), stream SSE notifications, answer with the wrong id, redirect
 * (wrong status, too many hops, another origin, garbage Location), echo the credential back, close kept-alive
 * connections as they are reused under concurrency, send huge headers or switch protocols. Each test asserts the
 * exact outcome. Four of them found bugs, fixed since (their comments say what was wrong).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { discoverService } from "../features/services/discovery.ts";
import { loadConfig } from "../shared/config.ts";
import { AppError } from "../shared/errors.ts";
import { call, fails, type HandWrittenService, type RpcMessage, startHandWrittenService, startTestRegistry, type TestRegistry, waitFor } from "./helpers.ts";

type Msg = RpcMessage;
const INIT = { protocolVersion: "2025-06-18", capabilities: { tools: {} }, serverInfo: { name: "hostile", version: "1.0.0" } };
const TOOLS = { tools: [{ name: "kept", inputSchema: { type: "object" } }] };
const SMALL = { ...loadConfig({}).limits, answerBytes: 65_536 };
const TOO_LARGE = "answered with more than 65536 bytes (REGISTRY_MAX_DISCOVERY_BYTES)";
const TOKEN = "s3cret-0123456789abcdefghij";
const rpc = (id: unknown, result: unknown) => JSON.stringify({ jsonrpc: "2.0", id, result });
const json = (res: ServerResponse, body: string, status = 200) => res.writeHead(status, { "content-type": "application/json" }).end(body);

type Handler = (m: Msg, req: IncomingMessage, res: ServerResponse) => boolean | undefined;
type Service = HandWrittenService;
const started: Service[] = [];
afterAll(() => Promise.all(started.map((s) => s.stop())));

/** A hand-written service (test/helpers.ts), stopped after the file: `handle` answers what it wants to, the rest is a well-behaved MCP server. */
async function service(handle: Handler = () => undefined): Promise<Service> {
  const s = await startHandWrittenService(handle, { tools: TOOLS.tools });
  started.push(s);
  return s;
}

/** The message discovery fails with (an AppError, never anything else), and how long it took. */
async function failure(url: string, opts: { timeoutMs?: number; headers?: Record<string, string>; limits?: typeof SMALL } = {}) {
  const t0 = Date.now();
  const err = await discoverService(url, { timeoutMs: 5000, wantDescription: false, ...opts }).then(
    () => new Error("discovery succeeded"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return { message: (err as AppError).message, ms: Date.now() - t0 };
}
const streamableFailed = (url: string, reason: string, sse = "HTTP 405") => `no MCP service answered at "${url}" (streamable HTTP: ${reason}; SSE: ${sse})`;

/** A handler answering `method` (or, given a path, any request to it) with `answer`; the rest is left to the well-behaved server. */
function on(method: string, answer: (m: Msg, req: IncomingMessage, res: ServerResponse) => void): Handler {
  return (m, req, res) => {
    if (method.startsWith("/") ? req.url !== method : m.method !== method) return;
    answer(m, req, res);
    return true;
  };
}

/** Writes `chunk` `count` times at the pace the reader takes them, then ends; `done` says "finished" or "closed", first come. */
function pump(req: IncomingMessage, res: ServerResponse, chunk: string, count: number, done: string[]): void {
  req.socket.once("close", () => done.push("closed"));
  const more = () => {
    while (count > 0 && !res.destroyed) {
      count--;
      if (!res.write(chunk)) return void res.once("drain", more);
    }
    if (count === 0) res.end(() => done.push("finished"));
  };
  more();
}

/** Writes `chunk` every 50 ms until the connection closes (a service that never finishes its answer). */
function trickle(res: ServerResponse, chunk: () => string): void {
  const timer = setInterval(() => res.write(chunk()), 50);
  res.once("close", () => clearInterval(timer));
}

describe("a service that never finishes its answer: every discovery ends by its timeout", () => {
  const endless: [string, (res: ServerResponse) => void][] = [
    ["headers, then silence", (res) => res.writeHead(200, { "content-type": "application/json" }).flushHeaders()],
    [
      "a JSON body trickling a byte every 50 ms",
      (res) => {
        res.writeHead(200, { "content-type": "application/json" });
        trickle(res, () => " ");
      },
    ],
    [
      "an SSE stream of notifications that never answers",
      (res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        trickle(res, () => `data: {"jsonrpc":"2.0","method":"notifications/message"}\n\n`);
      },
    ],
  ];
  it.each(endless)("%s: no answer within the timeout, and the registry closes the connection", async (_, answer) => {
    let closed = false;
    const s = await service((m, req, res) => {
      if (m.method !== "initialize") return;
      req.socket.once("close", () => (closed = true));
      answer(res);
      return true;
    });
    const { message, ms } = await failure(s.url, { timeoutMs: 1000 });
    // The timeout ends everything: no SSE attempt after it.
    expect(message).toBe(`no MCP service answered at "${s.url}" (streamable HTTP: no answer within 1 s)`);
    expect(ms).toBeLessThan(6000); // against a hang, not a timing
    await waitFor(() => closed, "the registry to close the stalled connection", 5000);
  });

  it("101 Switching Protocols to a POST: refused at once, named, and the connection closed", async () => {
    let closed = false;
    const s = await service((m, req) => {
      if (m.method !== "initialize") return;
      req.socket.once("close", () => {
        closed = true;
      });
      req.socket.write("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: evil\r\n\r\n");
      return true;
    });
    // A deadline far away: the refusal does not wait for it.
    const { message } = await failure(s.url, { timeoutMs: 60_000 });
    expect(message).toMatch(/^no MCP service answered at "[^"]+" \(streamable HTTP: the service answered HTTP 101 \(Switching Protocols\), not an MCP answer; SSE: /);
    await waitFor(() => closed, "the registry to close the switched connection", 5000);
  });
});

describe("the answer limit", () => {
  it("a declared Content-Length past the limit is refused unread (only one byte of it ever comes)", async () => {
    const s = await service((m, _req, res) => {
      if (m.method !== "initialize") return;
      res.writeHead(200, { "content-type": "application/json", "content-length": "10000000" }).write("{");
      return true;
    });
    // Waiting for the body would end by the timeout instead.
    const { message } = await failure(s.url, { limits: SMALL, timeoutMs: 10_000 });
    expect(message).toBe(`the MCP service at "${s.url}" ${TOO_LARGE}`);
  });

  const growing: [string, string, string][] = [
    ["a chunked JSON body", "application/json", `{"jsonrpc":"2.0","id":0,"result":{"pad":"${"x".repeat(16_000)}`],
    ["an SSE stream of small notifications", "text/event-stream", `data: {"jsonrpc":"2.0","method":"notifications/message"}\n\n`.repeat(250)],
  ];
  it.each(growing)("%s growing past the limit is cut off: the connection is closed before the service finished writing", async (_, type, chunk) => {
    const outcome: string[] = [];
    // 64 MB, at the pace the registry reads them.
    const s = await service(
      on("initialize", (_m, req, res) => {
        res.writeHead(200, { "content-type": type });
        pump(req, res, chunk, Math.ceil(64e6 / chunk.length), outcome);
      }),
    );
    const { message } = await failure(s.url, { limits: SMALL, timeoutMs: 10_000 });
    expect(message).toBe(`the MCP service at "${s.url}" ${TOO_LARGE}`);
    await waitFor(() => outcome.length, "the connection to end", 10_000);
    expect(outcome[0]).toBe("closed");
  });
});

describe("what an answer holds", () => {
  it("an SSE answer after many notifications, another id's answer and an event split across writes, in CRLF lines: found", async () => {
    const s = await service((m, _req, res) => {
      if (m.id === undefined) return;
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (let i = 0; i < 500; i++) res.write(`event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"n":${i}}}\r\n\r\n`);
      res.write(`id: 1\r\ndata: ${rpc(m.id + 1000, { tools: [] })}\r\n\r\n: a comment\r\n\r\n`);
      const answer = `data: ${rpc(m.id, m.method === "initialize" ? INIT : TOOLS)}\r\n\r\n`;
      res.write(answer.slice(0, 20));
      setTimeout(() => res.write(answer.slice(20, -1)), 20);
      // The last byte ends the event; the stream itself stays open (the registry must not wait for its end).
      setTimeout(() => res.write(answer.slice(-1)), 40);
      return true;
    });
    const found = await discoverService(s.url, { timeoutMs: 5000, wantDescription: false, limits: SMALL });
    expect(found).toMatchObject({ transport: "streamable_http", tools: [{ name: "kept" }] });
  });

  it.each([
    ["CR line endings", "\r"],
    ["CRLF line endings, each CR and its LF in different writes", "\r\n"],
  ])("an SSE answer over two data lines, %s (as the SSE format allows), a notification first: found", async (_, eol) => {
    const s = await service((m, _req, res) => {
      if (m.id === undefined) return;
      res.writeHead(200, { "content-type": "text/event-stream" });
      // The answer's JSON split after its first comma: the event's two data lines join with a line feed.
      const answer = rpc(m.id, m.method === "initialize" ? INIT : TOOLS);
      const cut = answer.indexOf(",") + 1;
      const text = `data: {"jsonrpc":"2.0","method":"notifications/x"}${eol}${eol}data: ${answer.slice(0, cut)}${eol}data: ${answer.slice(cut)}${eol}${eol}`;
      // Every LF starts a write of its own, so that no CR arrives with its LF.
      for (const [i, part] of text.split(/(?=\n)/).entries()) setTimeout(() => res.write(part), i * 10);
      return true;
    });
    const found = await discoverService(s.url, { timeoutMs: 5000, wantDescription: false, limits: SMALL });
    expect(found).toMatchObject({ transport: "streamable_http", tools: [{ name: "kept" }] });
  });

  it("a JSON batch holding the answer among other messages: found", async () => {
    const s = await service((m, _req, res) => {
      if (m.id === undefined) return;
      const result = m.method === "initialize" ? INIT : TOOLS;
      json(res, JSON.stringify([{ jsonrpc: "2.0", method: "notifications/x" }, { jsonrpc: "2.0", id: m.id + 7, result: { tools: [] } }, JSON.parse(rpc(m.id, result))]));
      return true;
    });
    expect((await discoverService(s.url, { timeoutMs: 5000, wantDescription: false })).tools.map((t) => t.name)).toEqual(["kept"]);
  });

  const wrong: [string, (id: number) => string, string][] = [
    ["an answer to another id", (id) => rpc(id + 1, INIT), "the service's answer held no response to the call"],
    ['the id as a string ("0")', (id) => rpc(String(id), INIT), "the service's answer held no response to the call"],
    ["a body that is not JSON", () => "<html>hello</html>", "the service's answer held no response to the call"],
    ["a JSON-RPC error", (id) => JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32001, message: "go away, registry" } }), "MCP error -32001: go away, registry"],
    ["an unsupported protocol version", (id) => rpc(id, { ...INIT, protocolVersion: "1999-01-01" }), "the service's protocol version is not supported: 1999-01-01"],
  ];
  it.each(wrong)("initialize answered with %s: refused with the reason, then SSE tried", async (_, answer, reason) => {
    const s = await service(on("initialize", (m, _req, res) => json(res, answer(m.id!))));
    expect((await failure(s.url)).message).toBe(streamableFailed(s.url, reason));
    expect(s.seen.some((r) => r.m.method === "tools/list")).toBe(false);
  });
});

describe("redirects", () => {
  it.each([301, 302, 303])("a %i to the same origin is not followed (its target gets no POST)", async (status) => {
    const s = await service(on("/mcp", (_m, _req, res) => res.writeHead(status, { location: "/next" }).end()));
    expect((await failure(s.url)).message).toMatch(
      `(streamable HTTP: the service redirected with HTTP ${status}, which turns a POST into a GET (only 307 and 308 are followed); SSE: `,
    );
    expect(s.seen.filter((r) => r.path === "/next" && r.method === "POST")).toEqual([]);
  });

  // /mcp redirects to /hop/N-1, which redirects to /hop/N-2, ... /hop/1 to /final: N redirects in all.
  const chain = (hops: number) =>
    service((_m, req, res) => {
      const n = req.url === "/mcp" ? hops : Number(/^\/hop\/(\d+)$/.exec(req.url ?? "")?.[1]);
      if (!n) return;
      res.writeHead(307, { location: n === 1 ? "/final" : `/hop/${n - 1}` }).end();
      return true;
    });
  it("5 redirects (307) within the origin are followed; the credential goes along", async () => {
    const s = await chain(5);
    const found = await discoverService(s.url, { timeoutMs: 5000, wantDescription: false, headers: { authorization: `Bearer ${TOKEN}` } });
    expect(found.tools.map((t) => t.name)).toEqual(["kept"]);
    expect(s.seen.filter((r) => r.path === "/final").every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);
  });
  it("6 redirects are refused: redirected to itself too often", async () => {
    const s = await chain(6);
    expect((await failure(s.url)).message).toMatch(`"${s.url}" (streamable HTTP: the service redirected to itself too often; SSE: `);
    expect(s.seen.some((r) => r.path === "/final" && r.method === "POST")).toBe(false);
  });

  it("a 308 to another port of 127.0.0.1 is another origin: refused, and the other server never sees the credential", async () => {
    const other = await service();
    const s = await service(on("/mcp", (_m, _req, res) => res.writeHead(308, { location: other.url }).end()));
    const { message } = await failure(s.url, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(message).toMatch(`(streamable HTTP: the service redirected to another origin; SSE: `);
    expect(other.seen.filter((r) => r.method === "POST")).toEqual([]);
    expect(other.seen.filter((r) => JSON.stringify(r).includes(TOKEN))).toEqual([]);
  });

  it.each(["http://[::1", "http://", "http://a b/", "\u0000"])("a garbage Location (%j) fails cleanly as an AppError", async (location) => {
    // Written raw: node would refuse to send some of these headers itself.
    const s = await service(on("/mcp", (_m, req) => req.socket.end(`HTTP/1.1 307 Temporary Redirect\r\nlocation: ${location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`)));
    const { message, ms } = await failure(s.url);
    expect(message).toMatch(/^no MCP service answered at "[^"]+" \(streamable HTTP: [^;]+; SSE: /);
    expect(ms).toBeLessThan(6000);
  });
});

describe("the credential is never in an error message", () => {
  const headers = { authorization: `Bearer ${TOKEN}` };
  const echoes: [string, Handler][] = [
    ["an HTTP 500 body", on("initialize", (_m, req, res) => json(res, `leaked: ${req.headers.authorization}`, 500))],
    [
      "a JSON-RPC error message",
      on("initialize", (m, req, res) => json(res, JSON.stringify({ jsonrpc: "2.0", id: m.id, error: { code: 1, message: `you sent ${req.headers.authorization}` } }))),
    ],
    ["the protocol version", on("initialize", (m, req, res) => json(res, rpc(m.id, { ...INIT, protocolVersion: req.headers.authorization })))],
  ];
  it.each(echoes)("echoed in %s: redacted", async (_, echo) => {
    const { message } = await failure((await service(echo)).url, { headers });
    expect(message).not.toContain("s3cret");
    expect(message).toMatch(/HTTP 500|\*\*\*/);
  });

  // reasonOf() cut a reason to 300 characters before the message was redacted, so a credential echoed across
  // the cut was no longer whole and was not blanked out ("Bearer s3cret-012345678" showed): redacted first now.
  it("echoed across the 300th character of the reason: not even a prefix of it shows", async () => {
    const s = await service((m, req, res) => {
      if (m.method !== "initialize") return;
      json(res, JSON.stringify({ jsonrpc: "2.0", id: m.id, error: { code: -32000, message: `${"x".repeat(262)}${req.headers.authorization}` } }));
      return true;
    });
    expect((await failure(s.url, { headers })).message).not.toContain(TOKEN.slice(0, 6));
  });
});

describe("connections", () => {
  it("20 concurrent discoveries, twice, of a service closing every kept-alive connection as it is reused: all succeed", async () => {
    const served = new WeakSet<object>();
    let closedOnReuse = 0;
    const s = await service((_m, req) => {
      if (!served.has(req.socket)) return void served.add(req.socket);
      closedOnReuse++;
      req.socket.destroy();
      return true;
    });
    for (let round = 0; round < 2; round++) {
      const found = await Promise.all(Array.from({ length: 20 }, () => discoverService(s.url, { timeoutMs: 10_000, wantDescription: false })));
      expect(found.map((f) => f.tools.map((t) => t.name).join())).toEqual(Array(20).fill("kept"));
    }
    expect(closedOnReuse).toBeGreaterThan(0);
  });

  it("100 KB of response headers: fails cleanly (node's header limit)", async () => {
    const s = await service((_m, req) => {
      const junk = Array.from({ length: 100 }, (_, i) => `x-junk-${i}: ${"j".repeat(1000)}\r\n`).join("");
      req.socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${junk}\r\n`);
      return true;
    });
    const { message, ms } = await failure(s.url);
    expect(message).toMatch(/^no MCP service answered at "[^"]+" \(streamable HTTP: HPE_HEADER_OVERFLOW; SSE: /);
    expect(ms).toBeLessThan(6000);
  });

  // send() retried on any ECONNRESET of a reused socket, also one after the response had begun: the request
  // was sent a second time, and that second answer was never read. Only a reset before any answer is retried now.
  it("a reused connection reset in the middle of its answer is not sent again", async () => {
    const served = new WeakSet<object>();
    let resets = 0;
    const s = await service((m, req, res) => {
      const reused = served.has(req.socket);
      served.add(req.socket);
      if (!reused || m.method !== "initialize" || resets++) return;
      res.writeHead(200, { "content-type": "application/json", "content-length": "500" }).write('{"jsonrpc":');
      setTimeout(() => req.socket.resetAndDestroy(), 50);
      return true;
    });
    await discoverService(s.url, { timeoutMs: 5000, wantDescription: false });
    const before = s.seen.length;
    await failure(s.url);
    expect(s.seen.slice(before).filter((r) => r.m.method === "initialize")).toHaveLength(1);
  });

  // An answer postRpc does not read (to a notification, an HTTP error status, a redirect) was drained with
  // res.resume(), without the limit and past the discovery's end: now drained for at most 64 KiB and 1 s.
  it.each(["notifications/initialized", "initialize"])("an unread answer (to %s) is not downloaded past the limit", async (method) => {
    const outcome: string[] = [];
    const s = await service(
      on(method, (_m, req, res) => {
        res.writeHead(method === "initialize" ? 500 : 202, { "content-type": "text/plain" });
        pump(req, res, "z".repeat(16_000), 4000, outcome);
      }),
    );
    await discoverService(s.url, { timeoutMs: 5000, wantDescription: false, limits: SMALL }).catch(() => {});
    await waitFor(() => outcome.length, "the unread answer to end", 15_000);
    expect(outcome[0]).toBe("closed");
  });
});

describe("an unread answer that never ends", () => {
  it("a 202 to notifications/initialized trickling forever: the discovery succeeds and the registry closes that connection", async () => {
    let closed = false;
    const s = await service(
      on("notifications/initialized", (_m, req, res) => {
        req.socket.once("close", () => {
          closed = true;
        });
        res.writeHead(202, { "content-type": "text/plain" });
        trickle(res, () => "z");
      }),
    );
    const found = await discoverService(s.url, { timeoutMs: 5000, wantDescription: false, limits: SMALL });
    expect(found.tools.map((t) => t.name)).toEqual(["kept"]);
    // A bound against a connection drained for good, not a timing.
    await waitFor(() => closed, "the trickling connection to be closed", 15_000);
  });
});

describe("through a registry: add_service", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ REGISTRY_DISCOVERY_TIMEOUT: "2", REGISTRY_MAX_DISCOVERY_BYTES: "65536" });
  });
  afterAll(() => reg?.stop());
  const add = (endpoint: string) => ({
    service_name: "hostile",
    endpoint,
    description: "d",
    requires_authorization: true,
    method_authorization: "Bearer",
    discovery_token: TOKEN,
  });

  it("a service echoing the discovery token in its error: the tool error redacts it, nothing is stored", async () => {
    const s = await service((m, req, res) => {
      if (m.method !== "initialize") return;
      json(res, JSON.stringify({ jsonrpc: "2.0", id: m.id, error: { code: -32002, message: `bad credential ${req.headers.authorization}` } }));
      return true;
    });
    const error = await fails(reg, "add_service", add(s.url));
    expect(error).toBe(`Cannot add service "hostile": ${streamableFailed(s.url, "MCP error -32002: bad credential ***")}`);
    expect(s.seen[0]?.auth).toBe(`Bearer ${TOKEN}`);
    expect((await call(await reg.client(), "list_services")).structuredContent).toEqual({ services: [] });
  });

  it("a tools/list answer growing past REGISTRY_MAX_DISCOVERY_BYTES: refused, nothing is stored", async () => {
    const s = await service((m, _req, res) => {
      if (m.method !== "tools/list") return;
      res.writeHead(200, { "content-type": "application/json" });
      trickle(res, () => "x".repeat(8000));
      return true;
    });
    expect(await fails(reg, "add_service", add(s.url))).toBe(`Cannot add service "hostile": the MCP service at "${s.url}" ${TOO_LARGE}`);
    expect((await call(await reg.client(), "list_services")).structuredContent).toEqual({ services: [] });
  });
});
