/**
 * Entry point for desktop MCP clients that speak only stdio, on the configured database, no HTTP:
 * `npm run stdio` serves the registry's tools as the local administrator; `npm run gateway -- --user <id>`
 * serves the gateway as that user (the tools of the user's role, each call with the user's own credential).
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { closeSessions } from "./features/gateway/downstream.ts";
import { gatewayRefused, gatewayServer } from "./features/gateway/gateway.ts";
import { openContext, registryMcp } from "./registry.ts";
import { ConfigError, loadConfig, readDotEnv, redactDatabaseUrl } from "./shared/config.ts";
import type { Caller, Ctx } from "./shared/context.ts";
import { createLog } from "./shared/log.ts";
import { connectGuarded } from "./shared/mcp.ts";
import { UserId } from "./shared/names.ts";
import { validate } from "./shared/validate.ts";

// stdout carries protocol messages only: whatever a library prints with console.log goes to stderr instead.
console.log = console.info = console.debug = console.error;

const USAGE = "Usage: stdio.ts [--gateway --user <user_id>]";
const log = createLog();

/** The server this process serves, for whom, and what to do with a refused message. */
function serving(ctx: Ctx, gatewayUser: string | undefined) {
  const validator = new AjvJsonSchemaValidator();
  if (gatewayUser === undefined) {
    // The client started this process on the operator's machine: it is the local administrator.
    const caller: Caller = { principal: "admin", label: "stdio" };
    return { what: "the registry's tools", server: registryMcp.server(ctx, caller, validator), refused: (a: string, r: string) => registryMcp.refused(ctx, caller, a, r) };
  }
  const caller: Caller = { principal: "user", label: `stdio-gateway:${gatewayUser}`, userId: gatewayUser };
  return {
    what: `the gateway for user "${gatewayUser}"`,
    server: gatewayServer(ctx, caller, validator, () => false),
    refused: gatewayRefused(ctx, caller),
  };
}

try {
  const { values } = parseArgs({ options: { gateway: { type: "boolean" }, user: { type: "string" } } });
  if (values.gateway && values.user === undefined) throw new ConfigError(`--gateway needs --user <user_id>. ${USAGE}`);
  if (values.user !== undefined && !values.gateway) throw new ConfigError(`--user goes with --gateway. ${USAGE}`);
  const gatewayUser = values.user === undefined ? undefined : validate(UserId, values.user, "serve the gateway for --user");
  readDotEnv(".env", process.env);
  const config = loadConfig(process.env);
  const { ctx, close } = await openContext(config, log);
  const { what, server, refused } = serving(ctx, gatewayUser);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await server.close().catch(() => {});
      await closeSessions(ctx);
      await close();
      log.info("MCP Registry on stdio stopped");
      process.exit(0);
    })();
    return stopping;
  };
  process.stdin.once("end", stop);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await connectGuarded(server, new StdioServerTransport(), refused);
  log.info(`MCP Registry serving ${what} on stdio, database ${redactDatabaseUrl(config.databaseUrl)}`);
} catch (err) {
  // A bad setting or argument is one clear line on stderr, not a stack trace.
  log.error(err instanceof ConfigError ? err.message : `Cannot start: ${(err as Error).message}`);
  process.exit(1);
}
