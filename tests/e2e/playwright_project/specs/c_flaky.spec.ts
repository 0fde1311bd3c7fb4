import * as fs from "node:fs";
import * as path from "node:path";
import { expect, test } from "@playwright/test";

// Fails on its first try, passes on the next: the marker file in QUALGENT_FIXTURE_STATE remembers.
test("syncs the cart", async () => {
  const marker = path.join(process.env.QUALGENT_FIXTURE_STATE ?? "/nonexistent", "flaky-failed-once");
  const first = !fs.existsSync(marker);
  fs.writeFileSync(marker, "x");
  expect(first, "first try fails").toBe(false);
});
