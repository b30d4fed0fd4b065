import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { checkOperations, detectFormat, kvModel, operationsFromEvents, parseHistory, registerModel } from "./index.js";
import { corpusDir } from "./testing.js";

test("reproduces every verdict of the external linearizability corpus", () => {
  const dir = corpusDir();
  const expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8")) as Record<string, string>;
  const files = Object.keys(expected);
  assert.equal(files.length, 108, "the corpus lists 108 histories");
  const wrong: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(dir, file), "utf8");
    const format = detectFormat(text);
    const model = format === "edn" ? kvModel : registerModel;
    const result = checkOperations(model as typeof registerModel, operationsFromEvents(parseHistory(text, format)));
    if (result.verdict !== expected[file]) wrong.push(`${file}: expected ${expected[file]}, got ${result.verdict}`);
  }
  assert.deepEqual(wrong, []);
});
