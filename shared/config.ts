/** Registry configuration: read once from the environment (and .env) by main.ts, validated with valibot. */
import { existsSync, readFileSync } from "node:fs";
import * as v from "valibot";
import { decodeKey } from "./crypto.ts";
import { transformOrIssue } from "./validate.ts";

/** Thrown for a bad setting; its message is the one line start-up prints. */
export class ConfigError extends Error {}

// One check: valibot runs later checks even after v.url failed, and new URL() would then throw.
const HttpUrl = v.pipe(
  v.string(),
  v.check((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), "must be an http(s) URL"),
);

// Each variable: its schema from the raw string, and its default when unset or empty.
const VARIABLES = {
  MCP_HOST: { schema: v.pipe(v.string(), v.regex(/^[\w.:-]+$/, "must be a host name or IP address")), fallback: "127.0.0.1" },
  MCP_PORT: {
    schema: v.pipe(v.string(), v.regex(/^\d+$/, "must be an integer from 0 to 65535"), v.transform(Number), v.maxValue(65535, "must be an integer from 0 to 65535")),
    fallback: "8000",
  },
  DATABASE_URL: {
    schema: v.pipe(v.string(), transformOrIssue(normalizeDatabaseUrl)),
    fallback: "file:registry.db",
  },
  AGENT_REREAD_HOOK: { schema: orNone(HttpUrl), fallback: "" },
  REGISTRY_DISCOVERY_TIMEOUT: {
    schema: secondsWithin(0.1, 600),
    fallback: "10",
  },
  REGISTRY_REFRESH_INTERVAL: {
    schema: v.pipe(
      v.string(),
      v.regex(/^\d+(\.\d+)?$/, "must be a number of seconds"),
      v.transform(Number),
      v.check((n) => n === 0 || n >= 0.1, "must be 0 (off) or at least 0.1 seconds"),
      v.maxValue(604800, "must be at most 604800 seconds (a week)"),
    ),
    fallback: "300",
  },
  REGISTRY_ADMIN_KEYS: { schema: orNone(keyList()), fallback: "" },
  REGISTRY_AGENT_KEYS: { schema: orNone(keyList()), fallback: "" },
  REGISTRY_AUTH: { schema: v.picklist(["on", "off"], 'must be "on" or "off"'), fallback: "on" },
  REGISTRY_SECRET: { schema: orNone(secretKey()), fallback: "" },
  REGISTRY_SECRET_PREVIOUS: { schema: orNone(secretKey()), fallback: "" },
  REGISTRY_ALLOWED_ORIGINS: { schema: orNone(originList()), fallback: "" },
  REGISTRY_AUDIT_RETENTION_DAYS: { schema: count(0, 36500), fallback: "90" },
  REGISTRY_MAX_TOOLS: { schema: count(1, 100_000), fallback: "1000" },
  REGISTRY_MAX_DESCRIPTION_BYTES: { schema: count(256, 1_048_576), fallback: "16384" },
  REGISTRY_MAX_SCHEMA_BYTES: { schema: count(256, 4_194_304), fallback: "65536" },
  REGISTRY_MAX_DISCOVERY_BYTES: { schema: count(65_536, 268_435_456), fallback: "8388608" },
  REGISTRY_MAX_DISCOVERY_PAGES: { schema: count(1, 10_000), fallback: "100" },
  REGISTRY_MAX_CATALOGUE_BYTES: { schema: count(65_536, 1_073_741_824), fallback: "8388608" },
  REGISTRY_KEPT_ANSWERS_BYTES: { schema: count(65_536, 4_294_967_296), fallback: "67108864" },
  REGISTRY_SQLITE_SYNC: { schema: v.picklist(["full", "normal"], 'must be "full" or "normal"'), fallback: "full" },
  REGISTRY_PUBLIC_URL: {
    schema: orNone(
      v.pipe(
        HttpUrl,
        v.transform((s) => s.replace(/\/+$/, "")),
      ),
    ),
    fallback: "",
  },
  REGISTRY_GATEWAY_TIMEOUT: {
    schema: secondsWithin(0.1, 3600),
    fallback: "30",
  },
  // Reverse DNS (e.g. com.example.mcp): labels of letters, digits and "-", with at least one dot.
  REGISTRY_NAMESPACE: {
    schema: v.pipe(
      v.string(),
      v.maxLength(100, "must be at most 100 characters"),
      v.regex(/^[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+$/, "must be a reverse-DNS namespace like com.example.mcp (letters, digits, - and at least one .)"),
    ),
    fallback: "local.mcp-registry",
  },
  LOG_FORMAT: { schema: v.picklist(["text", "json"], 'must be "text" or "json"'), fallback: "text" },
  // Opens GET /metrics besides the admin keys, e.g. for a Prometheus scraper that should not hold one.
  REGISTRY_METRICS_KEY: { schema: orNone(keyList()), fallback: "" },
  REGISTRY_CONSOLE_IDLE: {
    schema: secondsWithin(60, 86400),
    fallback: "1800",
  },
  REGISTRY_TOOL_CHANGES: { schema: v.picklist(["hold", "accept"], 'must be "hold" or "accept"'), fallback: "hold" },
  REGISTRY_SQLITE_BUSY_TIMEOUT: {
    schema: secondsWithin(0.1, 600),
    fallback: "5",
  },
} as const;

// An optional variable: "" (unset) is null, anything else must pass `schema` (its first issue is reported).
function orNone<T>(schema: v.GenericSchema<string, T>) {
  return v.pipe(
    v.string(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      if (dataset.value === "") return null;
      const result = v.safeParse(schema, dataset.value);
      if (result.success) return result.output;
      addIssue({ message: result.issues[0].message });
      return NEVER;
    }),
  );
}

