import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "@playwright/test";

// Waits until the test that runs it drops the gate file into QUALGENT_FIXTURE_STATE (or 60 s pass): the runner
// keeps running while the test checks that earlier files were already reported.
test("waits for the gate", async () => {
  const gate = path.join(process.env.QUALGENT_FIXTURE_STATE ?? "/nonexistent", "gate");
  const deadline = Date.now() + 60_000;
  while (!fs.existsSync(gate) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
});
