/**
 * Hand-written checks of the official MCP Registry API shapes, so tests can tell whether what we serve (or what a
 * fake upstream serves) is what the spec says, without trusting our own valibot schemas to judge themselves.
 *
 * Written from modelcontextprotocol/registry:
 * - docs/reference/api/openapi.yaml ($id https://modelcontextprotocol.io/schemas/draft/2025-12-01/server-registry-openapi),
 *   components ServerDetail, ServerResponse, ServerList and the `{error}` bodies of 4xx answers;
 * - docs/reference/server-json/server.schema.json, the 2025-12-11 schema
 *   (https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json), and its examples/valid and examples/invalid.
 * The "no version ranges" rule is prose in the spec; its cases follow the official registry's validator.
 * Additional properties are allowed wherever the spec allows them, so unknown keys are not problems.
 */

/** A server.json document (a ServerDetail). */
export type ServerJson = Record<string, unknown>;

/** Adds the problems of `value` (found at `path`) to `out`. */
type Check = (out: string[], path: string, value: unknown) => void;
type Field = { required: boolean; check: Check };

const OFFICIAL = "io.modelcontextprotocol.registry/official";
const SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json";
const NAME = /^[a-zA-Z0-9.-]+\/[a-zA-Z0-9._-]+$/;
const URL_TEMPLATE = /^(https?:\/\/[^\s]+|\{[a-zA-Z_][a-zA-Z0-9_]*\}[^\s]*)$/;
const SHA256 = /^[a-f0-9]{64}$/;
const ICON_SIZE = /^(\d+x\d+|any)$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
// Version ranges the official registry rejects: comparators, "a - b", "a || b", and x/X/* wildcards in the dotted
// part (unlike the official validator, an "x" in a pre-release such as 1.0.0-linux is not taken for a wildcard).
const VERSION = String.raw`v?\d+(?:\.\d+){0,3}(?:-[0-9A-Za-z.-]+)?`;
const WILDCARD = String.raw`(?:v?\d+|x|X|\*)`;
const RANGES = [
  new RegExp(String.raw`^(?:\^|~|>=|<=|>|<|=)\s*${VERSION}$`),
  new RegExp(String.raw`^${VERSION}\s-\s*${VERSION}$`),
  new RegExp(String.raw`^${VERSION}\s*(?:\|\|\s*${VERSION}\s*)+$`),
  new RegExp(String.raw`^(?=[^-]*[xX*])${WILDCARD}(?:\.${WILDCARD}){1,2}(?:-[0-9A-Za-z.-]+)?$`),
];

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/** `path.key`, or `path["odd/key"]` for keys that are not identifiers, or `path[3]`. */
function at(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  if (!/^[A-Za-z_$][\w$]*$/.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path ? `${path}.${key}` : key;
}

function fail(out: string[], path: string, message: string): void {
  out.push(`${path || "$"}: ${message}`);
}

const req = (check: Check): Field => ({ required: true, check });
const opt = (check: Check): Field => ({ required: false, check });

/** An object with these fields; `closed` for additionalProperties: false. */
function obj(fields: Record<string, Field>, closed = false): Check {
  return (out, path, value) => {
    if (!isObject(value)) return fail(out, path, "must be an object");
    for (const [key, field] of Object.entries(fields)) {
      if (value[key] !== undefined) field.check(out, at(path, key), value[key]);
      else if (field.required) fail(out, at(path, key), "is required");
    }
    if (!closed) return;
    for (const key of Object.keys(value)) if (!(key in fields)) fail(out, at(path, key), "is not allowed here");
  };
}

type Text = { min?: number; max?: number; pattern?: RegExp; format?: "uri" | "date-time" };

/** A string; lengths count code points, as JSON Schema does ("🌤" is one character, not two). */
function str(rules: Text = {}): Check {
  return (out, path, value) => {
    if (typeof value !== "string") return fail(out, path, "must be a string");
    const length = [...value].length;
    if (rules.min !== undefined && length < rules.min) fail(out, path, `must be at least ${rules.min} characters (has ${length})`);
    if (rules.max !== undefined && length > rules.max) fail(out, path, `must be at most ${rules.max} characters (has ${length})`);
    if (rules.pattern && !rules.pattern.test(value)) fail(out, path, `must match ${rules.pattern.source}`);
    if (rules.format === "uri" && !isUri(value)) fail(out, path, "must be an absolute URI");
    if (rules.format === "date-time" && !isDateTime(value)) fail(out, path, "must be an RFC 3339 date-time");
  };
}

function isUri(s: string): boolean {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]*$/.test(s) && URL.canParse(s);
}

