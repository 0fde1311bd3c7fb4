#!/bin/sh
# `--install` for BrowserStack agents: upload the build once per group and remember its bs:// id, so
# every test of the group reuses it instead of AppWright uploading the file again on each call.
# Usage: browserstack-upload.sh VERSION   (uploads builds/VERSION.apk, writes builds/VERSION.bs-url)
# appwright.config.ts then reads it, e.g.:
#   buildPath: readFileSync(`builds/${process.env.QUALGENT_APP_VERSION_ID}.bs-url`, "utf8").trim()
set -eu
version="$1"
: "${BROWSERSTACK_USERNAME:?set BROWSERSTACK_USERNAME}" "${BROWSERSTACK_ACCESS_KEY:?set BROWSERSTACK_ACCESS_KEY}"
curl --fail --silent --show-error -u "$BROWSERSTACK_USERNAME:$BROWSERSTACK_ACCESS_KEY" \
  -X POST "https://api-cloud.browserstack.com/app-automate/upload" \
  -F "file=@builds/$version.apk" -F "custom_id=$version" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["app_url"])' > "builds/$version.bs-url"
echo "uploaded builds/$version.apk as $(cat "builds/$version.bs-url")"
