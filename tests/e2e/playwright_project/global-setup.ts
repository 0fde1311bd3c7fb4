// Fails once when QUALGENT_FIXTURE_SETUP_FAILS names a marker file that does not exist yet (it is then made):
// a device that could not be reached, as AppWright's global setup would fail.
import * as fs from "node:fs";

export default async function globalSetup(): Promise<void> {
  const marker = process.env.QUALGENT_FIXTURE_SETUP_FAILS;
  if (marker && !fs.existsSync(marker)) {
    fs.writeFileSync(marker, "failed once\n");
    throw new Error("global setup failed: no device reachable");
  }
  const log = process.env.QUALGENT_FIXTURE_RUN_LOG;
  if (log) fs.appendFileSync(log, `run ${process.env.QUALGENT_GROUP_ID} ${process.env.QUALGENT_BUILD_PATH}\n`);
}
