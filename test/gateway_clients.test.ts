/**
 * The gateway between programs nobody here wrote. Downstream is the reference server
 * @modelcontextprotocol/server-everything; in front are the MCP SDK client, LangChain.js's
 * MultiServerMCPClient (@langchain/mcp-adapters) and the Inspector CLI. What it proves:
 * - the gateway's tools/list shows exactly the tools attached to the user's role, as `everything__<tool>`,
 *   with the title, description, inputSchema, outputSchema and annotations server-everything itself lists;
 * - every tools/call through the gateway answers what the same call sent straight to server-everything
 *   answers, on the wire and as the SDK reads it: text, image, resource_link, embedded resources, content
 *   annotations, structuredContent, and tool errors (isError) alike;
 * - LangChain's client and the Inspector CLI, given the user key as a header, list those tools under the
 *   gateway's names and call them.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify, isDeepStrictEqual } from "node:util";
import type { DynamicStructuredTool } from "@langchain/core/tools";
import { MultiServerMCPClient } from "@langchain/mcp-adapters";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, ROOT, type Spawned, startEverything, startTestRegistry, type TestRegistry } from "./helpers.ts";

const ADMIN = "admin-key-gateway-clients-0123456789";
const AGENT = "agent-key-gateway-clients-0123456789";
const USER = "dana";
const SERVICE = "everything";

// The tools of server-everything attached to the role, and the one left out (so "exactly" can fail).
const ATTACHED = ["echo", "get-annotated-message", "get-resource-links", "get-resource-reference", "get-structured-content", "get-sum", "get-tiny-image"];
const NOT_ATTACHED = "get-env";
const GATEWAY_NAMES = ATTACHED.map((t) => `${SERVICE}__${t}`).sort();

/**
 * The calls compared, each with what its answer must carry: the content types in order, whether it is a
 * tool error, has structuredContent, has annotated content (so two empty or two broken answers cannot pass).
 */
const CALLS: { what: string; tool: string; args: Record<string, unknown>; types: string[]; isError?: true; structured?: true; annotated?: true }[] = [
  { what: "text (non-ASCII, quotes, newline)", tool: "echo", args: { message: 'héllo 🌍 <&> "quoted"\nsecond line' }, types: ["text"] },
  { what: "text computed from numbers", tool: "get-sum", args: { a: 2, b: 3.5 }, types: ["text"] },
  { what: "structuredContent", tool: "get-structured-content", args: { location: "Chicago" }, types: ["text"], structured: true },
  { what: "an image", tool: "get-tiny-image", args: {}, types: ["text", "image", "text"] },
  { what: "resource links", tool: "get-resource-links", args: { count: 4 }, types: ["text", "resource_link", "resource_link", "resource_link", "resource_link"] },
  { what: "content annotations", tool: "get-annotated-message", args: { messageType: "error", includeImage: true }, types: ["text", "image"], annotated: true },
  { what: "an embedded blob resource", tool: "get-resource-reference", args: { resourceType: "Blob", resourceId: 2 }, types: ["text", "resource", "text"] },
  { what: "an embedded text resource", tool: "get-resource-reference", args: { resourceType: "Text", resourceId: 3 }, types: ["text", "resource", "text"] },
  // Refused by server-everything's own input validation: a tool error it answers, relayed as it is.
  { what: "a tool error (wrong argument type)", tool: "get-sum", args: { a: "two", b: 3 }, types: ["text"], isError: true },
  { what: "a tool error (value outside the enum)", tool: "get-structured-content", args: { location: "Paris" }, types: ["text"], isError: true },
];

type Message = { id?: number | string; result?: unknown; error?: unknown };

