/**
 * What the entry points (main.ts, stdio.ts, import.ts) share on the command line: --help, strict flags,
 * reading .env before the logger exists, and stopping when the task runner that started the process is gone.
 */
import process from "node:process";
import { setInterval } from "node:timers";
import { parseArgs } from "node:util";
import { readDotEnv, variablesHelp } from "./config.ts";

const PARENT_AT_LOAD = process.ppid;

/** One flag of a command: a switch, or an option taking a value (shown as `value` in the help). */
type Flag = { type: "boolean" | "string"; value?: string; help: string };

/** What --help says about an entry point, and which flags and arguments it takes (--help/-h is added). */
export type Command = {
  /** The entry point as messages name it, e.g. "main.ts". */
  name: string;
  /** Ways to run it, one a line. */
  usage: string[];
  /** What it does, in a few lines. */
  about: string;
  /** Its positional arguments, in order (none: a positional is an error). */
  args?: { name: string; help: string }[];
  flags?: Record<string, Flag>;
};

/** The flags and positional arguments of a command line that passed. */
export type CommandLine = { values: Record<string, string | boolean | undefined>; positionals: string[] };

const HELP: Flag = { type: "boolean", help: "Print this help and exit (nothing is opened, nothing listens)" };

/** The --help text: usage, what it does, its arguments and flags, and every environment variable with its default. */
function helpText(command: Command): string {
  const rows = [
    ...(command.args ?? []).map((a) => [a.name, a.help]),
    ...Object.entries(command.flags ?? {}).map(([name, f]) => [`--${name}${f.value ? ` ${f.value}` : ""}`, f.help]),
    ["-h, --help", HELP.help],
  ];
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  const [first, ...rest] = command.usage;
  return [
    `Usage: ${first}`,
    ...rest.map((u) => `       ${u}`),
    "",
    command.about,
    "",
    command.args?.length ? "Arguments and options:" : "Options:",
    ...rows.map(([left, help]) => `  ${left.padEnd(width)}${help}`),
    "",
    "Environment variables (a .env file in the working directory is read too; the environment wins):",
    ...variablesHelp()
      .split("\n")
      .map((line) => `  ${line}`),
    "",
    "See docs/configuration.md for what each variable means.",
    "",
  ].join("\n");
}

/**
 * Parses the command line strictly. Returns it, or undefined when it was handled here: --help printed on
 * stdout (exit status 0), or an unknown flag, a missing value or a stray argument reported in one line on
 * stderr (exit status 2). Either way nothing else should run: the caller returns and the process ends.
 */
export function parseCommandLine(command: Command, args: string[] = process.argv.slice(2)): CommandLine | undefined {
  const options = Object.fromEntries([...Object.entries(command.flags ?? {}).map(([name, f]) => [name, { type: f.type }]), ["help", { type: "boolean", short: "h" }]]);
  const refuse = (what: string) => {
    process.stderr.write(`${command.name}: ${what} (run it with --help for the usage)\n`);
    process.exitCode = 2;
    return undefined;
  };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: (command.args?.length ?? 0) > 0 });
  } catch (err) {
    const { code, message } = err as { code?: string; message: string };
    const named = /'([^']*)'/.exec(message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return refuse(`unknown option ${named}`);
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") return refuse(`unexpected argument "${named}"`);
    // ERR_PARSE_ARGS_INVALID_OPTION_VALUE: "Option '--user <value>' argument missing", "Option '--gateway' does not take an argument".
    const flag = named?.split(" ")[0] ?? "";
    return refuse(/argument missing/.test(message) ? `option ${flag} needs a value` : `option ${flag} takes no value`);
  }
  if (parsed.values.help) {
    process.stdout.write(helpText(command));
    process.exitCode = 0;
    return undefined;
  }
  const extra = parsed.positionals[command.args?.length ?? 0];
  if (extra !== undefined) return refuse(`unexpected argument "${extra}"`);
  return { values: parsed.values as CommandLine["values"], positionals: parsed.positionals };
}

/**
 * Reads ./.env into env (never overriding what is set). Called before the logger is created, so that a
 * LOG_FORMAT set there shapes every line; a file that cannot be read is returned, for that logger to report.
 */
export function readDotEnvFile(env: Record<string, string | undefined>): Error | undefined {
  try {
    readDotEnv(".env", env);
    return undefined;
  } catch (err) {
    return new Error(`Cannot read .env: ${(err as Error).message}`);
  }
}

/**
 * When a task runner started this process (npm and deno task set INIT_CWD for what they run), calls `gone`
 * once the process that started it has exited. A SIGTERM to `npm start` reaches only the `sh -c` between
 * npm and node, which dies of it; a SIGTERM to `deno task start` reaches only the deno it runs first (the
 * npm package's deno shim), which dies of it too. Either way the registry was left running, orphaned, on
 * its port. Watching the parent needs no permission on Deno, unlike /proc.
 *
 * The parent is the one this process had when this module was loaded, before start-up: a launcher ended
 * while the database was still being opened or migrated is noticed too (asking for the parent once the
 * registry listens would get init, or a subreaper, and watch it for good).
 *
 * Without INIT_CWD nothing is watched: `nohup node dist/main.mjs &` keeps running when its terminal closes
 * (so does `nohup npm start &`: the `sh -c` above the registry lives on). Checked twice a second; the timer
 * never keeps the process alive.
 */
export function onLauncherGone(env: Record<string, string | undefined>, gone: (launcher: string) => void): void {
  const parent = PARENT_AT_LOAD;
  if (!env.INIT_CWD || parent <= 1) return;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    gone(`the process that started it (pid ${parent})`);
  }, 500);
  timer.unref();
}
