// qualgent's Playwright reporter: streams each test's begin and end to the agent that started the run, as
// JSON lines over the Unix socket named by QUALGENT_REPORTER_SOCKET, while the run goes on.
//
// Events (one JSON object a line):
//   {"event": "begin", "files": {"<abs file>": <tests>}, "retries": {...}}   the run's tests, per file
//   {"event": "test_begin", "file", "title", "retry"}
//   {"event": "test_end", "file", "title", "retry", "status", "expected_status", "duration_ms", "final",
//    "error", "error_location", "attachments": [{"name", "path", "content_type"}]}
//   {"event": "error", "error", "error_location"}        an error outside any test (global setup, a bad file)
//   {"event": "end", "status"}                           the run's end: passed | failed | timedout | interrupted
// A test's end is "final" when no retry of it will follow: it ended as expected (passed, skipped, an expected
// failure), or it used up its retries. The agent decides each file's outcome from these; it never reads stdout.
"use strict";

const net = require("node:net");
const path = require("node:path");

const FIRST_ERROR_CHARS = 4000;

function location(loc) {
  if (!loc || !loc.file) return null;
  return `${loc.file}:${loc.line}`;
}

// The first error of a test's try and where it was raised; a timeout has no location of its own: the test's.
function firstError(test, result) {
  const error = (result.errors && result.errors[0]) || result.error;
  if (!error) return { error: `test ${result.status}`, error_location: location(test.location) };
  const message = stripAnsi(error.message || error.value || String(error)).slice(0, FIRST_ERROR_CHARS);
  return { error: message, error_location: location(error.location) || location(test.location) };
}

// A test's title within its file: describe blocks and name (titlePath is root, project, file, then those).
function testTitle(test) {
  return test.titlePath().slice(3).join(" › ");
}

function stripAnsi(text) {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, "");
}

class QualgentReporter {
  constructor() {
    this.queue = [];
    this.connected = false;
    this.socket = null;
    const where = process.env.QUALGENT_REPORTER_SOCKET;
    if (!where) {
      process.stderr.write("qualgent reporter: QUALGENT_REPORTER_SOCKET is not set; reporting nothing\n");
      return;
    }
    this.socket = net.createConnection(where, () => {
      this.connected = true;
      for (const line of this.queue) this.socket.write(line);
      this.queue = [];
    });
    this.socket.on("error", (err) => {
      process.stderr.write(`qualgent reporter: ${err.message}\n`);
      this.socket = null;
    });
  }

  send(event) {
    if (!this.socket) return;
    const line = JSON.stringify(event) + "\n";
    if (this.connected) this.socket.write(line);
    else this.queue.push(line);
  }

  printsToStdio() {
    return false;
  }

  onBegin(config, suite) {
    const files = {};
    for (const test of suite.allTests()) {
      const file = path.resolve(test.location.file);
      files[file] = (files[file] || 0) + 1;
    }
    this.send({ event: "begin", files });
  }

  onTestBegin(test, result) {
    this.send({
      event: "test_begin",
      file: path.resolve(test.location.file),
      title: testTitle(test),
      retry: result.retry,
    });
  }

  onTestEnd(test, result) {
    const asExpected = result.status === test.expectedStatus || result.status === "skipped";
    this.send({
      event: "test_end",
      file: path.resolve(test.location.file),
      title: testTitle(test),
      retry: result.retry,
      status: result.status,
      expected_status: test.expectedStatus,
      duration_ms: result.duration,
      final: asExpected || result.retry >= test.retries || result.status === "interrupted",
      ...(asExpected ? { error: null, error_location: null } : firstError(test, result)),
      attachments: (result.attachments || []).map((a) => ({
        name: a.name,
        path: a.path || null,
        content_type: a.contentType,
      })),
    });
  }

  onError(error) {
    this.send({
      event: "error",
      error: stripAnsi(error.message || error.value || String(error)).slice(0, FIRST_ERROR_CHARS),
      error_location: location(error.location),
    });
  }

  async onEnd(result) {
    this.send({ event: "end", status: result.status });
    const socket = this.socket;
    if (!socket) return;
    await new Promise((resolve) => {
      socket.end(resolve);
      setTimeout(resolve, 2000).unref();
    });
  }
}

module.exports = QualgentReporter;