/** The JSON-RPC messages of one HTTP answer body: plain JSON, or the data lines of an event stream. */
function messagesOf(body: string): Message[] {
  const trimmed = body.trim();
  if (trimmed === "") return [];
  const parsed: unknown[] = /^[[{]/.test(trimmed)
    ? [JSON.parse(trimmed)]
    : trimmed
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim())
        .filter((d) => d !== "")
        .map((d) => JSON.parse(d));
  return parsed.flat() as Message[];
}

/** An SDK client over streamable HTTP that also keeps each answer as it came over the wire. */
type WiredClient = { client: Client; callTool(tool: string, args: Record<string, unknown>): Promise<{ parsed: CallToolResult; wire: unknown }> };

async function wiredClient(url: string, headers: Record<string, string> = {}): Promise<WiredClient> {
  const bodies: Promise<string>[] = [];
  const keeping = async (input: string | URL | Request, init?: RequestInit) => {
    const response = await fetch(input, init);
    if ((init?.method ?? "GET") === "POST") bodies.push(response.clone().text());
    return response;
  };
  const client = new Client({ name: "gateway-clients-test", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: keeping, requestInit: { headers } }));
  return {
    client,
    async callTool(tool, args) {
      const from = bodies.length;
      const parsed = (await client.callTool({ name: tool, arguments: args })) as CallToolResult;
      const answers = (await Promise.all(bodies.slice(from))).flatMap(messagesOf).filter((m) => m.id !== undefined && "result" in m);
      expect(answers, `one tools/call answer on the wire for ${tool}`).toHaveLength(1);
      return { parsed, wire: answers[0].result };
    },
  };
}

/** What a tools/list entry says of a tool beyond its name: the part the gateway must carry over unchanged. */
const definition = (t: Tool) => ({ title: t.title, description: t.description, inputSchema: t.inputSchema, outputSchema: t.outputSchema, annotations: t.annotations });

