import { expect, test } from "@playwright/test";

test("opens the app", async () => {
  expect(1 + 1).toBe(2);
});

test("logs in", async () => {
  expect("qualgent").toContain("gent");
});
