import { test } from "@playwright/test";

// Stands in for an AppWright session on BrowserStack: fails as BrowserStack does for an app it deleted (30 days
// after its upload) when the build given is the one QUALGENT_FIXTURE_GONE_APP names.
test("opens the app on BrowserStack", async () => {
  const gone = process.env.QUALGENT_FIXTURE_GONE_APP;
  if (gone && process.env.QUALGENT_BUILD_PATH === gone) {
    throw new Error(`[BROWSERSTACK_APP_DELETED] app ${gone} was deleted`);
  }
});