describe("gateway with third-party clients and servers", () => {
  let reg: TestRegistry;
  let everything: Spawned;
  let admin: Client;
  let direct: WiredClient;
  let gateway: WiredClient;
  let directTools: Tool[];
  let userKey = "";
  const clients: Client[] = [];

  beforeAll(async () => {
    [reg, everything] = await Promise.all([startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT }), startEverything()]);
    admin = await reg.client(ADMIN);
    direct = await wiredClient(everything.url);
    clients.push(direct.client);
    directTools = (await direct.client.listTools()).tools;

    const added = await call(admin, "add_service", { service_name: SERVICE, endpoint: everything.url, description: "The MCP reference server" });
    expect(added.isError, JSON.stringify(added)).toBeFalsy();
    // What the registry discovered is what server-everything lists to a client like ours.
    const catalogue = (await call(admin, "get_tools", { service_name: SERVICE })).structuredContent as { tools: { id: number; name: string }[] };
    expect(catalogue.tools.map((t) => t.name).sort()).toEqual(directTools.map((t) => t.name).sort());
    expect(catalogue.tools.map((t) => t.name)).toEqual(expect.arrayContaining([...ATTACHED, NOT_ATTACHED]));

    expect((await call(admin, "create_role", { role_name: "testers" })).isError).toBeFalsy();
    for (const name of ATTACHED) {
      const id = catalogue.tools.find((t) => t.name === name)!.id;
      expect((await call(admin, "attach_role_to_tool", { tool_id: id, role_name: "testers" })).isError, name).toBeFalsy();
    }
    expect((await call(admin, "assign_role_to_user", { user_id: USER, role_name: "testers" })).isError).toBeFalsy();
    userKey = (await call(admin, "create_user_key", { user_id: USER, label: "third-party" })).structuredContent!.key as string;
    expect(userKey).toMatch(/^mcpr_user_/);

    gateway = await wiredClient(`${reg.url}/gateway/mcp`, { authorization: `Bearer ${userKey}` });
    clients.push(gateway.client);
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await reg?.stop();
    await everything?.stop();
  });

  it("lists exactly the role's tools, each with server-everything's own definition", async () => {
    const { tools, nextCursor } = await gateway.client.listTools();
    expect(nextCursor).toBeUndefined();
    expect(tools.map((t) => t.name)).toEqual(GATEWAY_NAMES);
    for (const tool of ATTACHED) {
      const own = directTools.find((t) => t.name === tool)!;
      const listed = tools.find((t) => t.name === `${SERVICE}__${tool}`)!;
      expect(definition(listed), tool).toEqual(definition(own));
    }
    // Not a vacuous comparison: the definitions carry schemas and annotations.
    const structured = tools.find((t) => t.name === `${SERVICE}__get-structured-content`)!;
    expect(structured.outputSchema?.required).toEqual(["temperature", "conditions", "humidity"]);
    expect(structured.inputSchema.properties?.location).toMatchObject({ enum: ["New York", "Chicago", "Los Angeles"] });
    expect(tools.every((t) => t.annotations?.readOnlyHint === true)).toBe(true);

    // An agent acting for the same user sees the same listing.
    const agent = await wiredClient(`${reg.url}/gateway/mcp`, { authorization: `Bearer ${AGENT}`, "x-registry-user": USER });
    clients.push(agent.client);
    expect((await agent.client.listTools()).tools).toEqual(tools);
  });

  it.each(CALLS)("relays $tool with $what unchanged", async ({ tool, args, types, isError, structured, annotated }) => {
    // server-everything stamps embedded resources with the time of day (to the second): the gateway's call
    // is sent between two direct calls, and the comparison is made when those two agree.
    let before: Awaited<ReturnType<WiredClient["callTool"]>> | undefined;
    let through: typeof before;
    for (let attempt = 0; attempt < 5; attempt++) {
      before = await direct.callTool(tool, args);
      through = await gateway.callTool(`${SERVICE}__${tool}`, args);
      const after = await direct.callTool(tool, args);
      if (isDeepStrictEqual(before.wire, after.wire)) break;
    }
    expect(through!.wire).toEqual(before!.wire);
    expect(through!.parsed).toEqual(before!.parsed);
    expect(through!.parsed.content.map((c) => c.type)).toEqual(types);
    expect(through!.parsed.isError ?? false).toBe(isError ?? false);
    expect(through!.parsed.structuredContent !== undefined).toBe(structured ?? false);
    expect(through!.parsed.content.some((c) => "annotations" in c && c.annotations !== undefined)).toBe(annotated ?? false);
  });

  it("a tool of the service not attached to the role is refused without a call", async () => {
    const refused = await gateway.callTool(`${SERVICE}__${NOT_ATTACHED}`, {});
    expect(refused.parsed).toEqual({
      isError: true,
      content: [{ type: "text", text: `No tool "${SERVICE}__${NOT_ATTACHED}" for user "${USER}": the gateway offers only the tools attached to the user's role (tools/list)` }],
    });
  });

  it("LangChain's MultiServerMCPClient lists the role's tools and calls them with the user key", async () => {
    const langchain = new MultiServerMCPClient({
      useStandardContentBlocks: true,
      mcpServers: {
        registry: { transport: "http", url: `${reg.url}/gateway/mcp`, headers: { Authorization: `Bearer ${userKey}` }, automaticSSEFallback: false },
      },
    });
    try {
      const tools = (await langchain.getTools()) as DynamicStructuredTool[];
      expect(tools.map((t) => t.name).sort()).toEqual(GATEWAY_NAMES);
      const byName = (tool: string) => tools.find((t) => t.name === `${SERVICE}__${tool}`)!;
      expect(byName("echo").description).toBe(directTools.find((t) => t.name === "echo")!.description);

      // A single text block comes back as a string (the README's "special case").
      expect(await byName("echo").invoke({ message: "from LangChain" })).toBe("Echo: from LangChain");
      expect(await byName("get-sum").invoke({ a: 40, b: 2 })).toBe("The sum of 40 and 2 is 42.");

      // Invoked as a model's tool call: a ToolMessage whose artifact carries the structured content.
      const message = await byName("get-structured-content").invoke({
        type: "tool_call",
        id: "call-1",
        name: `${SERVICE}__get-structured-content`,
        args: { location: "New York" },
      });
      const own = (await direct.callTool("get-structured-content", { location: "New York" })).parsed;
      expect(message.tool_call_id).toBe("call-1");
      expect(message.artifact).toEqual([{ type: "mcp_structured_content", data: own.structuredContent }]);
    } finally {
      await langchain.close();
    }
  });

  it("the Inspector CLI lists the role's tools and calls one with the user key as a header", async () => {
    const bin = join(ROOT, "node_modules/@modelcontextprotocol/inspector-cli/build/cli.js");
    const inspector = async (...args: string[]) => {
      // inspector-cli 1.0.3 finds its own package.json relative to the working directory: run it from its folder.
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [bin, "--cli", `${reg.url}/gateway/mcp`, "--transport", "http", "--header", `Authorization: Bearer ${userKey}`, ...args],
        { cwd: join(ROOT, "node_modules/@modelcontextprotocol/inspector-cli/build"), timeout: 30_000 },
      );
      return JSON.parse(stdout) as Record<string, unknown>;
    };
    const listed = (await inspector("--method", "tools/list")) as { tools: Tool[] };
    expect(listed.tools.map((t) => t.name)).toEqual(GATEWAY_NAMES);
    const echoed = await inspector("--method", "tools/call", "--tool-name", `${SERVICE}__echo`, "--tool-arg", "message=from the Inspector");
    expect(echoed).toEqual({ content: [{ type: "text", text: "Echo: from the Inspector" }] });
  }, 60_000);
});
