/**
 * The benchmark's own MCP servers (bench/baseline.ts, bench/downstream.ts) answer each request with a
 * stateless SDK server, as the registry's best practices say (DESIGN.md section 2): one shared validator,
 * JSON responses, no session.
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema, type ListToolsResult } from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";

const validator = new AjvJsonSchemaValidator();

type Handlers = {
  list(cursor: string | undefined): ListToolsResult;
  call(args: Record<string, unknown> | undefined): CallToolResult;
};

/** Answers one MCP request as a server named `name` (version `version`) with the tools `handlers` serve. */
export async function answerStateless(request: Request, name: string, version: string, handlers: Handlers): Promise<Response> {
  const server = new Server({ name, version }, { capabilities: { tools: {} }, jsonSchemaValidator: validator });
  server.setRequestHandler(ListToolsRequestSchema, (req) => handlers.list(req.params?.cursor));
  server.setRequestHandler(CallToolRequestSchema, (req) => handlers.call(req.params.arguments));
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  await server.connect(transport);
  try {
    return await transport.handleRequest(request);
  } finally {
    void server.close();
  }
}
