/**
 * Hostile web pages against a registry on loopback in development mode (no keys: every caller is admin),
 * first at the HTTP level, then in real Chromium: a DNS-rebound page reading a user's token, a cross-site
 * text/plain form registering a user. Each is refused and leaves nothing written.
 */
import { request } from "node:http";
import { createServer, type Server } from "node:http";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, startTestMcpServer, startTestRegistry, type TestRegistry } from "./helpers.ts";

const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

// fetch cannot forge Host (nor send Sec-Fetch-Site as a browser does): node:http can.
function raw(port: number, method: string, path: string, headers: Record<string, string>, body = ""): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers: { "content-type": "application/json", ...headers } }, (res) => {
      let text = "";
      res.on("data", (d) => {
        text += d;
      });
      res.on("end", () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("hostile browser pages", () => {
  let reg: TestRegistry;
  let server: Awaited<ReturnType<typeof startTestMcpServer>>;
  const own = () => `127.0.0.1:${reg.port}`;
  const users = async () => (await (await reg.http("/list_users")).json()).users.map((u: { user: { user_id: string } }) => u.user.user_id);

  beforeAll(async () => {
    [reg, server] = await Promise.all([
      startTestRegistry({ REGISTRY_ALLOWED_ORIGINS: "http://console.test:9999" }),
      startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) }),
    ]);
    const c = await reg.client();
    expect(
      (await call(c, "add_service", { service_name: "wiki", endpoint: server.url, description: "Wiki", requires_authorization: true, method_authorization: "Bearer" })).isError,
    ).toBeFalsy();
    expect((await call(c, "authorize_user_to_service", { service_name: "wiki", user_id: "ann", token: "ann-secret" })).isError).toBeFalsy();
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  describe("at the HTTP level", () => {
    it.each([
      ["GET", "/token?service_name=wiki&user_id=ann"],
      ["POST", "/register_user"],
      ["GET", "/list_services"],
      ["POST", "/mcp"],
      ["GET", "/health"],
    ])("a rebound Host name is refused on %s %s", async (method, path) => {
      const res = await raw(reg.port, method, path, { host: `rebind.example:${reg.port}` }, method === "POST" ? '{"user_id":"mallory"}' : "");
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body)).toEqual({
        error: { code: "forbidden", message: `Host "rebind.example:${reg.port}" is not allowed: this registry answers only on loopback names (127.0.0.1, localhost, [::1])` },
      });
      expect(res.body).not.toContain("ann-secret");
    });

    it.each([`localhost:PORT`, `127.0.0.1:PORT`, `[::1]:PORT`, "127.0.0.2:PORT"])("the loopback Host %s is served", async (host) => {
      const res = await raw(reg.port, "GET", "/token?service_name=wiki&user_id=ann", { host: host.replace("PORT", String(reg.port)) });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toEqual({ token: "ann-secret", method_authorization: "Bearer" });
    });

    it.each(["https://evil.example", "null", "http://127.0.0.1:1", "http://localhost"])(
      "a cross-site text/plain form with Origin %s is refused, nothing written",
      async (origin) => {
        const res = await raw(reg.port, "POST", "/register_user", { host: own(), origin, "content-type": "text/plain" }, '{"user_id":"mallory","pad":"="}');
        expect(res.status).toBe(403);
        expect(JSON.parse(res.body).error.message).toBe(`Origin "${origin}" is not allowed: only the registry's own pages and REGISTRY_ALLOWED_ORIGINS may call it from a browser`);
        expect(await users()).not.toContain("mallory");
      },
    );

    it("a request another site started without Origin (Sec-Fetch-Site: cross-site) is refused", async () => {
      const res = await raw(reg.port, "GET", "/token?service_name=wiki&user_id=ann", { host: own(), "sec-fetch-site": "cross-site" });
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body).error.message).toBe("A request started by another site is not allowed");
    });

    it("the registry's own origin, a loopback alias of its port, and REGISTRY_ALLOWED_ORIGINS are allowed", async () => {
      for (const origin of [`http://${own()}`, `http://localhost:${reg.port}`, "http://console.test:9999"]) {
        const res = await raw(reg.port, "POST", "/role_for_user", { host: own(), origin, "sec-fetch-site": "cross-site" }, '{"user_id":"ann"}');
        expect(res.status, origin).toBe(200);
      }
    });

    it("public reads stay open to any page; curl-like requests without Origin keep working", async () => {
      expect((await raw(reg.port, "GET", "/health", { host: own(), origin: "https://evil.example" })).status).toBe(200);
      expect((await raw(reg.port, "GET", "/ready", { host: own(), origin: "https://evil.example" })).status).toBe(200);
      expect((await raw(reg.port, "POST", "/register_user", { host: own() }, '{"user_id":"curl-user"}')).status).toBe(200);
    });

    it("records each refusal in the audit log", async () => {
      const events = (await call(await reg.client(), "list_audit_events", { action: "refused_request" })).structuredContent as { events: { outcome: string; target: string }[] };
      expect(events.events.length).toBeGreaterThan(0);
      expect(events.events.every((e) => e.outcome === "forbidden")).toBe(true);
      expect(events.events.map((e) => e.target)).toContain("POST /register_user");
    });
  });

  describe("in Chromium", () => {
    let browser: Browser;
    let attacker: Server;
    let attackerPort = 0;
    beforeAll(async () => {
      // evil.test resolves to 127.0.0.1 inside this browser: what a rebinding DNS answer achieves.
      browser = await chromium.launch({
        executablePath: "/usr/bin/chromium",
        args: [
          ...CHROMIUM_ARGS,
          "--host-resolver-rules=MAP evil.test 127.0.0.1",
          // Chromium's own local-network protection would block this page before the registry sees it; other browsers have none.
          "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessRespectPreflightResults",
        ],
      });
      // The attacker's own site, on another port: a form that posts JSON as text/plain to the registry.
      attacker = createServer((_req, res) => {
        res.setHeader("content-type", "text/html");
        res.end(`<form id="f" method="POST" enctype="text/plain" action="http://127.0.0.1:${reg.port}/register_user">
          <input name='{"user_id":"mallory-form","pad":"' value='"}'></form><script>document.getElementById("f").submit()</script>`);
      });
      await new Promise<void>((r) => attacker.listen(0, "127.0.0.1", r));
      attackerPort = (attacker.address() as { port: number }).port;
    });
    afterAll(async () => {
      await browser?.close();
      await new Promise((r) => attacker?.close(r));
    });

    it("a page on a rebound host name cannot read a user's token", async () => {
      const page = await browser.newPage();
      try {
        // The attacker's page is served for http://evil.test:<registry port>/; its later fetches reach the registry.
        await page.route(`http://evil.test:${reg.port}/`, (route) => route.fulfill({ contentType: "text/html", body: "<title>rebound</title>" }));
        await page.goto(`http://evil.test:${reg.port}/`);
        const seen = await page.evaluate(async () => {
          const res = await fetch("/token?service_name=wiki&user_id=ann");
          return { status: res.status, body: await res.text() };
        });
        expect(seen.status).toBe(403);
        expect(seen.body).not.toContain("ann-secret");
        expect(JSON.parse(seen.body).error.code).toBe("forbidden");
      } finally {
        await page.close();
      }
    });

    it("a cross-site form cannot register a user", async () => {
      const page = await browser.newPage();
      try {
        const answer = page.waitForResponse((r) => r.url().endsWith("/register_user"));
        await page.goto(`http://127.0.0.1:${attackerPort}/`);
        const res = await answer;
        expect(res.status()).toBe(403);
        expect(res.request().headers().origin).toBe(`http://127.0.0.1:${attackerPort}`);
        expect(await users()).not.toContain("mallory-form");
      } finally {
        await page.close();
      }
    });
  });
});
