/**
 * The connect page as a person meets it, in real Chromium against a real registry and a real downstream SDK
 * server that checks bearer tokens. A gateway call without the user's credential fails with a one-time link;
 * this file proves that:
 * - the link opens a form naming the service and the user; the token typed into its password field and
 *   submitted with the button is stored (encrypted) for that user and service, the gateway's next call
 *   carries it downstream, and the link is spent (a revisit or a reload of an open tab answers 404);
 * - the page works with JavaScript disabled;
 * - the browser receives and enforces the page's security headers: no script runs or loads, the inline style
 *   is allowed by its hash, nothing else loads, the form POST carries its own Origin (and a Referer only to
 *   the registry itself), and another page cannot frame it;
 * - service names and user ids with HTML in them are shown as text, never as markup;
 * - an empty or whitespace-only token re-shows the form with an error (400), stores nothing, spends nothing;
 * - a form on another origin (or an opaque one) posting to the link is refused (403) and stores nothing;
 * - two concurrent submissions of one link: one is stored (200), the other is refused (404);
 * - an expired or unknown link answers 404 to GET and POST, also for a form opened before it expired.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import { eq } from "drizzle-orm";
import { type Browser, type BrowserContext, chromium, type Page, type Response } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, connectClient, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  // Pages of made-up public origins (page.route) reach the registry on loopback, as in browser_attacks.test.ts.
  "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessRespectPreflightResults",
];
// Whose token is whose, as the downstream services know them.
const TOKENS: Record<string, string> = {
  "ann-token-1": "ann",
  "bob-token-2": "bob",
  "carol-token-3": "carol",
  "html-token-4": "html user",
  "erin-token-5": "erin",
  "race-token-a": "racer A",
  "race-token-b": "racer B",
};
// Service names and user ids may hold HTML's special characters: the page must show them as text.
const HTML_SERVICE = '<b>x</b>&"';
const HTML_USER = '<script>alert("pwned")</script><b>u</b>';

type Seen = { authorization: string | null; tool?: string };

/** A downstream service: every call needs a known bearer token, `whoami` answers whose it is; every call is recorded. */
function credentialService(seen: Seen[]) {
  return startTestMcpServer({
    setup(server) {
      server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "whoami", description: "Who is calling", inputSchema: { type: "object" as const } }] }));
      server.setRequestHandler(CallToolRequestSchema, (req, extra) => {
        const auth = (extra.requestInfo?.headers.authorization as string | undefined) ?? null;
        seen.push({ authorization: auth, tool: req.params.name });
        const user = TOKENS[(auth ?? "").replace(/^Bearer /, "")];
        if (!user) return { isError: true, content: [{ type: "text", text: "unknown credential" }] };
        if (req.params.name === "whoami") return { content: [{ type: "text", text: user }] };
        throw new McpError(-32602, `no tool ${req.params.name}`);
      });
    },
  });
}