// Date.parse alone would roll 2025-02-30 over into March, so the fields are checked one by one.
function isDateTime(s: string): boolean {
  const m = DATE_TIME.exec(s);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 60;
}

/** A specific version: not "latest" and not a range such as ^1.2, ~1.2, >=1.2, 1.x or 1.*. */
function specificVersion(min: number): Check {
  return (out, path, value) => {
    str({ min, max: 255 })(out, path, value);
    if (typeof value !== "string") return;
    if (value === "latest") fail(out, path, 'must be a specific version, not "latest"');
    else if (RANGES.some((re) => re.test(value.trim()))) fail(out, path, `must be a specific version, not the range ${JSON.stringify(value)}`);
  };
}

const bool: Check = (out, path, value) => {
  if (typeof value !== "boolean") fail(out, path, "must be a boolean");
};

const integer: Check = (out, path, value) => {
  if (typeof value !== "number" || !Number.isInteger(value)) fail(out, path, "must be an integer");
};

function oneOf(...values: string[]): Check {
  return (out, path, value) => {
    if (typeof value !== "string" || !values.includes(value)) fail(out, path, `must be one of ${values.join(", ")}`);
  };
}

function arrayOf(item: Check): Check {
  return (out, path, value) => {
    if (!Array.isArray(value)) return fail(out, path, "must be an array");
    for (const [i, v] of value.entries()) item(out, at(path, i), v);
  };
}

/** An object used as a map: every value is an `item`. */
function recordOf(item: Check): Check {
  return (out, path, value) => {
    if (!isObject(value)) return fail(out, path, "must be an object");
    for (const [key, v] of Object.entries(value)) item(out, at(path, key), v);
  };
}

const INPUT: Record<string, Field> = {
  description: opt(str()),
  isRequired: opt(bool),
  format: opt(oneOf("string", "number", "boolean", "filepath")),
  value: opt(str()),
  isSecret: opt(bool),
  default: opt(str()),
  placeholder: opt(str()),
  choices: opt(arrayOf(str())),
};
const input = obj(INPUT);
const INPUT_WITH_VARIABLES: Record<string, Field> = { ...INPUT, variables: opt(recordOf(input)) };
const keyValueInput = obj({ ...INPUT_WITH_VARIABLES, name: req(str()) });

/** A PositionalArgument (needs valueHint or value) or a NamedArgument (needs name). */
const argument: Check = (out, path, value) => {
  obj({ ...INPUT_WITH_VARIABLES, type: req(oneOf("positional", "named")), name: opt(str()), valueHint: opt(str()), isRepeated: opt(bool) })(out, path, value);
  if (!isObject(value)) return;
  if (value.type === "named" && value.name === undefined) fail(out, at(path, "name"), "is required for a named argument");
  if (value.type === "positional" && value.valueHint === undefined && value.value === undefined) fail(out, path, "a positional argument needs valueHint or value");
};

/** A transport of one of `types`; the HTTP ones need a url. Remotes may also carry `variables` for the url template. */
function transport(types: string[], remote: boolean): Check {
  return (out, path, value) => {
    obj({ type: req(oneOf(...types)) })(out, path, value);
    // StdioTransport constrains nothing but its type; an unknown type has already been reported.
    if (!isObject(value) || value.type === "stdio" || !types.includes(value.type as string)) return;
    const fields: Record<string, Field> = { url: req(str({ pattern: URL_TEMPLATE })), headers: opt(arrayOf(keyValueInput)) };
    if (remote) fields.variables = opt(recordOf(input));
    obj(fields)(out, path, value);
  };
}

