// A Playwright project shaped like an AppWright one (projects per platform, one worker, files in path order),
// whose specs need no browser or device. qualgent's --appwright tests run it with the real runner.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "./specs",
  workers: 1,
  fullyParallel: false,
  timeout: 60_000,
  globalSetup: "./global-setup.ts",
  projects: [{ name: "android" }, { name: "ios" }],
});