describe("the connect page in Chromium", () => {
  let reg: TestRegistry;
  let admin: Client;
  let browser: Browser;
  let notes: Awaited<ReturnType<typeof credentialService>>;
  let htmlService: Awaited<ReturnType<typeof credentialService>>;
  let htmlTool = "";
  const seen: Seen[] = [];
  const clients: Client[] = [];
  const keys: Record<string, string> = {};

  const linkPattern = () => new RegExp(`^${reg.url.replace(/[.]/g, "\\.")}/connect/[A-Za-z0-9_-]{43}$`);
  const digestOf = (link: string) =>
    createHash("sha256")
      .update(link.slice(link.lastIndexOf("/") + 1))
      .digest("hex");

  async function gatewayClient(key: string, headers: Record<string, string> = {}): Promise<Client> {
    const client = await connectClient(`${reg.url}/gateway/mcp`, key, { headers });
    clients.push(client);
    return client;
  }
  /** A gateway client for a user: its own user key. */
  const asUser = (user: string) => gatewayClient(keys[user]);
  const whoami = async (client: Client, tool = "notes__whoami") => (await client.callTool({ name: tool, arguments: {} })) as CallToolResult;
  /** Calls the tool expecting the missing-credential error; returns the link it carries. */
  async function linkFor(client: Client, user: string, tool = "notes__whoami", service = "notes"): Promise<string> {
    const before = seen.length;
    const result = await whoami(client, tool);
    expect(result.isError, text(result)).toBe(true);
    expect(text(result)).toContain(`Service "${service}" needs your credential and none is stored for user "${user}". Open `);
    const link = /Open (\S+) \(one use, valid 10 minutes\)/.exec(text(result))?.[1] ?? "";
    expect(link).toMatch(linkPattern());
    // Without a credential nothing was sent downstream.
    expect(seen.length).toBe(before);
    return link;
  }
  /** The rows of user_tokens for a user id (any service). */
  async function storedTokens(user: string) {
    const { users, userTokens } = reg.ctx.tables;
    return reg.ctx.db.select({ ciphertext: userTokens.ciphertext }).from(userTokens).innerJoin(users, eq(users.id, userTokens.userId)).where(eq(users.userId, user));
  }
  /** The stored link row for a link (by its digest), or undefined once it is gone. */
  async function linkRow(link: string) {
    const { connectLinks } = reg.ctx.tables;
    const [row] = await reg.ctx.db
      .select()
      .from(connectLinks)
      .where(eq(connectLinks.digest, digestOf(link)));
    return row;
  }
  /** Runs `fn` with a page of a fresh browser context, closed afterwards. */
  async function withPage<T>(options: Parameters<Browser["newContext"]>[0], fn: (page: Page, context: BrowserContext) => Promise<T>): Promise<T> {
    const context = await browser.newContext(options);
    try {
      return await fn(await context.newPage(), context);
    } finally {
      await context.close();
    }
  }
  /** Clicks a page's button and returns the response of the navigation it starts (the form's POST). */
  async function clickAndNavigate(page: Page, name: string) {
    const [response] = await Promise.all([page.waitForNavigation(), page.getByRole("button", { name }).click()]);
    expect(response).not.toBeNull();
    return response!;
  }
  /** The status of a browser's form submission, with what the browser sent and what it got in the failure message. */
  async function expectSubmitted(response: Response, status: number) {
    const sent = await response.request().allHeaders();
    const got = (await response.text()).slice(0, 300);
    expect(response.status(), `Origin: ${sent.origin}, Sec-Fetch-Site: ${sent["sec-fetch-site"]}; answer: ${got}`).toBe(status);
  }
  /** What the connect form page shows, read from the rendered DOM. */
  async function shownForm(page: Page) {
    return {
      title: await page.title(),
      heading: await page.locator("h1").textContent(),
      intro: await page.locator("body > p").first().textContent(),
      label: await page.locator('label[for="token"]').textContent(),
      input: await page.locator('form input[name="token"]').evaluate((el: HTMLInputElement) => ({ type: el.type, required: el.required })),
      method: await page.locator("form").getAttribute("method"),
    };
  }
  async function expectGonePage(page: Page, status: number | undefined) {
    expect(status).toBe(404);
    expect(await page.title()).toBe("Link not valid · MCP Registry");
    expect(await page.locator("h1").textContent()).toBe("Link not valid");
    expect(await page.locator("body").textContent()).toContain("This link cannot be used: it was already used, it expired");
    expect(await page.locator("form").count()).toBe(0);
  }

  beforeAll(async () => {
    [reg, notes, htmlService, browser] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT }),
      credentialService(seen),
      credentialService(seen),
      chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS }),
    ]);
    admin = await reg.client(ADMIN);
    const ok = async (name: string, args: Record<string, unknown>) => {
      const r = await call(admin, name, args);
      expect(r.isError, `${name}: ${text(r)}`).toBeFalsy();
      return r;
    };
    await ok("add_service", { service_name: "notes", endpoint: notes.url, description: "Notes", requires_authorization: true, method_authorization: "Bearer" });
    await ok("add_service", {
      service_name: HTML_SERVICE,
      endpoint: htmlService.url,
      description: "Names with HTML",
      requires_authorization: true,
      method_authorization: "Bearer",
    });
    const toolId = async (service: string) =>
      ((await ok("get_tools", { service_name: service })).structuredContent as { tools: { id: number; name: string }[] }).tools.find((t) => t.name === "whoami")!.id;
    await ok("create_role", { role_name: "staff" });
    await ok("attach_role_to_tool", { tool_id: await toolId("notes"), role_name: "staff" });
    await ok("create_role", { role_name: "html" });
    await ok("attach_role_to_tool", { tool_id: await toolId(HTML_SERVICE), role_name: "html" });
    for (const user of ["ann", "bob", "carol", "dave", "erin", "frank", "gina"]) {
      await ok("assign_role_to_user", { user_id: user, role_name: "staff" });
      keys[user] = (await ok("create_user_key", { user_id: user, label: "browser" })).structuredContent!.key as string;
    }
    for (const user of ["racer-1", "racer-2", "racer-3"]) await ok("assign_role_to_user", { user_id: user, role_name: "staff" });
    await ok("assign_role_to_user", { user_id: HTML_USER, role_name: "html" });
    // The gateway name of a service named with HTML is its sanitized form: read it from the listing.
    const tools = (await (await gatewayClient(AGENT, { "x-registry-user": HTML_USER })).listTools()).tools;
    expect(tools).toHaveLength(1);
    htmlTool = tools[0].name;
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.allSettled(clients.map((c) => c.close()));
    await reg?.stop();
    await Promise.all([notes?.stop(), htmlService?.stop()]);
  });

  it("the full flow: the link's form, the token typed and saved, the next call carries it, the link is spent", async () => {
    const client = await asUser("ann");
    const link = await linkFor(client, "ann");
    await withPage({}, async (page, context) => {
      const opened = await page.goto(link);
      expect(opened?.status()).toBe(200);
      expect(await shownForm(page)).toEqual({
        title: "Connect a service · MCP Registry",
        heading: "Connect a service",
        intro: "The service notes needs your credential before the gateway can call it for ann.",
        label: "Token for notes",
        input: { type: "password", required: true },
        method: "post",
      });
      // A second tab with the same form, still open when the first one saves.
      const other = await context.newPage();
      expect((await other.goto(link))?.status()).toBe(200);

      await page.locator('input[name="token"]').fill("ann-token-1");
      const saved = await clickAndNavigate(page, "Save");
      expect(saved.request().method()).toBe("POST");
      expect(saved.url()).toBe(link);
      expect(saved.request().postData()).toBe("token=ann-token-1");
      expect((await saved.request().allHeaders())["content-type"]).toBe("application/x-www-form-urlencoded");
      // The page's own form posts with its own Origin (under Referrer-Policy no-referrer it would be "null",
      // which the registry refuses as a foreign page: the policy is same-origin for that reason).
      expect((await saved.request().allHeaders()).origin).toBe(new URL(link).origin);
      await expectSubmitted(saved, 200);
      expect(await page.title()).toBe("Saved · MCP Registry");
      expect(await page.locator("h1").textContent()).toBe("Saved");
      expect(await page.locator("body > p").textContent()).toBe("Your credential for notes is stored. Go back to your MCP client and try the call again.");

      // Stored, encrypted: the row holds no plaintext; the link row is marked spent.
      const rows = await storedTokens("ann");
      expect(rows).toHaveLength(1);
      expect(rows[0].ciphertext).not.toContain("ann-token-1");
      expect((await linkRow(link))?.spentBy).toEqual(expect.any(String));

      // The gateway's next call succeeds with that token, as the downstream service saw it.
      const result = await whoami(client);
      expect(result.isError, text(result)).toBeFalsy();
      expect(text(result)).toBe("ann");
      expect(seen.at(-1)).toEqual({ authorization: "Bearer ann-token-1", tool: "whoami" });

      // Spent: a reload of the other tab and a new visit both answer 404 with the "cannot be used" page.
      const reloaded = await other.reload();
      await expectGonePage(other, reloaded?.status());
      const revisited = await page.goto(link);
      await expectGonePage(page, revisited?.status());
    });
    // A late second submission changes nothing.
    expect((await fetch(link, { method: "POST", body: new URLSearchParams({ token: "bob-token-2" }) })).status).toBe(404);
    expect(text(await whoami(client))).toBe("ann");
  });

  it("works with JavaScript disabled", async () => {
    const client = await gatewayClient(AGENT, { "x-registry-user": "bob" });
    const link = await linkFor(client, "bob");
    await withPage({ javaScriptEnabled: false }, async (page) => {
      // JavaScript is really off in this context: a page's own script does not run.
      await page.route("http://control.test/", (route) => route.fulfill({ contentType: "text/html", body: "<title>static</title><script>document.title = 'ran'</script>" }));
      await page.goto("http://control.test/");
      expect(await page.title()).toBe("static");

      expect((await page.goto(link))?.status()).toBe(200);
      expect((await shownForm(page)).intro).toBe("The service notes needs your credential before the gateway can call it for bob.");
      await page.locator('input[name="token"]').fill("bob-token-2");
      const saved = await clickAndNavigate(page, "Save");
      await expectSubmitted(saved, 200);
      expect(await page.locator("body > p").textContent()).toBe("Your credential for notes is stored. Go back to your MCP client and try the call again.");
      await expectGonePage(page, (await page.goto(link))?.status());
    });
    expect(text(await whoami(client))).toBe("bob");
    expect(seen.at(-1)?.authorization).toBe("Bearer bob-token-2");
  });

  it("the browser gets the security headers and enforces them: no script, nothing loaded, no Referer to another site, no framing", async () => {
    const client = await asUser("carol");
    const link = await linkFor(client, "carol");
    await withPage({}, async (page) => {
      const opened = await page.goto(link);
      expect(opened?.status()).toBe(200);
      const headers = await opened!.allHeaders();
      expect(headers["content-type"]).toBe("text/html; charset=UTF-8");
      expect(headers["referrer-policy"]).toBe("same-origin");
      expect(headers["x-frame-options"]).toBe("DENY");
      expect(headers["cache-control"]).toBe("no-store");
      expect(headers["x-content-type-options"]).toBe("nosniff");
      const csp = headers["content-security-policy"] ?? "";
      const directives = csp.split(/;\s*/);
      expect(directives).toEqual([
        "default-src 'none'",
        expect.stringMatching(/^style-src 'sha256-[A-Za-z0-9+/]{43}='$/),
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
      ]);
      // No script in the page, as served and as rendered.
      expect(await opened!.text()).not.toMatch(/<script|javascript:|\son[a-z]+=/i);
      expect(await page.locator("script").count()).toBe(0);

      // The inline style is the one the hash allows: the browser applied it.
      const style = (await page.locator("style").textContent()) ?? "";
      expect(directives[1]).toBe(`style-src 'sha256-${createHash("sha256").update(style).digest("base64")}'`);
      expect(await page.locator("body").evaluate((el) => getComputedStyle(el).maxWidth)).toBe("576px");

      // Anything put into the page is blocked by the policy: an inline script, a style without the hash, an image.
      const violations = await page.evaluate(async (registry) => {
        const found: string[] = [];
        document.addEventListener("securitypolicyviolation", (e) => found.push(e.effectiveDirective));
        const script = document.createElement("script");
        script.textContent = "document.title = 'injected'";
        document.body.append(script);
        const style = document.createElement("style");
        style.textContent = "body{max-width:1px}";
        document.head.append(style);
        const img = document.createElement("img");
        img.src = `${registry}/health`;
        document.body.append(img);
        await new Promise((r) => setTimeout(r, 500));
        return { found: found.sort(), title: document.title, maxWidth: getComputedStyle(document.body).maxWidth };
      }, reg.url);
      expect(violations).toEqual({ found: ["img-src", "script-src-elem", "style-src-elem"], title: "Connect a service · MCP Registry", maxWidth: "576px" });

      // The form's POST carries the page's address only back to the registry itself (Referrer-Policy: same-origin).
      await page.goto(link);
      await page.locator('input[name="token"]').fill("carol-token-3");
      const saved = await clickAndNavigate(page, "Save");
      const sent = await saved.request().allHeaders();
      expect(sent.referer).toBe(link);
      expect(sent["sec-fetch-site"]).toBe("same-origin");
      await expectSubmitted(saved, 200);
    });
    expect(text(await whoami(client))).toBe("carol");
  });

  it("another page cannot frame the connect page (frame-ancestors 'none', X-Frame-Options DENY)", async () => {
    const client = await asUser("dave");
    const link = await linkFor(client, "dave");
    await withPage({}, async (page) => {
      // A page of another origin frames the link and, for comparison, a form of its own.
      await page.route("http://framer.test/", (route) =>
        route.fulfill({ contentType: "text/html", body: `<title>framer</title><iframe id="victim" src="${link}"></iframe><iframe id="control" src="/inner"></iframe>` }),
      );
      await page.route("http://framer.test/inner", (route) => route.fulfill({ contentType: "text/html", body: '<form method="post"><input name="token" type="password"></form>' }));
      const served = page.waitForResponse((r) => r.url() === link);
      await page.goto("http://framer.test/", { waitUntil: "load" });
      // The registry did answer the frame's request with the form...
      expect((await served).status()).toBe(200);
      // ...and the browser refused to show it, while the framer's own form in the other frame renders.
      await page.frameLocator("#control").locator('input[name="token"]').waitFor();
      expect(await page.frameLocator("#control").locator('input[name="token"]').count()).toBe(1);
      expect(await page.frameLocator("#victim").locator('input[name="token"]').count()).toBe(0);
      const victim = page.frames().find((f) => f !== page.mainFrame() && !f.url().startsWith("http://framer.test"));
      expect(victim).toBeDefined();
      expect(await victim!.locator("form").count()).toBe(0);
      expect(
        await victim!
          .locator("body")
          .textContent()
          .catch(() => ""),
      ).not.toContain("needs your credential");
    });
    // Framing it spent nothing.
    expect((await fetch(link)).status).toBe(200);
  });

  it("a service name and a user id with HTML in them are shown as text, not markup", async () => {
    const client = await gatewayClient(AGENT, { "x-registry-user": HTML_USER });
    const link = await linkFor(client, HTML_USER, htmlTool, HTML_SERVICE);
    await withPage({}, async (page) => {
      const dialogs: string[] = [];
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      const opened = await page.goto(link);
      expect(opened?.status()).toBe(200);
      const raw = await opened!.text();
      expect(raw).not.toContain("<b>x</b>");
      expect(raw).not.toContain("<script>alert");
      const shown = await shownForm(page);
      expect(shown.intro).toBe(`The service ${HTML_SERVICE} needs your credential before the gateway can call it for ${HTML_USER}.`);
      expect(shown.label).toBe(`Token for ${HTML_SERVICE}`);
      expect(await page.locator("body > p").first().locator("strong").allTextContents()).toEqual([HTML_SERVICE, HTML_USER]);
      expect(await page.locator("body").textContent()).toContain(`It is stored encrypted and sent only to ${HTML_SERVICE}, only for your calls.`);
      // No element was made from the names.
      expect(await page.locator("body b, body script, head script").count()).toBe(0);

      await page.locator('input[name="token"]').fill("html-token-4");
      const saved = await clickAndNavigate(page, "Save");
      await expectSubmitted(saved, 200);
      expect(await page.locator("body > p strong").allTextContents()).toEqual([HTML_SERVICE]);
      expect(await page.locator("body b, body script").count()).toBe(0);
      expect(dialogs).toEqual([]);
    });
    const result = await whoami(client, htmlTool);
    expect(result.isError, text(result)).toBeFalsy();
    expect(text(result)).toBe("html user");
  });

  it("an empty or whitespace-only token re-shows the form with an error (400), stores nothing and spends nothing", async () => {
    const client = await asUser("erin");
    const link = await linkFor(client, "erin");
    // Over plain HTTP: empty, whitespace only, and missing altogether.
    for (const [body, problem] of [
      [new URLSearchParams({ token: "" }), "The token must not be empty."],
      [new URLSearchParams({ token: " \t  " }), "The token must not be empty."],
      [new URLSearchParams({ other: "x" }), "The token must be a string."],
    ] as const) {
      const res = await fetch(link, { method: "POST", body });
      expect(res.status, body.toString()).toBe(400);
      const page = await res.text();
      expect(page).toContain(`<p role="alert"><strong>${problem}</strong></p>`);
      expect(page).toContain('<input id="token" name="token" type="password" required autofocus>');
    }
    expect(await storedTokens("erin")).toEqual([]);
    expect((await linkRow(link))?.spentBy).toBeNull();
    // The gateway still has no credential: a new link.
    const again = await linkFor(client, "erin");
    expect(again).not.toBe(link);

    // In the browser: an empty field is not even sent (required); whitespace is sent, refused, and the form re-shown.
    await withPage({}, async (page) => {
      expect((await page.goto(link))?.status()).toBe(200);
      const input = page.locator('input[name="token"]');
      expect(await input.evaluate((el: HTMLInputElement) => el.validity.valueMissing)).toBe(true);
      await input.fill("  \t  ");
      const refused = await clickAndNavigate(page, "Save");
      expect(refused.request().method()).toBe("POST");
      await expectSubmitted(refused, 400);
      expect(await page.title()).toBe("Connect a service · MCP Registry");
      expect(await page.getByRole("alert").textContent()).toBe("The token must not be empty.");
      expect((await shownForm(page)).intro).toBe("The service notes needs your credential before the gateway can call it for erin.");
      expect(await storedTokens("erin")).toEqual([]);
      // Not spent: the re-shown form saves a real token (trimmed).
      await page.locator('input[name="token"]').fill("  erin-token-5  ");
      await expectSubmitted(await clickAndNavigate(page, "Save"), 200);
    });
    expect(text(await whoami(client))).toBe("erin");
    expect(seen.at(-1)?.authorization).toBe("Bearer erin-token-5");
  });

  it("a form on another site (or an opaque origin) posting to the link is refused (403) and stores nothing", async () => {
    const client = await asUser("frank");
    const link = await linkFor(client, "frank");
    await withPage({}, async (page) => {
      // The attacker's page, on an origin of its own: a plain form aimed at the link, submitted by a click.
      await page.route("http://evil.test/", (route) =>
        route.fulfill({ contentType: "text/html", body: `<form method="post" action="${link}"><input name="token" value="race-token-a"><button>Go</button></form>` }),
      );
      await page.goto("http://evil.test/");
      const refused = await clickAndNavigate(page, "Go");
      expect(refused.url()).toBe(link);
      expect((await refused.request().allHeaders()).origin).toBe("http://evil.test");
      expect(refused.status()).toBe(403);
      expect(JSON.parse((await page.locator("body").textContent()) ?? "{}").error.code).toBe("forbidden");

      // The same form auto-submitted by script from an opaque (data:) origin: Origin "null".
      const answer = page.waitForResponse((r) => r.url() === link && r.request().method() === "POST");
      await page.goto(
        `data:text/html,${encodeURIComponent(`<form id="f" method="post" action="${link}"><input name="token" value="race-token-b"></form><script>document.getElementById("f").submit()</script>`)}`,
      );
      const opaque = await answer;
      expect((await opaque.request().allHeaders()).origin).toBe("null");
      expect(opaque.status()).toBe(403);
    });
    expect(await storedTokens("frank")).toEqual([]);
    expect((await linkRow(link))?.spentBy).toBeNull();
    expect((await whoami(client)).isError).toBe(true);
    expect(seen.some((s) => s.authorization === "Bearer race-token-a" || s.authorization === "Bearer race-token-b")).toBe(false);
    // Not spent: the link still shows its form.
    expect((await fetch(link)).status).toBe(200);
  });

  it("two concurrent submissions of one link: one is stored (200), the other is refused (404)", async () => {
    for (const user of ["racer-1", "racer-2", "racer-3"]) {
      const client = await gatewayClient(AGENT, { "x-registry-user": user });
      const link = await linkFor(client, user);
      const tokens = ["race-token-a", "race-token-b"];
      const answers = await Promise.all(tokens.map((token) => fetch(link, { method: "POST", body: new URLSearchParams({ token }) })));
      const statuses = answers.map((a) => a.status);
      expect([...statuses].sort(), user).toEqual([200, 404]);
      const bodies = await Promise.all(answers.map((a) => a.text()));
      const winner = tokens[statuses.indexOf(200)];
      expect(bodies[statuses.indexOf(200)]).toContain("Your credential for <strong>notes</strong> is stored.");
      expect(bodies[statuses.indexOf(404)]).toContain("This link cannot be used");
      expect(await storedTokens(user)).toHaveLength(1);
      const result = await whoami(client);
      expect(text(result), user).toBe(TOKENS[winner]);
      expect(seen.at(-1)?.authorization).toBe(`Bearer ${winner}`);
    }
  });

  it("an expired or unknown link answers 404 to GET and POST, also for a form opened before it expired", async () => {
    const client = await asUser("gina");
    const link = await linkFor(client, "gina");
    const { connectLinks } = reg.ctx.tables;
    await withPage({}, async (page) => {
      const unknown = `${reg.url}/connect/${randomBytes(32).toString("base64url")}`;
      await expectGonePage(page, (await page.goto(unknown))?.status());
      expect((await fetch(unknown, { method: "POST", body: new URLSearchParams({ token: "ann-token-1" }) })).status).toBe(404);

      expect((await page.goto(link))?.status()).toBe(200);
      // The person leaves the form open past the link's ten minutes.
      const expired = await reg.ctx.db
        .update(connectLinks)
        .set({ expiresAt: "2000-01-01T00:00:00.000Z" })
        .where(eq(connectLinks.digest, digestOf(link)))
        .returning({ digest: connectLinks.digest });
      expect(expired).toHaveLength(1);
      const posted = await fetch(link, { method: "POST", body: new URLSearchParams({ token: "ann-token-1" }) });
      expect(posted.status).toBe(404);
      expect(await posted.text()).toContain("This link cannot be used");
      const other = await page.context().newPage();
      await expectGonePage(other, (await other.goto(link))?.status());

      // The form opened before: submitting it now shows the "cannot be used" page.
      await page.locator('input[name="token"]').fill("ann-token-1");
      const late = await clickAndNavigate(page, "Save");
      await expectSubmitted(late, 404);
      await expectGonePage(page, late.status());
    });
    expect(await storedTokens("gina")).toEqual([]);
    expect((await whoami(client)).isError).toBe(true);
  });
});