const repository = obj({ url: req(str({ format: "uri" })), source: req(str()), id: opt(str()), subfolder: opt(str()) });

const icon = obj({
  src: req(str({ format: "uri", max: 255 })),
  mimeType: opt(oneOf("image/png", "image/jpeg", "image/jpg", "image/svg+xml", "image/webp")),
  sizes: opt(arrayOf(str({ pattern: ICON_SIZE }))),
  theme: opt(oneOf("light", "dark")),
});

const packageEntry = obj({
  registryType: req(str()),
  registryBaseUrl: opt(str({ format: "uri" })),
  identifier: req(str()),
  version: opt(specificVersion(1)),
  fileSha256: opt(str({ pattern: SHA256 })),
  runtimeHint: opt(str()),
  transport: req(transport(["stdio", "streamable-http", "sse"], false)),
  runtimeArguments: opt(arrayOf(argument)),
  packageArguments: opt(arrayOf(argument)),
  environmentVariables: opt(arrayOf(keyValueInput)),
});

const serverDetail = obj({
  name: req(str({ min: 3, max: 200, pattern: NAME })),
  description: req(str({ min: 1, max: 100 })),
  version: req(specificVersion(0)),
  title: opt(str({ min: 1, max: 100 })),
  websiteUrl: opt(str({ format: "uri" })),
  repository: opt(repository),
  icons: opt(arrayOf(icon)),
  $schema: opt(str({ format: "uri" })),
  packages: opt(arrayOf(packageEntry)),
  remotes: opt(arrayOf(transport(["streamable-http", "sse"], true))),
  _meta: opt(obj({})),
});

const officialMeta = obj(
  {
    status: opt(oneOf("active", "deprecated", "deleted")),
    statusMessage: opt(str({ max: 500 })),
    statusChangedAt: opt(str({ format: "date-time" })),
    publishedAt: opt(str({ format: "date-time" })),
    updatedAt: opt(str({ format: "date-time" })),
    isLatest: opt(bool),
  },
  true,
);

const serverResponse = obj({ server: req(serverDetail), _meta: opt(obj({ [OFFICIAL]: opt(officialMeta) })) });

const serverList = obj({ servers: req(arrayOf(serverResponse)), metadata: opt(obj({ nextCursor: opt(str()), count: opt(integer) })) });

// The spec lists `error` as the only property of every 4xx/5xx body; a body without it tells the caller nothing, so it is required here.
const errorBody = obj({ error: req(str()) });

function run(check: Check, x: unknown): string[] {
  const out: string[] = [];
  check(out, "", x);
  return out;
}

/** Problems of a ServerDetail (a server.json document); empty when it is valid. */
export function checkServerDetail(x: unknown): string[] {
  return run(serverDetail, x);
}

/** Problems of a ServerResponse: `{server, _meta?}` with the official registry metadata checked strictly. */
export function checkServerResponse(x: unknown): string[] {
  return run(serverResponse, x);
}

/** Problems of a ServerList: `{servers: ServerResponse[], metadata?: {nextCursor?, count?}}`. */
export function checkServerList(x: unknown): string[] {
  return run(serverList, x);
}

/** Problems of an error body: `{error: string}`. */
export function checkError(x: unknown): string[] {
  return run(errorBody, x);
}

/** Throws listing the problems, if there are any (works inside a test without `expect`). */
export function assertShape(problems: string[], what: string): void {
  if (problems.length) throw new Error(`${what} does not match the MCP Registry spec:\n  ${problems.join("\n  ")}`);
}