// A number of seconds (decimals allowed) within bounds.
function secondsWithin(min: number, max: number) {
  return v.pipe(
    v.string(),
    v.regex(/^\d+(\.\d+)?$/, "must be a number of seconds"),
    v.transform(Number),
    v.minValue(min, `must be at least ${min} seconds`),
    v.maxValue(max, `must be at most ${max} seconds`),
  );
}

// A whole number within bounds, e.g. a limit or a number of days.
function count(min: number, max: number) {
  return v.pipe(v.string(), v.regex(/^\d+$/, "must be a whole number"), v.transform(Number), v.minValue(min, `must be at least ${min}`), v.maxValue(max, `must be at most ${max}`));
}

// Comma-separated browser origins (scheme://host[:port]), each compared exactly as a browser sends it.
function originList() {
  return v.pipe(
    v.string(),
    v.transform((s) =>
      s
        .split(",")
        .map((o) => o.trim())
        .filter(Boolean),
    ),
    v.check((list) => list.every((o) => URL.canParse(o) && new URL(o).origin === o), "must hold origins like https://console.example.com (scheme, host and port only)"),
  );
}

// A 32-byte AES key in base64, e.g. from `openssl rand -base64 32`.
function secretKey() {
  return v.pipe(
    v.string(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const key = decodeKey(dataset.value);
      if (!key) addIssue({ message: "must be 32 bytes encoded in base64 (openssl rand -base64 32)" });
      return key ?? NEVER;
    }),
  );
}

// Comma-separated keys; short keys are refused because they can be guessed.
function keyList() {
  return v.pipe(
    v.string(),
    v.transform((s) =>
      s
        .split(",")
        .map((k) => k.trim())
        .filter(Boolean),
    ),
    v.check((keys) => keys.every((k) => k.length >= 16), "must hold keys of at least 16 characters each"),
  );
}

// Each variable's value (trimmed; unset or blank means its default), and what the registry makes of it.
const Environment = v.object(
  Object.fromEntries(Object.entries(VARIABLES).map(([name, { schema }]) => [name, schema])) as { [K in keyof typeof VARIABLES]: (typeof VARIABLES)[K]["schema"] },
);

const seconds = (s: number) => Math.round(s * 1000);

