/**
 * The logger every component takes: the subset of pino's interface Shoal uses, so production injects a
 * pino child logger (with fields such as node, shard, request id) and tests and the simulator inject a
 * silent one or a collecting one. Components never create loggers of their own.
 */
export interface LogFn {
  (msg: string): void;
  (fields: Record<string, unknown>, msg?: string): void;
}

export interface Logger {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  /** A logger whose every line carries `fields` too (e.g. `{ shard: 7 }`). */
  child(fields: Record<string, unknown>): Logger;
}

const ignore: LogFn = () => undefined;

/** Drops every line. */
export const silentLogger: Logger = { error: ignore, warn: ignore, info: ignore, debug: ignore, child: () => silentLogger };
