// capsule's MCP server against the official TypeScript SDK client, over
// stdio and Streamable HTTP.  Run by `make interop-test` (node --test).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema, ElicitRequestSchema, LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const CAPSULE = process.env.CAPSULE ?? new URL("../../build/capsule", import.meta.url).pathname;
const TOKEN = "interop-test-token";

function textOf(result) {
  return result.content.find((c) => c.type === "text").text;
}

async function runCode(client, python_code, extra = {}, options = {}) {
  return client.callTool({ name: "run_python_code", arguments: { python_code, ...extra } },
                         undefined, options);
}

// Starts `capsule serve --http 127.0.0.1:0` (with `args`) and resolves with its URL.
function startHttpServer(args = []) {
  const child = spawn(CAPSULE, ["serve", "--http", "127.0.0.1:0", "--workers", "2", ...args], {
    env: { ...process.env, CAPSULE_TOKEN: TOKEN },
    stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let log = "";
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = log.match(/listening on (http:\/\/\S+)/);
      if (match) resolve({ child, url: match[1] });
    });
    child.on("exit", (code) => reject(new Error(`server exited ${code}: ${log}`)));
  });
}

async function connectHttp(url, token = TOKEN, capabilities = {}, setup = () => {}) {
  const client = new Client({ name: "capsule-interop", version: "1.0.0" }, { capabilities });
  setup(client);
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

async function connectStdio(args = [], capabilities = {}, setup = () => {}) {
  const client = new Client({ name: "capsule-interop", version: "1.0.0" }, { capabilities });
  setup(client);
  await client.connect(new StdioClientTransport({ command: CAPSULE,
                                                  args: ["serve", "--stdio", ...args],
                                                  stderr: "ignore" }));
  return client;
}

// The same checks over both transports.
function commonTests(name, connect) {
  let client;
  before(async () => { client = await connect(); });
  after(async () => { await client?.close(); });

  test(`${name}: lists run_python_code with its schemas`, async () => {
    const { tools } = await client.listTools();
    const run = tools.find((t) => t.name === "run_python_code");
    assert.ok(run, "run_python_code is listed");
    assert.deepEqual(run.inputSchema.required, ["python_code"]);
    assert.ok(run.inputSchema.properties.global_variables);
    assert.ok(run.outputSchema.properties.status);
    for (const tool of ["create_session", "close_session", "list_files", "read_file", "write_file"])
      assert.ok(tools.some((t) => t.name === tool), tool);
  });

  test(`${name}: runs code and formats the result like mcp-run-python`, async () => {
    const result = await runCode(client, "print('hello')\n{'answer': 6 * 7}");
    assert.equal(textOf(result),
      "<status>success</status>\n<output>\nhello\n</output>\n<return_value>\n" +
      '{\n  "answer": 42\n}\n</return_value>');
    assert.equal(result.structuredContent.status, "success");
    assert.equal(result.structuredContent.output, "hello");
  });

  test(`${name}: global_variables are bound, errors come back as run-error`, async () => {
    const ok = await runCode(client, "name.upper()", { global_variables: { name: "capsule" } });
    assert.match(textOf(ok), /<return_value>\nCAPSULE\n<\/return_value>/);
    const bad = await runCode(client, "1 / 0");
    assert.match(textOf(bad), /^<status>run-error<\/status>\n<error>\nTraceback/);
    assert.match(textOf(bad), /File "main.py", line 1/);
    assert.match(textOf(bad), /ZeroDivisionError/);
  });

  test(`${name}: top-level await`, async () => {
    const result = await runCode(client, "import asyncio\nawait asyncio.sleep(0)\n'awaited'");
    assert.match(textOf(result), /<return_value>\nawaited\n<\/return_value>/);
  });

  test(`${name}: sessions keep state and files`, async () => {
    const created = await client.callTool({ name: "create_session", arguments: {} });
    const session_id = created.structuredContent.session_id;
    assert.match(session_id, /^[0-9a-f]{32}$/);
    await runCode(client, "x = 41", { session_id });
    const next = await runCode(client, "x + 1", { session_id });
    assert.match(textOf(next), /<return_value>\n42\n<\/return_value>/);
    await client.callTool({ name: "write_file",
                            arguments: { session_id, path: "notes/a.txt", content: "héllo" } });
    const listing = await client.callTool({ name: "list_files",
                                            arguments: { session_id, path: "notes" } });
    assert.equal(listing.structuredContent.result[0].name, "a.txt");
    const read = await client.callTool({ name: "read_file",
                                         arguments: { session_id, path: "notes/a.txt" } });
    assert.equal(read.structuredContent.text, "héllo");
    const fresh = await runCode(client, "'x' in globals()");
    assert.match(textOf(fresh), /<return_value>\nfalse\n<\/return_value>/);
    const closed = await client.callTool({ name: "close_session", arguments: { session_id } });
    assert.equal(closed.isError, false);
    const gone = await runCode(client, "x", { session_id });
    assert.equal(gone.structuredContent.status, "run-error");
  });

  test(`${name}: output arrives as log notifications while the code runs`, async () => {
    const lines = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => lines.push(n.params));
    await client.setLoggingLevel("info");
    await runCode(client, "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)");
    assert.ok(lines.some((l) => l.logger === "stdout" && l.data === "to stdout"), JSON.stringify(lines));
    assert.ok(lines.some((l) => l.logger === "stderr" && l.data === "to stderr"));
    await client.setLoggingLevel("error");
    lines.length = 0;
    await runCode(client, "print('quiet')");
    assert.equal(lines.length, 0, "info messages are not sent below the level");
  });

  test(`${name}: progress notifications when a progress token is sent`, async () => {
    // The SDK 1.x client dispatches a notification on a later microtask but a
    // response at once, and the response retires the progress handler: a
    // notification read in the same chunk as the response is dropped as an
    // "unknown token" (typescript-sdk#2580, a race no server can avoid).  So
    // the program waits after printing, and the notifications are read well
    // before the response; up to three calls on a heavily loaded machine.
    const progress = [];
    for (let attempt = 0; attempt < 3 && progress.length === 0; attempt++)
      await runCode(client, "print('step')\nimport time\ntime.sleep(0.5)", {},
                    { onprogress: (p) => progress.push(p) });
    assert.ok(progress.length >= 1, "at least one progress notification");
  });

  test(`${name}: a cancelled call stops its run`, async () => {
    const controller = new AbortController();
    const started = Date.now();
    const call = runCode(client, "while True: pass", {}, { signal: controller.signal });
    setTimeout(() => controller.abort(), 500);
    await assert.rejects(call);
    // The worker was killed, not left spinning: the next call is served at once.
    const after = await runCode(client, "'still serving'");
    assert.match(textOf(after), /still serving/);
    assert.ok(Date.now() - started < 20000, "well before the 30 s timeout");
  });
}

