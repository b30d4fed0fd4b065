import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionTokens } from "./session.js";
import { SESSION_SHARDS_MAX } from "../api/session.js";

test("a session token takes the highest version of each shard from answers' headers and skips malformed pairs", () => {
  const s = new SessionTokens();
  assert.equal(s.token(), "");
  s.merge("3:10");
  s.merge("3:7"); // older: kept at 10
  s.merge("4:2,3:12");
  assert.equal(s.token(), "4:2,3:12");
  // Malformed pairs: no colon, nothing before it, not numbers, negative, fractional, an empty pair.
  s.merge(":5,7,x:1,5:y,-1:3,6:-2,8:1.5,,9:4:1");
  assert.equal(s.token(), "4:2,3:12");
  s.merge("");
  s.merge(undefined);
  assert.equal(s.token(), "4:2,3:12");
  // A saved token goes on as a new client's.
  assert.equal(new SessionTokens(s.token()).token(), "4:2,3:12");
});

test("a session token keeps the SESSION_SHARDS_MAX shards raised last", () => {
  const s = new SessionTokens();
  for (let shard = 1; shard <= SESSION_SHARDS_MAX + 2; shard++) s.merge(`${shard}:${shard * 10}`);
  const pairs = s.token().split(",");
  assert.equal(pairs.length, SESSION_SHARDS_MAX);
  assert.equal(pairs[0], `3:30`);
  assert.equal(pairs.at(-1), `${SESSION_SHARDS_MAX + 2}:${(SESSION_SHARDS_MAX + 2) * 10}`);
});
