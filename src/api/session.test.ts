import { test } from "node:test";
import assert from "node:assert/strict";
import { ApiError } from "./error-table.js";
import { SESSION_SHARDS_MAX, sessionOf } from "./session.js";

test("a request's session token: shard:version pairs, blanks and empty pairs skipped, the highest version of a shard kept", () => {
  assert.deepEqual([...sessionOf(undefined)], []);
  assert.deepEqual([...sessionOf("")], []);
  assert.deepEqual([...sessionOf(" 3:10 ,, 4:2\t,3:7,")], [[3, 10], [4, 2]]);
  assert.deepEqual([...sessionOf(["1:5", "1000000:9007199254740991"])], [[1, 5], [1000000, Number.MAX_SAFE_INTEGER]], "headers sent twice are one token");
});

test("a malformed session token is refused with a 400 naming the header, whatever is wrong with it", () => {
  const refused = (header: string): string => {
    try {
      sessionOf(header);
    } catch (e) {
      assert.ok(e instanceof ApiError);
      assert.equal(e.code, "bad_request");
      assert.equal(e.extra.field, "shoal-session");
      assert.equal(e.status, 400);
      return e.message;
    }
    assert.fail(`accepted ${JSON.stringify(header)}`);
  };
  for (const bad of ["1:abc", "7", ":5", "5:", "-1:3", "6:-2", "8:1.5", "9:4:1", "1 :2", "0x1:2", "1:1e3", "1234567890:1", "1:12345678901234567", "1:9007199254740992"]) {
    assert.match(refused(`2:3,${bad}`), /shard:version pairs/, bad);
  }
  const many = Array.from({ length: SESSION_SHARDS_MAX + 1 }, (_, i) => `${i}:1`).join(",");
  assert.match(refused(many), new RegExp(`carries ${SESSION_SHARDS_MAX + 1} shards: at most ${SESSION_SHARDS_MAX}`));
});
