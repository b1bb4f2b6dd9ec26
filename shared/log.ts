/** A tiny leveled logger writing one line per event to stderr (stdout stays free for stdio MCP). */

export type Log = {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
};

/** A logger that hands each formatted line to `write` (stderr by default). */
export function createLog(write: (line: string) => void = (line) => console.error(line)): Log {
  const emit = (level: string, msg: string, fields?: Record<string, unknown>) => {
    const extra = fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : "";
    write(`${new Date().toISOString()} ${level} ${msg}${extra}`);
  };
  return {
    info: (msg, fields) => emit("INFO", msg, fields),
    warn: (msg, fields) => emit("WARN", msg, fields),
    error: (msg, fields) => emit("ERROR", msg, fields),
  };
}