/** The configuration as one schema over the environment; Config is inferred from it. */
const ConfigSchema = v.pipe(
  Environment,
  v.transform((e) => ({
    host: e.MCP_HOST,
    port: e.MCP_PORT,
    databaseUrl: e.DATABASE_URL,
    rereadHook: e.AGENT_REREAD_HOOK,
    discoveryTimeoutMs: seconds(e.REGISTRY_DISCOVERY_TIMEOUT),
    /** REGISTRY_REFRESH_INTERVAL: how often every service is discovered again in the background (0: never). */
    refreshIntervalMs: seconds(e.REGISTRY_REFRESH_INTERVAL),
    adminKeys: e.REGISTRY_ADMIN_KEYS ?? [],
    agentKeys: e.REGISTRY_AGENT_KEYS ?? [],
    /** "off" only when REGISTRY_AUTH=off was set explicitly. */
    auth: e.REGISTRY_AUTH,
    /** REGISTRY_SECRET: the 32-byte key encrypting stored secrets (null: a key file beside the database). */
    secret: e.REGISTRY_SECRET,
    /** REGISTRY_SECRET_PREVIOUS: the key being rotated out; what it encrypted is re-encrypted at start-up. */
    previousSecret: e.REGISTRY_SECRET_PREVIOUS,
    /** REGISTRY_SQLITE_SYNC: "full" (every commit on disk before it is acknowledged) or "normal" (the last commits may be lost on power loss). */
    sqliteSync: e.REGISTRY_SQLITE_SYNC,
    /** REGISTRY_SQLITE_BUSY_TIMEOUT: how long a write waits while another process holds a local SQLite file's write lock. */
    busyTimeoutMs: seconds(e.REGISTRY_SQLITE_BUSY_TIMEOUT),
    /** REGISTRY_ALLOWED_ORIGINS: browser origins besides the registry's own that may call it (e.g. a browser-based MCP client). */
    allowedOrigins: e.REGISTRY_ALLOWED_ORIGINS ?? [],
    /** REGISTRY_AUDIT_RETENTION_DAYS: audit events older than this are deleted in the background (0: kept forever). */
    auditRetentionDays: e.REGISTRY_AUDIT_RETENTION_DAYS,
    /** REGISTRY_PUBLIC_URL: the registry's address as users reach it, for the links it hands out (null: its own listening URL). */
    publicUrl: e.REGISTRY_PUBLIC_URL,
    /** REGISTRY_GATEWAY_TIMEOUT: how long the gateway waits for a downstream service's answer to one call. */
    gatewayTimeoutMs: seconds(e.REGISTRY_GATEWAY_TIMEOUT),
    /** REGISTRY_TOOL_CHANGES: "hold" (a tool whose definition changed downstream is withheld until approved) or "accept" (served at once, still recorded). */
    toolChanges: e.REGISTRY_TOOL_CHANGES,
    /** LOG_FORMAT: "text" (one line per event, for people) or "json" (one JSON object per line, for log shippers). */
    logFormat: e.LOG_FORMAT,
    /** REGISTRY_METRICS_KEY: keys (comma-separated, 16+ characters) that may read GET /metrics, besides admin keys. */
    metricsKeys: e.REGISTRY_METRICS_KEY ?? [],
    /** REGISTRY_CONSOLE_IDLE: how long a web console session lasts without a request before it ends. */
    consoleIdleMs: seconds(e.REGISTRY_CONSOLE_IDLE),
    /** REGISTRY_NAMESPACE: the reverse-DNS namespace of the registry API's server names (<namespace>/<service>). */
    namespace: e.REGISTRY_NAMESPACE,
    /** REGISTRY_KEPT_ANSWERS_BYTES: how much memory the answers kept per catalogue generation may take (shared/db/answers.ts). */
    keptAnswersBytes: e.REGISTRY_KEPT_ANSWERS_BYTES,
    /** What one service may bring into the catalogue (REGISTRY_MAX_*): past a limit its discovery is refused and nothing is written. */
    limits: {
      /** REGISTRY_MAX_TOOLS: tools per service. */
      tools: e.REGISTRY_MAX_TOOLS,
      /** REGISTRY_MAX_DESCRIPTION_BYTES: UTF-8 bytes of one tool's description or title (and of the service's own). */
      descriptionBytes: e.REGISTRY_MAX_DESCRIPTION_BYTES,
      /** REGISTRY_MAX_SCHEMA_BYTES: bytes of one tool's inputSchema, outputSchema or annotations as JSON. */
      schemaBytes: e.REGISTRY_MAX_SCHEMA_BYTES,
      /** REGISTRY_MAX_DISCOVERY_BYTES: bytes of one answer of the service (one HTTP response body). */
      answerBytes: e.REGISTRY_MAX_DISCOVERY_BYTES,
      /** REGISTRY_MAX_DISCOVERY_PAGES: pages of tools/list. */
      pages: e.REGISTRY_MAX_DISCOVERY_PAGES,
      /** REGISTRY_MAX_CATALOGUE_BYTES: bytes of all kept tool definitions of one service together (descriptions, titles, schemas). */
      catalogueBytes: e.REGISTRY_MAX_CATALOGUE_BYTES,
    },
  })),
);