describe("stdio", () => commonTests("stdio", connectStdio));

describe("http", () => {
  let server;
  before(async () => { server = await startHttpServer(); });
  after(() => { server?.child.kill("SIGTERM"); });
  describe("with the SDK client", () => commonTests("http", () => connectHttp(server.url)));

  test("http: a wrong token is refused with 401", async () => {
    await assert.rejects(connectHttp(server.url, "wrong-token"), /401|nauthorized/);
  });
});

// --- the server asks the client mid-call: approval (elicitation), describe (sampling) ---

// Two host functions backed by /bin/cat (the result is the arguments, so a
// result proves the function ran); only those matching "pay*" need approval.
const APPROVAL_ARGS = ["--function", "pay=/bin/cat", "--function", "lookup=/bin/cat",
                       "--require-approval", "pay*"];
const CALL_PAY =
  "from capsule.functions import pay, lookup\n" +
  "try:\n    r = pay(amount=10)\nexcept PermissionError as e:\n    r = 'denied: ' + str(e)\n" +
  "[r, lookup(order=7)]";

// A 2x2 red PNG, the bytes describe sends.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg==",
  "base64");

// One client per test: its capabilities and handlers are what is tested.
function askingTests(name, connect) {
  test(`${name}: an approving elicitation handler lets the call run`, async () => {
    const asked = [];
    const client = await connect(APPROVAL_ARGS, { elicitation: {} }, (c) =>
      c.setRequestHandler(ElicitRequestSchema, async (request) => {
        asked.push(request.params);
        return { action: "accept", content: { approve: true } };
      }));
    try {
      const result = await runCode(client, CALL_PAY);
      assert.equal(result.structuredContent.status, "success", textOf(result));
      assert.deepEqual(JSON.parse(result.structuredContent.return_value),
                       [{ amount: 10 }, { order: 7 }]);
      assert.equal(asked.length, 1, "asked once: lookup needs no approval");
      assert.match(asked[0].message, /'pay' with arguments \{"amount":10\}/);
      assert.equal(asked[0].requestedSchema.properties.approve.type, "boolean");
    } finally {
      await client.close();
    }
  });

  test(`${name}: a declining handler is a PermissionError, and the function does not run`,
       async () => {
    const client = await connect(APPROVAL_ARGS, { elicitation: {} }, (c) =>
      c.setRequestHandler(ElicitRequestSchema, async () => ({ action: "decline" })));
    try {
      const result = await runCode(client, CALL_PAY);
      const [paid, looked] = JSON.parse(result.structuredContent.return_value);
      assert.match(paid, /^denied: calling 'pay' needs approval, which was refused: declined/);
      assert.deepEqual(looked, { order: 7 });
    } finally {
      await client.close();
    }
  });

  test(`${name}: a client without elicitation is refused (fail closed)`, async () => {
    const client = await connect(APPROVAL_ARGS);
    try {
      const result = await runCode(client, CALL_PAY);
      const [paid] = JSON.parse(result.structuredContent.return_value);
      assert.match(paid, /^denied: .*refused: the MCP client cannot be asked/);
    } finally {
      await client.close();
    }
  });

  test(`${name}: an elicitation handler that throws is a refusal`, async () => {
    const client = await connect(APPROVAL_ARGS, { elicitation: {} }, (c) =>
      c.setRequestHandler(ElicitRequestSchema, async () => { throw new Error("no UI here"); }));
    try {
      const result = await runCode(client, CALL_PAY);
      const [paid] = JSON.parse(result.structuredContent.return_value);
      assert.match(paid, /^denied: .*no approval from the MCP client: the client answered with error/);
    } finally {
      await client.close();
    }
  });

  test(`${name}: describe asks the client's model (sampling) with the image and the question`,
       async () => {
    const sampled = [];
    const client = await connect([], { sampling: {} }, (c) =>
      c.setRequestHandler(CreateMessageRequestSchema, async (request) => {
        sampled.push(request.params);
        return { role: "assistant", model: "test-model",
                 content: { type: "text", text: "A red square." } };
      }));
    try {
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === "describe"), "describe is listed");
      const created = await client.callTool({ name: "create_session", arguments: {} });
      const session_id = created.structuredContent.session_id;
      await client.callTool({ name: "write_file", arguments: {
        session_id, path: "/work/square.png", content: PNG.toString("base64"),
        encoding: "base64" } });
      const result = await client.callTool({ name: "describe", arguments: {
        session_id, path: "/work/square.png", question: "What shape is this?" } });
      assert.equal(result.isError, false, textOf(result));
      assert.equal(textOf(result), "A red square.");
      assert.equal(result.structuredContent.model, "test-model");
      assert.equal(sampled.length, 1);
      const [image, question] = sampled[0].messages;
      assert.equal(image.content.type, "image");
      assert.equal(image.content.mimeType, "image/png");
      assert.deepEqual(Buffer.from(image.content.data, "base64"), PNG);
      assert.deepEqual(question.content, { type: "text", text: "What shape is this?" });
      assert.ok(sampled[0].maxTokens > 0);
      // The guest's capsule.describe() goes the same way.
      const guest = await runCode(client, "import capsule, base64\n" +
        `capsule.describe(base64.b64decode('${PNG.toString("base64")}'), 'And the colour?')`);
      assert.match(textOf(guest), /<return_value>\nA red square.\n<\/return_value>/);
      assert.equal(sampled.length, 2);
      assert.deepEqual(sampled[1].messages[1].content, { type: "text", text: "And the colour?" });
    } finally {
      await client.close();
    }
  });
}