/** server.json documents the spec accepts: one per way of reaching a server our importer must understand. */
export const VALID_EXAMPLES: ServerJson[] = [
  // The least a remote server can say.
  {
    $schema: SCHEMA_URL,
    name: "io.github.example/minimal-remote",
    description: "A remote server with nothing but a URL.",
    version: "1.0.0",
    remotes: [{ type: "streamable-http", url: "https://mcp.example.com/mcp" }],
  },
  // A URL template whose variable has a default, so it can be filled in without asking anyone.
  {
    $schema: SCHEMA_URL,
    name: "com.example/regional",
    description: "Served from a region chosen through a URL variable.",
    version: "2.3.1",
    remotes: [{ type: "streamable-http", url: "https://{region}.example.com/mcp", variables: { region: { description: "Data centre", default: "eu", choices: ["eu", "us"] } } }],
  },
  // A URL template whose variable has no default: someone must supply it.
  {
    $schema: SCHEMA_URL,
    name: "com.example/tenanted",
    description: "Each customer has their own host.",
    version: "0.9.0",
    remotes: [{ type: "streamable-http", url: "https://{tenant}.example.net/mcp", variables: { tenant: { description: "Your tenant id", isRequired: true } } }],
  },
  // Packages only, run locally over stdio: nothing a remote registry can connect to.
  {
    $schema: SCHEMA_URL,
    name: "io.github.example/notes",
    description: "Local notes server installed from npm.",
    version: "0.3.1",
    repository: { url: "https://github.com/example/notes", source: "github" },
    packages: [
      {
        registryType: "npm",
        identifier: "@example/mcp-notes",
        version: "0.3.1",
        runtimeHint: "npx",
        transport: { type: "stdio" },
        packageArguments: [{ type: "positional", valueHint: "notes_dir" }],
        environmentVariables: [{ name: "NOTES_DIR", format: "filepath", isRequired: true }],
      },
    ],
  },
  // The older HTTP+SSE transport.
  {
    $schema: SCHEMA_URL,
    name: "org.example/legacy-sse",
    description: "Still speaks HTTP+SSE.",
    version: "1.4.2",
    remotes: [{ type: "sse", url: "https://legacy.example.org/sse" }],
  },
  // A secret Authorization header the user must supply, built from a variable.
  {
    $schema: SCHEMA_URL,
    name: "com.example/secured",
    title: "Secured",
    description: "Needs a bearer token.",
    version: "3.0.0",
    websiteUrl: "https://example.com/secured",
    remotes: [
      {
        type: "streamable-http",
        url: "https://secured.example.com/mcp",
        headers: [
          {
            name: "Authorization",
            description: "Your API token",
            isRequired: true,
            isSecret: true,
            value: "Bearer {token}",
            variables: { token: { isRequired: true, isSecret: true } },
          },
        ],
      },
    ],
  },
  // 100 code points but 200 UTF-16 units: the limit counts characters, not JavaScript string length.
  {
    $schema: SCHEMA_URL,
    name: "com.example/weather-emoji",
    description: "🌤".repeat(100),
    version: "1.0.0",
    remotes: [{ type: "streamable-http", url: "https://weather.example.com/mcp" }],
  },
];

/** server.json documents the spec rejects, each for one reason (given in its description where it has one). */
export const INVALID_EXAMPLES: ServerJson[] = [
  { name: "example-without-namespace", description: "The name has no slash between namespace and name.", version: "1.0.0" },
  { description: "There is no name at all.", version: "1.0.0" },
  { name: "com.example/wordy", description: `${"This description goes on and on. ".repeat(3)}And then some more.`, version: "1.0.0" },
  {
    name: "com.example/floating",
    description: "The package pins the floating tag latest.",
    version: "1.0.0",
    packages: [{ registryType: "npm", identifier: "@example/floating", version: "latest", transport: { type: "stdio" } }],
  },
  {
    name: "com.example/websocket",
    description: "Remotes are streamable-http or sse, never websocket.",
    version: "1.0.0",
    remotes: [{ type: "websocket", url: "https://ws.example.com/mcp" }],
  },
];
