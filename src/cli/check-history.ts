/** `shoal check-history FILE [--model register|kv]`: decides whether a recorded history is linearizable. */
import { readFileSync } from "node:fs";
import {
  type HistoryFormat,
  HistoryError,
  checkOperations,
  describeOperation,
  detectFormat,
  models,
  operationsFromEvents,
  parseHistory,
} from "../check/index.js";

export interface CheckHistoryOptions {
  model?: string;
  format?: string;
  timeout: string;
}

/** Exit status: 0 linearizable, 1 not linearizable, 2 unknown or unreadable input. */
export function checkHistoryCommand(file: string, opts: CheckHistoryOptions): number {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    console.error(`check-history: cannot read ${file}: ${(e as Error).message}`);
    return 2;
  }
  const timeoutSec = Number(opts.timeout);
  if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) {
    console.error(`check-history: --timeout must be a positive number of seconds, got ${opts.timeout}`);
    return 2;
  }
  try {
    const format = (opts.format ?? detectFormat(text)) as HistoryFormat;
    const modelName = opts.model ?? (format === "edn" ? "kv" : "register");
    const model = models[modelName];
    if (model === undefined) {
      console.error(`check-history: unknown model ${modelName} (use register or kv)`);
      return 2;
    }
    const ops = operationsFromEvents(parseHistory(text, format));
    const started = Date.now();
    const deadline = started + timeoutSec * 1000;
    const result = checkOperations(model, ops, { shouldStop: () => Date.now() > deadline });
    const ms = Date.now() - started;
    const summary = `${ops.length} operations, ${result.partitions} partition(s), ${result.steps} search steps, ${ms} ms`;
    switch (result.verdict) {
      case "linearizable":
        console.log(`linearizable (${summary})`);
        return 0;
      case "unknown":
        console.log(`unknown: no verdict within ${timeoutSec} s (${summary})`);
        return 2;
      case "not-linearizable": {
        const f = result.failure!;
        console.log(`not linearizable (${summary})`);
        if (f.key !== "") console.log(`key: ${JSON.stringify(f.key)}`);
        console.log(`longest linearizable prefix: ${f.longestPrefix.length} operations; last ones:`);
        for (const op of f.longestPrefix.slice(-5)) console.log(`  ${describeOperation(op)}`);
        console.log("operations that cannot be linearized after it:");
        for (const op of f.stuck) console.log(`  ${describeOperation(op)}`);
        return 1;
      }
    }
  } catch (e) {
    if (e instanceof HistoryError || e instanceof SyntaxError) {
      console.error(`check-history: ${file}: ${e.message}`);
      return 2;
    }
    throw e;
  }
}