describe("stdio: the server asks the client", () => askingTests("stdio", connectStdio));

describe("http: the server asks the client", () => {
  const servers = {};
  // One server per argument list, started on first use.
  async function connect(args = [], capabilities = {}, setup = () => {}) {
    const key = JSON.stringify(args);
    if (!servers[key]) servers[key] = await startHttpServer(args);
    return connectHttp(servers[key].url, TOKEN, capabilities, setup);
  }
  after(() => { for (const s of Object.values(servers)) s.child.kill("SIGTERM"); });
  askingTests("http", connect);
});

// Durable jobs through the SDK: a job parks on an event, the client emits
// it, and the result is read back (a store of its own, in a temporary
// directory, so that no other server holds it).
describe("jobs", () => {
  let client, directory;
  before(async () => {
    const { mkdtempSync } = await import("node:fs");
    directory = mkdtempSync("/tmp/capsule-interop-jobs-");
    client = new Client({ name: "capsule-interop", version: "1.0.0" });
    await client.connect(new StdioClientTransport({
      command: CAPSULE, args: ["serve", "--stdio", "--store", `sqlite:${directory}/jobs.db`],
      stderr: "ignore" }));
  });
  after(async () => {
    await client?.close();
    const { rmSync } = await import("node:fs");
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  async function getJob(job_id) {
    const result = await client.callTool({ name: "get_job", arguments: { job_id } });
    assert.equal(result.isError, false, textOf(result));
    return result.structuredContent;
  }

  async function waitFor(job_id, done) {
    const deadline = Date.now() + 30000;
    for (;;) {
      const job = await getJob(job_id);
      if (done(job)) return job;
      assert.ok(Date.now() < deadline, JSON.stringify(job));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  test("jobs: submit, wait for an event, emit it, read the result", async () => {
    const { tools } = await client.listTools();
    for (const tool of ["submit_job", "get_job", "cancel_job", "list_jobs", "emit_event"])
      assert.ok(tools.some((t) => t.name === tool), tool);
    const submitted = await client.callTool({ name: "submit_job", arguments: {
      code: "import capsule\n[capsule.step('answer', lambda: 6 * 7), capsule.await_event('go')]",
      idempotency_key: "interop" } });
    const id = submitted.structuredContent.job_id;
    assert.match(id, /^[0-9a-f]{32}$/);
    await waitFor(id, (job) => job.waiting_for === "go");
    const emitted = await client.callTool({ name: "emit_event",
                                            arguments: { name: "go", payload: { ok: true } } });
    assert.equal(emitted.structuredContent.woken, 1);
    const job = await waitFor(id, (job) => job.status === "succeeded" || job.status === "dead");
    assert.equal(job.status, "succeeded");
    assert.deepEqual(JSON.parse(job.result.return_value), [42, { ok: true }]);
    const listed = await client.callTool({ name: "list_jobs", arguments: {} });
    assert.deepEqual(listed.structuredContent.jobs.map((j) => j.job_id), [id]);
  });
});