/** The registry's configuration, as loadConfig builds it from the environment. */
export type Config = v.InferOutput<typeof ConfigSchema>;
/** Bounds on what a downstream service's discovery may bring in. */
export type DiscoveryLimits = Config["limits"];

/** Builds the configuration from an environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const raw = Object.fromEntries(Object.entries(VARIABLES).map(([name, { fallback }]) => [name, env[name]?.trim() || fallback]));
  const result = v.safeParse(ConfigSchema, raw);
  if (!result.success) {
    const issue = result.issues[0];
    const name = String(issue.path?.[0]?.key);
    // Never echo a key back, even a malformed one, nor a database URL (it may carry a password).
    const shown = name.endsWith("_KEYS") || name.endsWith("_KEY") || name.startsWith("REGISTRY_SECRET") || name === "DATABASE_URL" ? "" : ` (got "${raw[name]}")`;
    throw new ConfigError(`Invalid configuration: ${name} ${issue.message}${shown}`);
  }
  const config = result.output;
  if (config.previousSecret && !config.secret) throw new ConfigError("Invalid configuration: REGISTRY_SECRET_PREVIOUS is set but REGISTRY_SECRET (the new key) is not");
  return config;
}

/** Maps the accepted DATABASE_URL forms (including the predecessor's sqlite:/// ones) to a libSQL URL. */
export function normalizeDatabaseUrl(raw: string): string {
  if (raw === ":memory:") return raw;
  const old = /^sqlite(\+aiosqlite)?:\/\/\/(.*)$/.exec(raw);
  if (old) {
    // sqlite:///./dev.db is relative, sqlite:////abs/dev.db absolute, as in SQLAlchemy.
    if (old[2] === "" || old[2] === ":memory:") return ":memory:";
    return `file:${old[2]}`;
  }
  if (/^(file:|libsql:\/\/|https?:\/\/|postgres(ql)?:\/\/)/.test(raw)) return raw;
  const scheme = /^([a-z][\w+.-]*):/i.exec(raw)?.[1] ?? raw;
  throw new Error(
    `uses an unsupported database "${scheme}"; supported: SQLite (file:<path>, :memory:, sqlite:///<path>), remote libSQL (libsql://, http(s)://) and PostgreSQL (postgres://)`,
  );
}

/** A database URL fit for a log line: remote URLs may carry credentials, so those are blanked out. */
export function redactDatabaseUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//***@").replace(/([?&](authToken|password)=)[^&]*/gi, "$1***");
}

/** Reads KEY=VALUE lines of a .env file into env, never overriding a variable already set. */
export function readDotEnv(path: string, env: Record<string, string | undefined>): void {
  if (!existsSync(path)) return;
  for (const line of readFileSync(path, "utf8").split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][\w]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith("#")) continue;
    // A quoted value keeps everything inside its quotes; a comment may follow the closing quote.
    const quoted = /^(["'])(.*?)\1(?:\s+#.*)?$/.exec(m[2]);
    const value = quoted ? quoted[2] : m[2].replace(/\s+#.*$/, "");
    if (env[m[1]] === undefined) env[m[1]] = value;
  }
}

/** Every variable with its default, one `NAME (default: X)` a line, for --help; keys and secrets (no default) show "none". */
export function variablesHelp(): string {
  const secret = (name: string) => name.endsWith("_KEYS") || name.endsWith("_KEY") || name.startsWith("REGISTRY_SECRET");
  return Object.entries(VARIABLES)
    .map(([name, { fallback }]) => `${name} (default: ${fallback === "" || secret(name) ? "none" : fallback})`)
    .join("\n");
}
