// capsule's MCP server against the TypeScript SDK v2 client (@modelcontextprotocol/client
// 2.x), over stdio and Streamable HTTP: pinned to 2026-07-28 (server/discover, per-request
// _meta, no session) and in its default legacy mode (initialize).  The host-function
// approval test drives capsule's input_required result through the SDK's own
// multi-round-trip driver.  Run by `make interop-test` (node --test).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

const CAPSULE = process.env.CAPSULE ?? new URL("../../build/capsule", import.meta.url).pathname;
const TOKEN = "interop-v2-token";
const MODERN = { mode: { pin: "2026-07-28" } };

function startHttpServer(extraArgs = []) {
  const child = spawn(CAPSULE, ["serve", "--http", "127.0.0.1:0", "--workers", "2", ...extraArgs], {
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

function newClient(versionNegotiation, capabilities = {}) {
  const options = { capabilities };
  if (versionNegotiation) options.versionNegotiation = versionNegotiation;
  return new Client({ name: "capsule-interop-v2", version: "1.0.0" }, options);
}

async function connectHttp(url, versionNegotiation, capabilities) {
  const client = newClient(versionNegotiation, capabilities);
  await client.connect(new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } },
  }));
  return client;
}

async function connectStdio(versionNegotiation, extraArgs = [], capabilities) {
  const client = newClient(versionNegotiation, capabilities);
  await client.connect(new StdioClientTransport({ command: CAPSULE, args: ["serve", "--stdio", ...extraArgs],
                                                  stderr: "ignore" }));
  return client;
}

async function run(client, python_code, extra = {}) {
  return client.callTool({ name: "run_python_code", arguments: { python_code, ...extra } });
}

function eraTests(name, era, connect) {
  describe(name, () => {
    let client;
    before(async () => { client = await connect(); });
    after(async () => { await client?.close(); });

    test(`negotiates the ${era} era`, () => {
      assert.equal(client.getProtocolEra(), era);
      assert.equal(client.getNegotiatedProtocolVersion(), era === "modern" ? "2026-07-28" : "2025-11-25");
      assert.equal(client.getServerVersion()?.name, "capsule");
    });

    test("lists the tools", async () => {
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === "run_python_code"), JSON.stringify(tools.map((t) => t.name)));
    });

    test("runs Python", async () => {
      const result = await run(client, "print('hi')\n6 * 7");
      assert.equal(result.isError, false);
      assert.equal(result.structuredContent.status, "success");
      assert.equal(result.structuredContent.output, "hi");
      assert.equal(result.structuredContent.return_value, "42");
    });

    test("keeps state across calls in a minted session", async () => {
      const created = await client.callTool({ name: "create_session", arguments: {} });
      const session_id = created.structuredContent.session_id;
      assert.match(session_id, /^[0-9a-f]{32}$/);
      await run(client, "counter = 41", { session_id });
      const result = await run(client, "counter + 1", { session_id });
      assert.equal(result.structuredContent.return_value, "42");
    });
  });
}

let http;
before(async () => { http = await startHttpServer(); });
after(() => { http?.child.kill("SIGTERM"); });

eraTests("SDK v2 over HTTP, pinned to 2026-07-28", "modern", () => connectHttp(http.url, MODERN));
eraTests("SDK v2 over HTTP, legacy mode", "legacy", () => connectHttp(http.url, undefined));
eraTests("SDK v2 over stdio, pinned to 2026-07-28", "modern", () => connectStdio(MODERN));
eraTests("SDK v2 over stdio, legacy mode", "legacy", () => connectStdio(undefined));

