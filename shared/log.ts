/** A tiny leveled logger writing one line per event to stderr (stdout stays free for stdio MCP). */

export type Log = {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
};

/** How a line looks: "text" for people, "json" (one object per line) for log shippers (LOG_FORMAT). */
export type LogFormat = "text" | "json";

/** The format LOG_FORMAT asks for; anything but "json" is text (the configuration refuses other values at start-up). */
export const logFormatOf = (env: Record<string, string | undefined>): LogFormat => (env.LOG_FORMAT?.trim() === "json" ? "json" : "text");

/**
 * A logger that hands each formatted line to `write` (stderr by default). JSON lines are
 * `{"time","level","msg",...fields}`; a field never replaces time, level or msg.
 */
export function createLog(write: (line: string) => void = (line) => console.error(line), format: LogFormat = "text"): Log {
  const emit = (level: string, msg: string, fields?: Record<string, unknown>) => {
    const time = new Date().toISOString();
    if (format === "json") {
      const { time: _t, level: _l, msg: _m, ...rest } = fields ?? {};
      write(JSON.stringify({ time, level: level.toLowerCase(), msg, ...rest }));
      return;
    }
    const extra = fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : "";
    write(`${time} ${level} ${msg}${extra}`);
  };
  return {
    info: (msg, fields) => emit("INFO", msg, fields),
    warn: (msg, fields) => emit("WARN", msg, fields),
    error: (msg, fields) => emit("ERROR", msg, fields),
  };
}
