import { test } from "@playwright/test";

test("hangs", async () => {
  await new Promise((resolve) => setTimeout(resolve, 600_000));
});
