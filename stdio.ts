/** Entry point for desktop MCP clients: the registry's tools over stdin/stdout on the configured database, no HTTP. */
import process from "node:process";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { openContext, registryMcp } from "./registry.ts";
import { ConfigError, loadConfig, readDotEnv, redactDatabaseUrl } from "./shared/config.ts";
import { createLog } from "./shared/log.ts";
import { connectGuarded } from "./shared/mcp.ts";

// stdout carries protocol messages only: whatever a library prints with console.log goes to stderr instead.
console.log = console.info = console.debug = console.error;

const log = createLog();
try {
  readDotEnv(".env", process.env);
  const config = loadConfig(process.env);
  const { ctx, close } = await openContext(config, log);
  // The client started this process on the operator's machine: it is the local administrator.
  const caller = { principal: "admin" as const, label: "stdio" };
  const server = registryMcp.server(ctx, caller, new AjvJsonSchemaValidator());
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await server.close().catch(() => {});
      await close();
      log.info("MCP Registry on stdio stopped");
      process.exit(0);
    })();
    return stopping;
  };
  process.stdin.once("end", stop);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await connectGuarded(server, new StdioServerTransport(), (action, reason) => registryMcp.refused(ctx, caller, action, reason));
  log.info(`MCP Registry serving MCP on stdio, database ${redactDatabaseUrl(config.databaseUrl)}`);
} catch (err) {
  // A bad setting is one clear line on stderr, not a stack trace.
  log.error(err instanceof ConfigError ? err.message : `Cannot start: ${(err as Error).message}`);
  process.exit(1);
}
