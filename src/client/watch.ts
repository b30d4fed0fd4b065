/**
 * The cluster's watch stream (`GET /v1/cluster/watch`, server-sent events) as an async iterator of
 * events: `snapshot` (every node and live shard) first, then `node` and `shard` on each change.
 */
import type { IncomingMessage } from "node:http";
import { assert } from "../util/assert.js";

export interface WatchEvent {
  event: "snapshot" | "node" | "shard" | (string & {});
  data: unknown;
}

/** An event larger than this is no event of the API's (it sends a map of at most a few thousand shards). */
const EVENT_BYTES_MAX = 64 * 1024 * 1024;

/** The events of an event stream until it ends or the loop stops (which closes it). */
export async function* watchEvents(res: IncomingMessage): AsyncGenerator<WatchEvent> {
  res.setEncoding("utf8");
  let buffered = "";
  try {
    for await (const chunk of res) {
      buffered += chunk as string;
      assert(buffered.length <= EVENT_BYTES_MAX, `a watch event over ${EVENT_BYTES_MAX} bytes`);
      for (let end = buffered.indexOf("\n\n"); end !== -1; end = buffered.indexOf("\n\n")) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        // A comment line (": keepalive") has neither field.
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) yield { event, data: JSON.parse(data) as unknown };
      }
    }
  } finally {
    res.destroy();
  }
}