// A host function that needs approval: the server answers input_required with an
// elicitation; the SDK asks our handler and retries with the answer and the signed
// requestState.
describe("host-function approval over input_required (SDK v2, 2026-07-28)", () => {
  const directory = mkdtempSync(join(tmpdir(), "capsule-approval-"));
  const marker = join(directory, "paid.txt");
  const program = join(directory, "pay.py");
  writeFileSync(program, "import sys, pathlib\npathlib.Path(sys.argv[1]).write_text('paid')\nprint('{\"ok\": true}')\n");
  const config = join(directory, "functions.json");
  writeFileSync(config, JSON.stringify({ functions: { pay: {
    command: ["/usr/bin/python3", program, marker], description: "Pays an invoice.", needs_approval: true,
    input_schema: { type: "object", properties: { amount: { type: "number" } } } } } }));
  const code = "from capsule.functions import pay\ntry:\n    r = pay(amount=10)\nexcept PermissionError as e:\n    r = 'refused: ' + str(e)\nr";

  let approvalHttp;
  before(async () => { approvalHttp = await startHttpServer(["--config", config]); });
  after(() => { approvalHttp?.child.kill("SIGTERM"); });

  async function approvingClient(answer, asked, overHttp = false) {
    const client = overHttp
      ? await connectHttp(approvalHttp.url, MODERN, { elicitation: {} })
      : await connectStdio(MODERN, ["--config", config], { elicitation: {} });
    client.setRequestHandler("elicitation/create", async (request) => {
      asked.push(request.params.message);
      return answer;
    });
    return client;
  }

  test("an approved call runs (HTTP)", async () => {
    rmSync(marker, { force: true });
    const asked = [];
    const client = await approvingClient({ action: "accept", content: { approve: true } }, asked, true);
    try {
      const result = await run(client, code);
      assert.equal(asked.length, 1);
      assert.equal(result.structuredContent.status, "success", JSON.stringify(result));
      assert.match(result.structuredContent.return_value, /ok/);
      assert.ok(existsSync(marker), "the approved program ran");
    } finally {
      await client.close();
    }
  });

  test("an approved call runs", async () => {
    rmSync(marker, { force: true });
    const asked = [];
    const client = await approvingClient({ action: "accept", content: { approve: true } }, asked);
    try {
      const result = await run(client, code);
      assert.equal(asked.length, 1);
      assert.match(asked[0], /host function 'pay'/);
      assert.match(asked[0], /"amount"\s*:\s*10/);
      assert.equal(result.structuredContent.status, "success", JSON.stringify(result));
      assert.match(result.structuredContent.return_value, /ok/);
      assert.ok(existsSync(marker), "the approved program ran");
    } finally {
      await client.close();
    }
  });

  test("a declined call is refused and the program does not run", async () => {
    const asked = [];
    rmSync(marker, { force: true });
    const client = await approvingClient({ action: "decline" }, asked);
    try {
      const result = await run(client, code.replace("amount=10", "amount=11"));
      assert.equal(asked.length, 1);
      assert.match(result.structuredContent.return_value, /refused: .*needs approval/);
      assert.ok(!existsSync(marker), "the declined program did not run");
    } finally {
      await client.close();
    }
  });
});

// describe without a model endpoint: the client's own model answers, through
// input_required with a sampling/createMessage input request (2026-07-28), or a
// sampling request mid-call (legacy mode); the SDK calls our handler either way.
describe("describe through the client's model (SDK v2)", () => {
  const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARA" +
                          "wQCgAf7gP9i18U1AAAAABJRU5ErkJggg==", "base64");
  for (const [era, negotiation] of [["2026-07-28", MODERN], ["legacy", undefined]]) {
    test(`the sampling handler answers (${era}, stdio)`, async () => {
      const sampled = [];
      const client = await connectStdio(negotiation, [], { sampling: {} });
      client.setRequestHandler("sampling/createMessage", async (request) => {
        sampled.push(request.params);
        return { role: "assistant", model: "v2-model", content: { type: "text", text: "Red." } };
      });
      try {
        const created = await client.callTool({ name: "create_session", arguments: {} });
        const session_id = created.structuredContent.session_id;
        await client.callTool({ name: "write_file", arguments: {
          session_id, path: "/work/a.png", content: PNG.toString("base64"), encoding: "base64" } });
        const result = await client.callTool({ name: "describe", arguments: {
          session_id, path: "/work/a.png", question: "Which colour?" } });
        assert.equal(result.isError, false, JSON.stringify(result));
        assert.equal(result.content[0].text, "Red.");
        assert.equal(sampled.length, 1);
        const [image, question] = sampled[0].messages;
        assert.equal(image.content.mimeType, "image/png");
        assert.deepEqual(Buffer.from(image.content.data, "base64"), PNG);
        assert.equal(question.content.text, "Which colour?");
      } finally {
        await client.close();
      }
    });
  }
});
